#!/usr/bin/python3
"""junit.py FILE.xml: prints one line per test case of a regrtest JUnit file,
"STATUS NAME" (STATUS: pass, fail, error, skip or xfail, an expected
failure), sorted; then a last line
"# pass=N fail=N error=N skip=N xfail=N". Used by scripts/realsuites and
tests/realsuites.sh to compare CPython test results between configurations.
Exit status 2 if the file is missing or unreadable."""
import sys
import xml.etree.ElementTree as ET

def main():
    try:
        root = ET.parse(sys.argv[1]).getroot()
    except (OSError, ET.ParseError) as e:
        print("# unreadable: %s" % e)
        return 2
    rows = []
    for tc in root.iter("testcase"):
        kinds = {child.tag for child in tc}
        if "failure" in kinds:
            st = "fail"
        elif "error" in kinds:
            st = "error"
        elif "skipped" in kinds:
            st = "skip"
        elif "output" in kinds:
            st = "xfail"
        else:
            st = "pass"
        rows.append((tc.get("name", "?"), st))
    rows.sort()
    n = {"pass": 0, "fail": 0, "error": 0, "skip": 0, "xfail": 0}
    for name, st in rows:
        n[st] += 1
        print(st, name)
    print("# " + " ".join("%s=%d" % kv for kv in n.items()))
    return 0

sys.exit(main())
