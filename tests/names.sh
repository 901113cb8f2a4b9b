#!/usr/bin/env bash
# names: which process of a tree writes the exact report name and which
# NAME.PID, with parents that are not the usual shell: a launcher between
# them that does not load the library, a pid namespace of its own, PID 1 of
# a container (each a held-out check, where a report and its breach were
# lost, or a descendant died with 125).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
B=${B:-build}
PROGS=${MLT_PROGS:-$ROOT/$B/tests/progs}
LIB=${MLT_LIB:-$ROOT/$B/libmemlimits.so}
export MEMLIMITS_LIBRARY=$LIB
unset LD_PRELOAD
for v in $(compgen -e); do
	case $v in MEMLIMITS_LIBRARY) ;; MEMLIMITS_*) unset "$v" ;; esac
done
ML=$ROOT/scripts/memlimit
PY=/usr/bin/python3
passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() {
	failed=$((failed + 1))
	printf 'FAIL: %s\n' "$1"
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ml-names.XXXXXX") || exit 1
chmod 755 "$tmp"
trap 'rm -rf -- "$tmp"' EXIT

# The reports in directory $1: the hog's (with its breach) is at NAME.PID,
# the first process's at NAME. Prints what is wrong, if anything.
CHECK='import json, os, sys
d, first = sys.argv[1], sys.argv[2]
names = sorted(os.listdir(d))
reps = {n: json.load(open(os.path.join(d, n))) for n in names}
hog = [n for n, r in reps.items() if r["command"][0].endswith("prog_hog")]
if len(hog) != 1: sys.exit("want one report of prog_hog: %s" % names)
if not reps[hog[0]]["breaches"]: sys.exit("the hog report has no breach")
if hog[0] == "r.json": sys.exit("the hog took the exact name")
if "r.json" not in reps: sys.exit("no r.json: %s" % names)
if not reps["r.json"]["command"][0].endswith(first):
    sys.exit("r.json is %s, not %s" % (reps["r.json"]["command"], first))'

# A static launcher (it forks and execs; no library can load in it) between
# bash, the tree's first, and the hog: the hog took r.json, and bash wrote
# over it at its exit.
cat >"$tmp/launch.c" <<'EOF'
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	(void)argc;
	pid_t p = fork();
	if (p == 0) {
		execv(argv[1], argv + 1);
		_exit(127);
	}
	int st;
	waitpid(p, &st, 0);
	return WEXITSTATUS(st);
}
EOF
if gcc -static -O1 -o "$tmp/launch" "$tmp/launch.c" 2>/dev/null; then
	d="$tmp/static" && mkdir "$d"
	"$ML" --global-memory 20M --report "$d/r.json" -- bash -c "$tmp/launch $PROGS/prog_hog; true" >/dev/null 2>&1
	if err=$($PY -c "$CHECK" "$d" bash 2>&1); then pass; else fail "static launcher: $err"; fi
else
	echo "names: skipped the static launcher (no static libc)"
fi
# The same with a launcher that is a dynamic program run without the
# library (env -u LD_PRELOAD), the hog started by a shell in it.
d="$tmp/unloaded" && mkdir "$d"
"$ML" --global-memory 20M --report "$d/r.json" -- bash -c "env -u LD_PRELOAD bash -c 'LD_PRELOAD=$LIB $PROGS/prog_hog; true'; true" >/dev/null 2>&1
if err=$($PY -c "$CHECK" "$d" bash 2>&1); then pass; else fail "launcher without the library: $err"; fi

if [ "$(id -u)" = 0 ] && unshare -pf /bin/true 2>/dev/null; then
	# A pid namespace of its own (getppid() is 0; /proc is the outer
	# one's): the hog claimed r.json, then bash wrote over it.
	d="$tmp/ns" && mkdir "$d"
	"$ML" --global-memory 20M --report "$d/r.json" -- bash -c "unshare -pf $PROGS/prog_hog; true" >/dev/null 2>&1
	if err=$($PY -c "$CHECK" "$d" bash 2>&1); then pass; else fail "own pid namespace: $err"; fi
	# Each NAME.PID report says that pid, and its parent's (the report
	# said the namespace's 1 and 0, its name the outer pid).
	if err=$($PY -c 'import json, os, sys
d = sys.argv[1]
reps = {n: json.load(open(os.path.join(d, n))) for n in os.listdir(d)}
pids = {r["pid"] for r in reps.values()}
for n, r in reps.items():
    if n != "r.json" and n != "r.json.%d" % r["pid"]: sys.exit("%s says pid %d" % (n, r["pid"]))
    if n != "r.json" and r["ppid"] not in pids and r["ppid"] <= 1: sys.exit("%s says ppid %d" % (n, r["ppid"]))' "$d" 2>&1); then pass; else fail "own pid namespace, pids: $err"; fi
	# With %p, two processes that are both PID 1 of their namespace
	# wrote one r.1.json: names take the pid /proc gives.
	d="$tmp/nsp" && mkdir "$d"
	"$ML" --report "$d/r.%p.json" -- bash -c "unshare -pf $PROGS/prog_hog & unshare -pf $PROGS/prog_hog & wait" >/dev/null 2>&1
	n=$($PY -c 'import json, os, sys
d = sys.argv[1]
print(sum(json.load(open(os.path.join(d, n)))["command"][0].endswith("prog_hog")
          for n in os.listdir(d)))' "$d" 2>&1)
	if [ "$n" = 2 ]; then pass; else fail "two PID 1s with %p: $n hog reports: $(ls "$d")"; fi
	# PID 1 of a container is the tree's first; its child run as another
	# user cannot write the report's directory: it warns and runs on, as
	# any descendant does (it was taken for an orphan of init: 125).
	if command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
		d="$tmp/pid1" && mkdir "$d"
		out=$(unshare -pf --mount-proc "$ML" --report "$d/r.json" -- bash -c \
			"setpriv --reuid=nobody --regid=$(id -g nobody) --clear-groups $PROGS/prog_hog; echo st=\$?" 2>&1)
		if grep -q "^st=4" <<<"$out" && grep -q "memlimits: warning: .*this process runs without it" <<<"$out"; then
			pass
		else
			fail "a container's PID 1 and its child as another user: $out"
		fi
	fi
else
	echo "names: skipped the pid-namespace checks (needs root and unshare -p)"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
