#!/bin/bash
# valgrind.sh: valgrind's own allocator, preloaded before this library, takes
# malloc and free; the library's own calls must still reach jemalloc and not
# valgrind's (coreutils' test suite found an "Invalid free" in every program
# at start-up). Prints "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
lib=${MLT_LIB:-$PWD/build/libmemlimits.so}
pass=0 fail=0
for cmd in /bin/true "/usr/bin/python3 -c print(1)"; do
	# shellcheck disable=SC2086
	if out=$(LD_PRELOAD=$lib valgrind -q --error-exitcode=9 $cmd 2>&1); then
		pass=$((pass + 1))
	else
		echo "FAIL: valgrind $cmd under the preload:"
		echo "$out" | head -20
		fail=$((fail + 1))
	fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
