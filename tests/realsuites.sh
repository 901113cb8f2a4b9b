#!/bin/bash
# realsuites.sh: the CI subset of scripts/realsuites. A handful of fast
# CPython regression test modules (python3 -m test, PYTHONMALLOC=malloc) run
# without the library (plain), preloaded with no limit (preload), preloaded
# with generous limits that never fire (limits), and with the profiling
# build, those limits and the heap profiler on (profiler; the profiling build
# is <dir of MLT_LIB>/libmemlimits-prof.so). A module passes in plain if
# regrtest succeeds; in the others if the exit status, verdict and
# the status of every test case equal plain's and no limit fired (limits
# that only refused requests larger than half the limit by themselves, which
# fail without the library too, are noted, not failed). Installs
# libpython3.11-testsuite if it is missing. Prints "N passed, M failed"
# (N + M = configurations x modules).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
LIB=${MLT_LIB:-$ROOT/build/libmemlimits.so}
. "$ROOT/scripts/realsuites-lib/common.sh"
# Fast modules (about 1 s each); the descriptor tests of test_subprocess
# (children exec'd with close_fds/pass_fds, which must see exactly the
# descriptors they were given).
MODULES=${RS_PYMODULES:-"test_dict test_list test_re test_collections
test_functools test_struct test_zlib test_thread test_popen
test_subprocess::*fds*"}
OUT=$(dirname "$LIB")/tests/realsuites
RS_TIMEOUT=${RS_TIMEOUT:-300}
mkdir -p "$OUT"

passed=0 failed=0
nconf=$(wc -w <<<"$RS_CONFIGS")
nmod=$(wc -w <<<"$MODULES")
# private copies: a rebuild during the run must not disturb it
if ! rs_private_libs "$OUT/lib"; then
	echo "FAIL: the libraries are missing (make builds both)"
	echo "0 passed, $((nconf * nmod)) failed"
	exit 1
fi
if ! rs_install_testsuite; then
	echo "FAIL: libpython3.11-testsuite is not installed and could not be"
	echo "0 passed, $((nconf * nmod)) failed"
	exit 1
fi
declare -A loaded
for c in $RS_CONFIGS; do
	if msg=$(rs_loaded "$c"); then
		loaded[$c]=1
	else
		loaded[$c]=0
		echo "FAIL: $msg"
	fi
done
read -r -d "" -a mods <<<"$MODULES" # no globbing of MODULE::PATTERN
for mod in "${mods[@]}"; do
	md=$OUT/$(rs_dirname "$mod")
	for c in $RS_CONFIGS; do
		rs_pyrun "$md/$c" "$c" "$mod"
	done
	line="$mod:"
	for c in $RS_CONFIGS; do
		d=$md/$c ok=1 why=
		if [ "${loaded[$c]}" -ne 1 ]; then
			ok=0 why="library not loaded as configured"
		elif [ "$c" = plain ]; then
			[ "$(cat "$d/rc")" = 0 ] || { ok=0 why="fails without the library"; }
			grep -q '^pass ' "$d/cases" || { ok=0 why="no test case ran"; }
		else
			if ! diffs=$(rs_same "$md/plain" "$d"); then
				ok=0 why="differs from plain:
$diffs"
			fi
			b=$(rs_breaches "$d")
			case $? in
			0) ;;
			1) echo "note: $mod ($c): $b" ;;
			*) ok=0 why="$why${why:+
}a limit fired: $b" ;;
			esac
		fi
		if [ $ok -eq 1 ]; then
			passed=$((passed + 1))
			line="$line $c ok ($(sed 's/^rc=[0-9]* result=\([^ ]*\) pass=\([0-9]*\) fail=\([0-9]*\) error=\([0-9]*\) skip=\([0-9]*\).*/\1, \2 passed, \5 skipped/' "$d/result"))"
		else
			failed=$((failed + 1))
			line="$line $c FAILED"
			echo "FAIL: $mod ($c): $why"
			echo "  output: $d/out"
		fi
	done
	echo "$line"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
