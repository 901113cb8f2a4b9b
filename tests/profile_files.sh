#!/usr/bin/env bash
# profile_files: what the profiling build writes, as a held-out check read
# it: folded lines keep their two fields whatever the frames are named, a
# buffer grown by realloc is estimated at what it was charged, and
# memlimit-report folds the breach profile of a process that left no exit
# profile (it aborted).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
B=${B:-build}
LIB=${MLT_LIB:-$ROOT/$B/libmemlimits.so}
PROF=${LIB%.so}-prof.so
export MEMLIMITS_LIBRARY=$LIB
unset LD_PRELOAD
for v in $(compgen -e); do
	case $v in MEMLIMITS_LIBRARY) ;; MEMLIMITS_*) unset "$v" ;; esac
done
CC=${CC:-cc}
passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() {
	failed=$((failed + 1))
	printf 'FAIL: %s\n' "$1"
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ml-prof.XXXXXX") || exit 1
trap 'rm -rf -- "$tmp"' EXIT

# A frame named by its object, whose name holds ';' and ' ': it was one
# frame made two, and a line of three fields.
mkdir -p "$tmp/we ird"
cat >"$tmp/evil.c" <<'EOF'
#include <stdlib.h>
void *volatile evil_sink;
static void __attribute__((noinline)) inner(void)
{
	for (int i = 0; i < 2000; i++)
		evil_sink = malloc(1000);
}
void evil_alloc(void) { inner(); }
EOF
cat >"$tmp/main.c" <<'EOF'
#include <dlfcn.h>
int main(int argc, char **argv)
{
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h)
		return 2;
	((void (*)(void))dlsym(h, "evil_alloc"))();
	return 0;
}
EOF
evil="$tmp/we ird/lib;evil x.so"
if $CC -shared -fPIC -O1 -o "$evil" "$tmp/evil.c" && strip "$evil" &&
	$CC -O1 -o "$tmp/main" "$tmp/main.c" -ldl; then
	LD_PRELOAD=$PROF MEMLIMITS_PROFILE="$tmp/p" MEMLIMITS_SAMPLE_INTERVAL=4096 \
		"$tmp/main" "$evil"
	bad=$(cat "$tmp/p.folded" "$tmp/p.alloc.folded" | grep -Ev '^[^ ;]+(;[^ ;]+)* [0-9]+$')
	if [ -s "$tmp/p.folded" ] && [ -z "$bad" ] && grep -q 'lib_evil_x.so+0x' "$tmp/p.alloc.folded"; then
		pass
	else
		fail "folded lines with an object named 'lib;evil x.so': $bad"
	fi
else
	fail "could not build the library named 'lib;evil x.so'"
fi

# A buffer grown 4 KiB at a time to 64 MiB: each growth is charged and
# sampled, and the profile's allocated bytes weighed every sample by the
# whole block (5 times the charged bytes). Within 15% of the report's.
cat >"$tmp/grow.c" <<'EOF'
#include <stdlib.h>
int main(void)
{
	char *p = NULL;
	size_t n = 0;
	while (n < (64u << 20)) {
		n += 4096;
		p = realloc(p, n);
		p[n - 1] = 1;
	}
	free(p);
	return 0;
}
EOF
if $CC -O1 -o "$tmp/grow" "$tmp/grow.c"; then
	for seed in 1 2; do
		LD_PRELOAD=$PROF MEMLIMITS_PROFILE="$tmp/g$seed" MEMLIMITS_REPORT="$tmp/g$seed.json" \
			MEMLIMITS_SAMPLE_INTERVAL=64K MEMLIMITS_SEED=$seed "$tmp/grow"
		est=$(head -1 "$tmp/g$seed" | sed -n 's/.*\[ *[0-9]*: *\([0-9]*\)\].*/\1/p')
		real=$(grep -o '"allocated_bytes": [0-9]*' "$tmp/g$seed.json" | grep -o '[0-9]*$')
		if [ -n "$est" ] && [ -n "$real" ] &&
			awk -v e="$est" -v r="$real" 'BEGIN { exit !(e > 0.85 * r && e < 1.15 * r) }'; then
			pass
		else
			fail "realloc-grown buffer, seed $seed: profile says $est bytes allocated, the report $real"
		fi
	done
else
	fail "could not build grow.c"
fi

# memlimit-report folded --breach: the breach profile of a process that
# aborted at the limit (no exit profile beside it) was skipped.
cat >"$tmp/hog.c" <<'EOF'
#include <stdlib.h>
void *volatile sink;
int main(void)
{
	for (int i = 0; i < 100000; i++)
		if (!(sink = malloc(4096)))
			return 1;
	return 0;
}
EOF
if $CC -O1 -o "$tmp/hog" "$tmp/hog.c"; then
	mkdir -p "$tmp/b1" "$tmp/b2"
	(MEMLIMITS_LIBRARY=$PROF "$ROOT/scripts/memlimit" --profile "$tmp/b1/h.prof" \
		--sample-interval 64K --global-memory 50M --on-limit abort -- "$tmp/hog"; true) >/dev/null 2>&1
	(MEMLIMITS_LIBRARY=$PROF "$ROOT/scripts/memlimit" --profile "$tmp/b2/h.prof" \
		--sample-interval 64K --global-memory 50M --on-limit abort -- \
		bash -c "'$tmp/hog'; true"; true) >/dev/null 2>&1
	for d in b1 b2; do
		out=$("$ROOT/scripts/memlimit-report" folded --breach "$tmp/$d/h.prof" 2>&1)
		st=$?
		if [ "$st" = 0 ] && grep -q '^hog\[[0-9]*\];.*main [0-9]*$' <<<"$out"; then pass; else
			fail "memlimit-report folded --breach ($d: $(find "$tmp/$d" -type f -printf '%f ')): $out"
		fi
	done
	# A %% in the directory is a percent sign, as the library reads it;
	# memlimit-report found nothing there (a held-out check).
	mkdir -p "$tmp/p%d"
	"$ROOT/scripts/memlimit" --report "$tmp/p%%d/r.json" -- "$tmp/hog" >/dev/null 2>&1
	out=$("$ROOT/scripts/memlimit-report" list "$tmp/p%%d/r.json" 2>&1)
	st=$?
	if [ "$st" = 0 ] && [ -f "$tmp/p%d/r.json" ] && grep -q '"[^"]*hog"' <<<"$out"; then pass; else
		fail "memlimit-report list with %% in the directory: status $st: $out"
	fi
else
	fail "could not build hog.c"
fi

# memlimit-report folded names each process by its command: a '&' in it
# was sed's match (a&b became ab), and a JSON escape a line break.
if [ -x "$tmp/grow" ]; then
	mkdir -p "$tmp/amp"
	cp "$tmp/grow" "$tmp/amp/a&b"
	(cd "$tmp/amp" && MEMLIMITS_LIBRARY=$PROF "$ROOT/scripts/memlimit" --per-process \
		--profile "$tmp/amp/p" --sample-interval 64K -- './a&b') >/dev/null 2>&1
	first=$("$ROOT/scripts/memlimit-report" folded --alloc "$tmp/amp/p" 2>&1 | head -1)
	case "$first" in
	'a&b['[0-9]*'];'*) pass ;;
	*) fail "memlimit-report folded of a command named 'a&b': $first" ;;
	esac
fi

# A forked child's peak is its own: one that allocated nothing said its
# parent's ("memory_then" of the parent's 40 MiB).
cat >"$tmp/forkpeak.c" <<'EOF'
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void)
{
	void *b[40];
	for (int i = 0; i < 40; i++)
		b[i] = malloc(1 << 20);
	for (int i = 0; i < 40; i++)
		free(b[i]);
	pid_t p = fork();
	if (p == 0)
		exit(0);
	waitpid(p, NULL, 0);
	return 0;
}
EOF
if $CC -O1 -o "$tmp/forkpeak" "$tmp/forkpeak.c"; then
	mkdir -p "$tmp/fp"
	LD_PRELOAD=$PROF MEMLIMITS_PROFILE="$tmp/fp/p" MEMLIMITS_SAMPLE_INTERVAL=64K "$tmp/forkpeak"
	child=$(find "$tmp/fp" -regextype posix-extended -regex '.*/p\.[0-9]+\.peak' | head -1)
	then_=$(sed -n 's/.*"memory_then": \([0-9]*\).*/\1/p' "$child" 2>/dev/null | head -1)
	parent=$(sed -n 's/.*"memory_then": \([0-9]*\).*/\1/p' "$tmp/fp/p.peak" | head -1)
	if [ -n "$then_" ] && [ -n "$parent" ] && [ "$parent" -gt $((30 << 20)) ] &&
		[ "$then_" -lt $((20 << 20)) ]; then pass; else
		fail "a forked child's peak: memory_then '$then_' (its parent's: '$parent')"
	fi
else
	fail "could not build forkpeak.c"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
