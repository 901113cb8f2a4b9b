#!/usr/bin/python3
"""breaches.py OUTPUT [REPORT.json]: did a memlimits limit fire in a run?
OUTPUT is the run's stdout+stderr (the library writes one line there per
limit that fires), REPORT its MEMLIMITS_REPORT file (written by the last
process to exit). Exit status and output:
  0  no limit fired (prints nothing);
  1  limits refused only requests that could not fit under the limit however
     empty the heap: the exit report shows that the heap (global memory) or
     the bytes allocated (budgets) never came near half the limit, so every
     refused request was larger than half the limit by itself -- programs
     that ask for absurd sizes on purpose (test_io, test_decimal), which fail
     without the library too. Prints a one-line note;
  2  a limit fired for real, or it cannot be told: prints what was found."""
import json
import re
import sys

LINE = re.compile(r"memlimits: (MEMLIMITS_[A-Z_]+)=.*an allocation of (\d+) bytes")

def main():
    lines = []
    try:
        with open(sys.argv[1], errors="replace") as f:
            lines = [l.rstrip("\n") for l in f if LINE.search(l)]
    except OSError:
        pass
    report = None
    if len(sys.argv) > 2:
        try:
            with open(sys.argv[2]) as f:
                report = json.load(f)
        except (OSError, ValueError):
            report = None
    breaches = report.get("breaches", []) if report else []
    if not lines and not breaches:
        return 0
    if report is None or not breaches:
        # a breach line, but no exit report of the process that breached
        print("\n".join(lines))
        print("(no exit report shows this breach: cannot tell what was refused)")
        return 2
    notes = []
    for b in breaches:
        lim = b["limit_bytes"]
        used = (report["peak_memory_bytes"] if b["limit"] == "MEMLIMITS_GLOBAL_MEMORY"
                else report["allocated_bytes"])
        if used > lim // 2 or b["first_refused_request_bytes"] <= lim // 2:
            print("\n".join(lines))
            print(json.dumps(report))
            return 2
        notes.append("%s refused %d request(s) larger than half the limit by "
                     "themselves (first: %d bytes; %s %d)" %
                     (b["limit"], b["refused_allocations"],
                      b["first_refused_request_bytes"],
                      "peak heap" if b["limit"] == "MEMLIMITS_GLOBAL_MEMORY"
                      else "allocated bytes", used))
    print("; ".join(notes))
    return 1

sys.exit(main())
