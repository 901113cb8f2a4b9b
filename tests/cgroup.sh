#!/usr/bin/env bash
# cgroup: a limit given as a percentage of the container's memory, in a real
# cgroup with a 256 MiB memory limit (made here: cgroup v2 if its memory
# controller can be enabled for a child, else cgroup v1's memory
# controller). python3, growing towards 1 GB:
#  - without the library, the kernel's OOM killer kills it (status 137);
#  - under `memlimit --global-memory 90%`, it gets its MemoryError (status 1)
#    with the breach line, and MEMLIMITS_REPORT's start-up line says that
#    90% was of the cgroup's limit.
# Skipped, saying why, where the machine does not let the tests make a
# cgroup (not root, no writable cgroup file system).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
export MEMLIMITS_LIBRARY=${MLT_LIB:-$ROOT/build/libmemlimits.so}
unset LD_PRELOAD
for v in $(compgen -e); do
	case $v in MEMLIMITS_LIBRARY) ;; MEMLIMITS_*) unset "$v" ;; esac
done
passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() {
	failed=$((failed + 1))
	printf 'FAIL: %s\n' "$1"
}
skip() {
	echo "cgroup: skipped: $1"
	echo "0 passed, 0 failed"
	exit 0
}

LIMIT=$((256 << 20))
name=memlimits-test-$$
cg='' procs=''
if [ -w /sys/fs/cgroup/cgroup.subtree_control ] &&
	grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
	# cgroup v2: a child of the root with the memory controller on.
	echo +memory >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
	if mkdir "/sys/fs/cgroup/$name" 2>/dev/null &&
		echo $LIMIT >"/sys/fs/cgroup/$name/memory.max" 2>/dev/null; then
		cg=/sys/fs/cgroup/$name
		echo 0 >"$cg/memory.swap.max" 2>/dev/null
	fi
fi
if [ -z "$cg" ] && [ -d /sys/fs/cgroup/memory ] &&
	mkdir "/sys/fs/cgroup/memory/$name" 2>/dev/null; then
	cg=/sys/fs/cgroup/memory/$name
	if ! echo $LIMIT >"$cg/memory.limit_in_bytes" 2>/dev/null; then
		rmdir "$cg"
		cg=
	else
		# No swap to escape into (where the kernel has the knob).
		echo $LIMIT >"$cg/memory.memsw.limit_in_bytes" 2>/dev/null
	fi
fi
[ -n "$cg" ] || skip "cannot make a cgroup with a memory limit here (uid $(id -u); needs a writable cgroup v2 with the memory controller, or cgroup v1's memory controller)"
procs=$cg/cgroup.procs
cleanup() {
	# Processes still in it (none should be) go back to the parent.
	while read -r p; do echo "$p" >"$(dirname "$cg")/cgroup.procs"; done <"$procs" 2>/dev/null
	rmdir "$cg" 2>/dev/null
}
trap cleanup EXIT

# Runs "$@" inside the cgroup; stdout+stderr in $out, status in $rc.
in_cgroup() {
	out=$(sh -c 'echo $$ >"$1" && shift && exec "$@"' sh "$procs" "$@" 2>&1)
	rc=$?
}

PY='a = [[i] for i in range(40_000_000)]'
in_cgroup python3 -c "$PY"
if [ "$rc" = 137 ]; then pass; else
	fail "without the library python3 should be killed by the OOM killer (137), got $rc: $(tail -c 300 <<<"$out")"
fi

in_cgroup "$ROOT/scripts/memlimit" --global-memory 90% --report /dev/null \
	-- python3 -c "$PY"
if [ "$rc" = 1 ] && grep -q MemoryError <<<"$out"; then pass; else
	fail "under 90% python3 should get MemoryError (status 1), got $rc: $(tail -c 600 <<<"$out")"
fi
if grep -q "^memlimits: MEMLIMITS_GLOBAL_MEMORY=90% of the cgroup's memory \(limit\|\.max\) (256\.0 MiB) = 230\.3 MiB" <<<"$out"; then
	pass
else
	fail "no start-up line saying what 90% was: $(head -c 600 <<<"$out")"
fi
if grep -q "^memlimits: MEMLIMITS_GLOBAL_MEMORY=230.3 MiB reached" <<<"$out"; then pass; else
	fail "no breach line for 230.3 MiB: $(head -c 600 <<<"$out")"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
