#!/bin/bash
# portable: the engine's tests of allocation, tasks and meters under the
# portable build (build/libmemlimits-portable.so: the fast path in C, as
# other architectures than x86-64 get it, instead of assembly).
cd "$(dirname "$0")/.." || exit 1
B=${B:-build}
export MLT_LIB="$PWD/$B/libmemlimits-portable.so"
export MLT_PROGS="$PWD/$B/tests/progs"
export CMOCKA_MESSAGE_OUTPUT=stdout
passed=0 failed=0
# The portable library must really be the one tested: its malloc is not
# the hand-written one (which starts with a movq of the TLS offset).
if ! [ -f "$MLT_LIB" ]; then
	echo "portable: $MLT_LIB missing"
	echo "0 passed, 1 failed"
	exit 1
fi
for t in test_alloc test_tasks test_meters; do
	out=$(LD_PRELOAD="$MLT_LIB" "$B/tests/$t" 2>&1)
	rc=$?
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' <<<"$out")
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' <<<"$out")
	p=${p:-0} f=${f:-0}
	[ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
	[ "$f" -eq 0 ] || { echo "portable: $t failed:"; echo "$out" | grep -E "ERROR|FAILED|LINE" | head -20; }
	passed=$((passed + p)) failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
