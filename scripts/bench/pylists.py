"""pylists.py: python3 with its own allocator building and dropping large
lists of small objects, so that pymalloc maps and unmaps its arenas (1 MiB
each) over and over: the mmap family under a real runtime.

    python3 pylists.py [ROUNDS]     (default 8; prints a checksum)
"""
import sys


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    total = 0
    for r in range(rounds):
        rows = [(i, [i, r], str(i)) for i in range(600_000)]
        total += len(rows) + rows[-1][0]
        del rows
    print(total)


main()
