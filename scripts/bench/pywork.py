"""pywork.py: an allocation-heavy Python program for the benchmark, run as
/usr/bin/python3 with PYTHONMALLOC=malloc so that every object goes through
the malloc under test. Deterministic (fixed seed): builds and discards dicts
of strings, lists of tuples, joined and split strings, and a word index.

    python3 pywork.py [ROUNDS]     (default 6; prints a checksum)
"""
import random
import sys


def round_(rng, n):
    base = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=n * 8))
    cuts = [(rng.randrange(n * 8 - 12), rng.randint(3, 12)) for _ in range(n)]
    words = [base[o:o + k] for o, k in cuts]
    index = {}
    for i, w in enumerate(words):
        index.setdefault(w, []).append(i)
    rows = [(w, len(w), w.upper(), [i, i * 2]) for i, w in enumerate(words)]
    text = " ".join(w for w, _, _, _ in rows)
    parts = text.split(" ")
    counts = {}
    for p in parts:
        counts[p[:2]] = counts.get(p[:2], 0) + 1
    nested = [{"k%d" % j: str(j) * (j % 7) for j in range(i % 20)}
              for i in range(n // 2)]
    merged = sorted(index.items(), key=lambda kv: (len(kv[1]), kv[0]))[:100]
    return len(index) + len(counts) + sum(len(d) for d in nested) + len(merged)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    rng = random.Random(1)
    total = 0
    for _ in range(rounds):
        total += round_(rng, 40000)
    print(total)


main()
