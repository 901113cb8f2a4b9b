# shellcheck shell=bash
# common.sh: shared by scripts/realsuites and tests/realsuites.sh (sourced,
# with $ROOT = the repository and $LIB = the absolute path of
# libmemlimits.so already set; the profiling build is looked for next to it).
# Runs CPython regression test modules in four configurations and compares
# their per-test results.

RS_D=$ROOT/scripts/realsuites-lib
RS_PY=/usr/bin/python3
RS_PYTEST=/usr/lib/python3.11/test
RS_TIMEOUT=${RS_TIMEOUT:-900}        # seconds, per test module and configuration
RS_PROFLIB=$(dirname "$LIB")/libmemlimits-prof.so

# The configurations, by name:
#   plain     no preload;
#   preload   libmemlimits.so, no limit (MEMLIMITS_REPORT only, to prove that
#             the allocations went through it);
#   limits    the same with generous limits that must never fire;
#   profiler  the profiling build, libmemlimits-prof.so, with the generous
#             limits and the heap profiler on (MEMLIMITS_PROFILE, a sample
#             every 64 KiB on average instead of 512 KiB, to take many).
# rs_env CONFIG REPORT prints the environment assignments of CONFIG, one a
# line; the profile goes next to REPORT.
# shellcheck disable=SC2034  # used by the scripts that source this file
RS_CONFIGS="plain preload limits profiler"
RS_LIMITS="MEMLIMITS_GLOBAL_MEMORY=8G MEMLIMITS_ALLOCATIONS=1T MEMLIMITS_THREAD_ALLOCATIONS=1T"
RS_PROFILE="MEMLIMITS_SAMPLE_INTERVAL=64K"
rs_env() {
	case $1 in
	plain) ;;
	preload) printf '%s\n' "LD_PRELOAD=$LIB" "MEMLIMITS_REPORT=$2" ;;
	limits) printf '%s\n' "LD_PRELOAD=$LIB" "MEMLIMITS_REPORT=$2" $RS_LIMITS ;;
	profiler) printf '%s\n' "LD_PRELOAD=$RS_PROFLIB" "MEMLIMITS_REPORT=$2" \
		$RS_LIMITS "MEMLIMITS_PROFILE=$(dirname "$2")/heap.prof" $RS_PROFILE ;;
	*) echo "rs_env: unknown configuration $1" >&2; return 1 ;;
	esac
}

# rs_private_libs DIR: copies the two libraries into DIR and points LIB and
# RS_PROFLIB at the copies, so that a rebuild of the tree during a long run
# (make relinks build/libmemlimits.so in place) cannot break it. Returns 1
# if a library is missing.
rs_private_libs() {
	local f ok=0
	mkdir -p "$1"
	for f in "$LIB" "$RS_PROFLIB"; do
		if [ -f "$f" ] && cp "$f" "$1/.tmp.$$" && mv -f "$1/.tmp.$$" "$1/$(basename "$f")"; then
			:
		else
			echo "cannot copy $f" >&2; ok=1
		fi
	done
	LIB=$1/$(basename "$LIB")
	RS_PROFLIB=$1/$(basename "$RS_PROFLIB")
	return $ok
}

# rs_clean_env: the `env -u` options that drop whatever in the caller's
# environment could change a run (any MEMLIMITS_*, LD_PRELOAD, PYTHON*).
rs_clean_env() {
	local v
	for v in $(compgen -e); do
		case $v in MEMLIMITS_* | LD_PRELOAD | PYTHON*) printf '%s\n' -u "$v" ;; esac
	done
}

# rs_install_testsuite: installs Debian's libpython3.11-testsuite (CPython's
# regression tests) if it is missing. Returns 1 if that failed.
rs_install_testsuite() {
	[ -f "$RS_PYTEST/test_dict.py" ] && return 0
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	echo "realsuites: installing libpython3.11-testsuite" >&2
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get install -y -qq libpython3.11-testsuite >&2 ||
		{ $sudo apt-get update -qq >&2 &&
			$sudo apt-get install -y -qq libpython3.11-testsuite >&2; }
	[ -f "$RS_PYTEST/test_dict.py" ]
}

# rs_pyrun DIR CONFIG MODULE[::PATTERN]: runs `python3 -m test MODULE` (only
# its test cases matching PATTERN, regrtest's -m, if given) with
# PYTHONMALLOC=malloc (every Python allocation through malloc) in CONFIG.
# Leaves in DIR: out (regrtest's output), rc, secs, junit.xml, cases (one
# line per test case, "STATUS NAME", from junit.py), result (a line that must
# be equal in every configuration: exit status, regrtest's verdict and the
# counts) and, for the preloaded configurations, report.json (and heap.prof*).
rs_pyrun() {
	local dir=$1 cfg=$2 mod=${3%%::*} t0 t1 rc verdict
	local -a match=()
	case $3 in *::*) match=(-m "${3#*::}") ;; esac
	rm -rf "$dir"
	mkdir -p "$dir/cwd"
	local -a clean envs
	mapfile -t clean < <(rs_clean_env)
	mapfile -t envs < <(rs_env "$cfg" "$dir/report.json")
	t0=$(date +%s%N)
	# timeout outside the configuration: the exit report must be python's.
	(cd "$dir/cwd" && exec timeout -k 10 "$RS_TIMEOUT" \
		env "${clean[@]}" PYTHONMALLOC=malloc "${envs[@]}" "$RS_PY" -m test \
		--junit-xml "$dir/junit.xml" "${match[@]}" "$mod") >"$dir/out" 2>&1 </dev/null
	rc=$?
	t1=$(date +%s%N)
	echo "$rc" >"$dir/rc"
	echo $(((t1 - t0) / 1000000)) >"$dir/secs" # milliseconds, in fact
	rm -rf "$dir/cwd"
	env "${clean[@]}" "$RS_PY" "$RS_D/junit.py" "$dir/junit.xml" >"$dir/cases"
	verdict=$(sed -n 's/^Tests result: //p' "$dir/out" | tail -1)
	printf 'rc=%s result=%s %s\n' "$rc" "${verdict:-none}" \
		"$(tail -1 "$dir/cases" | sed 's/^# //')" >"$dir/result"
}

# rs_dirname MODULE[::PATTERN]: a directory name for it.
rs_dirname() {
	local n=${1//::/.}
	echo "${n//[^A-Za-z0-9_.-]/_}"
}

# rs_same DIR_A DIR_B: do two runs of a module have the same exit status,
# verdict and per-test results? Prints the differences if not.
rs_same() {
	if cmp -s "$1/result" "$2/result" && cmp -s "$1/cases" "$2/cases"; then
		return 0
	fi
	diff "$1/result" "$2/result" | sed -n 's/^[<>] /    /p'
	diff "$1/cases" "$2/cases" | grep '^[<>]' | head -20 | sed 's/^/    /'
	return 1
}

# rs_breaches DIR: did a memlimits limit fire in that run (a breach line in
# its output, a breach in its exit report)? Status 0: no; 1: only requests
# larger than half the limit by themselves were refused (programs that ask
# for absurd sizes on purpose; they fail without the library too), prints a
# note; 2: a limit fired for real (or it cannot be told), prints the details.
rs_breaches() {
	local -a clean
	mapfile -t clean < <(rs_clean_env)
	env "${clean[@]}" "$RS_PY" "$RS_D/breaches.py" "$1/out" "$1/report.json"
}

# rs_loaded CONFIG: checks that CONFIG really loads the right library, with
# its settings: python3 under it must find the library in its own mappings,
# write an exit report (showing the limits, for limits and profiler) and, for
# profiler, a profile. Prints a line for each problem; status 1 if any.
rs_loaded() {
	local -a clean envs
	local tmp ok=0 want=
	tmp=$(mktemp -d)
	mapfile -t clean < <(rs_clean_env)
	mapfile -t envs < <(rs_env "$1" "$tmp/r.json")
	case $1 in
	preload | limits) want=/libmemlimits.so ;;
	profiler) want=/libmemlimits-prof.so ;;
	esac
	env "${clean[@]}" PYTHONMALLOC=malloc "${envs[@]}" "$RS_PY" -c '
import sys
maps = open("/proc/self/maps").read()
if "libmemlimits" not in maps: sys.exit(3)
sys.exit(0 if sys.argv[1] and sys.argv[1] in maps else 4)' "$want"
	local rc=$?
	case $1 in
	plain) [ $rc -eq 3 ] || { echo "plain: python3 has libmemlimits mapped (status $rc)"; ok=1; } ;;
	*) [ $rc -eq 0 ] || { echo "$1: python3 does not map ${want#/} (status $rc)"; ok=1; }
	   grep -q '"allocations": [1-9]' "$tmp/r.json" 2>/dev/null ||
		{ echo "$1: no exit report with allocations in it"; ok=1; } ;;
	esac
	case $1 in
	limits | profiler)
		grep -q '"global_memory_limit": 8589934592, "allocations_limit": 1099511627776, "thread_allocations_limit": 1099511627776' "$tmp/r.json" 2>/dev/null ||
			{ echo "$1: the exit report does not show the limits"; ok=1; } ;;
	esac
	if [ "$1" = profiler ] && ! grep -q '^heap profile: ' "$tmp/heap.prof" 2>/dev/null; then
		echo "profiler: no heap profile written"; ok=1
	fi
	rm -rf "$tmp"
	return $ok
}

# rs_report_summary FILE: "N allocations, peak P MiB" from an exit report.
# The report is written by every process at exit, so the last one wins: if a
# child outlived python, the report is the child's (a few hundred
# allocations: python's own are millions).
rs_report_summary() {
	[ -f "$1" ] || { echo "no report"; return; }
	sed -n 's/.*"peak_memory_bytes": \([0-9]*\).*"allocations": \([0-9]*\).*/\2 \1/p' "$1" |
		awk '$1 < 10000 { printf "n/a (a child exited last, its report: %d allocs)", $1; next }
			{ printf "%.2fM allocs, peak %.0f MiB", $1 / 1e6, $2 / 1048576 }'
}
