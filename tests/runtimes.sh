#!/usr/bin/env bash
# shellcheck disable=SC2016  # the programs below are for the runtimes, not the shell
# runtimes: real runtimes, each growing towards 500 MB, under
# `scripts/memlimit --global-memory 100M`: python3 (its own allocator, which
# maps arenas), node (V8's heap), java (HotSpot's heap; with ZGC, a memfd
# it commits with fallocate), php -n (the Zend
# allocator), ruby, perl, lua5.4, sqlite3, gfortran, go (a cgo program: dynamically
# linked, its runtime maps its heap through libc's mmap), a C++ program using
# new and a C program calling mmap; php also with Debian's php.ini (its extensions are
# loaded with RTLD_DEEPBIND, which the library drops). Each must fail through its own out-of-memory path
# with the one breach line; its peak RSS, less the same runtime's idle
# footprint (an empty program, run the same way with no limit), must stay
# within 1.5x the limit; and the peak of the global measure in the exit
# report (the heap plus mapped memory) must be at least 70% of that peak.
# Prints the table it measured.
#
# "Its own out-of-memory path": the runtime's message (MemoryError, V8's
# fatal "JavaScript heap out of memory", which aborts, HotSpot's "There is
# insufficient memory for the Java Runtime Environment to continue", ...),
# and no crash: killed by no signal other than SIGABRT.
#
# ZGC commits 80 MiB at start-up, close to the 100M limit: it ends either
# way, by the exception or by HotSpot's own message, depending on which of
# its commits is refused first.
#
# The runtimes come from scripts/setup's test job; a missing one fails.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
B=${B:-build}
PROGS=${MLT_PROGS:-$ROOT/$B/tests/progs}
export MEMLIMITS_LIBRARY=${MLT_LIB:-$ROOT/$B/libmemlimits.so}
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

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ml-runtimes.XXXXXX") || exit 1
trap 'rm -rf -- "$tmp"' EXIT
LIMIT_MIB=100
LIMIT=$((LIMIT_MIB << 20))
BREACH="memlimits: MEMLIMITS_GLOBAL_MEMORY=100.0 MiB reached"

# Java needs its programs compiled (the source launcher runs javac in the
# same JVM, which would count the compiler).
cat >"$tmp/Grow.java" <<'EOF'
import java.util.ArrayList;
public class Grow {
    public static void main(String[] a) {
        ArrayList<byte[]> l = new ArrayList<>();
        for (int i = 0; i < 500; i++) l.add(new byte[1 << 20]);
        System.out.println("all " + l.size() + " MiB");
    }
}
EOF
echo 'public class Empty { public static void main(String[] a) {} }' >"$tmp/Empty.java"
if command -v javac >/dev/null; then
	javac -d "$tmp" "$tmp/Grow.java" "$tmp/Empty.java" || fail "javac"
fi

# Go: `import "C"` makes a cgo program, dynamically linked (the loader
# applies the preload; the runtime maps its heap through cgo's libc mmap).
# Without cgo a Go program is static, and the wrapper refuses it as any
# static program (tests/wrapper.sh).
cat >"$tmp/grow.go" <<'EOF'
package main

// #include <stdlib.h>
import "C"
import "fmt"

func main() {
	var l [][]byte
	for i := 0; i < 500; i++ {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = 1
		}
		l = append(l, b)
	}
	fmt.Println("all", len(l), "MiB")
}
EOF
printf 'package main\n\n// #include <stdlib.h>\nimport "C"\n\nfunc main() {}\n' >"$tmp/empty.go"
if command -v go >/dev/null; then
	for g in grow empty; do
		(cd "$tmp" && GOCACHE="$tmp/gocache" GOPATH="$tmp/gopath" GO111MODULE=off \
			go build -o "$tmp/go-$g" "$g.go") || fail "go build $g.go"
	done
fi
# gfortran: ALLOCATE with no stat= ends the program with "Error allocating";
# then libgfortran's backtrace maps several MiB to read the debug info,
# which the limit refuses, and libgfortran crashes on that (SIGSEGV: README,
# runtimes): GFORTRAN_ERROR_BACKTRACE=0 leaves the backtrace out.
cat >"$tmp/grow.f90" <<'EOF'
program grow
  type t
    real(8), allocatable :: a(:)
  end type
  type(t) :: arr(500)
  integer :: i
  do i = 1, 500
    allocate(arr(i)%a(2**17))
    arr(i)%a = 1.0d0
  end do
  print *, 'all', i - 1, 'MiB'
end program
EOF
printf 'program empty\nend program\n' >"$tmp/empty.f90"
if command -v gfortran >/dev/null; then
	for g in grow empty; do
		gfortran -o "$tmp/f-$g" "$tmp/$g.f90" || fail "gfortran $g.f90"
	done
fi

PY='a = [[i] for i in range(50_000_000)]'
# mmap.mmap(-1, n) is a shared anonymous mapping (it ran to 416 MiB under
# 100M before shared anonymous memory counted: a held-out check).
# multiprocessing.shared_memory: files of /dev/shm, mapped shared (500 MiB
# under 100M before shared mappings of files in memory counted, as far as
# /dev/shm had room).
PYSHM='from multiprocessing import shared_memory as s; ms = [(m := s.SharedMemory(create=True, size=1 << 20), m.buf.__setitem__(slice(None), b"x" * (1 << 20))) for _ in range(500)]'
# ctypes.CDLL("libc.so.6").malloc: looked up by libc's handle, glibc's own
# malloc before dlsym gave the library's (400 MiB under 100M).
PYCT='import ctypes; c = ctypes.CDLL("libc.so.6"); c.malloc.restype = ctypes.c_void_p; ps = [ctypes.memset(p, 1, 1 << 20) if (p := c.malloc(1 << 20)) else exit("malloc returned NULL") for _ in range(500)]'
PYMAP='import mmap; ms = [(m := mmap.mmap(-1, 1 << 20), m.write(b"x" * (1 << 20))) for _ in iter(int, 1)]'
JS='const a = []; for (let i = 0; i < 50e6; i++) a.push({ i: i, s: "x" + i });'
PHP='$a = []; for ($i = 0; $i < 50000000; $i++) { $a[] = "x" . $i; }'
RUBY='a = []; 50_000_000.times { a << "x#{_1}" }'
PERL='my @a; push @a, "x$_" for 1 .. 50_000_000;'
LUA='local t = {} for i = 1, 5e7 do t[i] = "x" .. i end'
SQL="create table t(x); with recursive c(i) as (select 1 union all select i + 1 from c where i < 5000000) insert into t select randomblob(100) from c;"
# Java's heap starts at 1/64 of physical memory by default (375 MiB here,
# committed at start-up): -Xms8m lets it start under the limit.
JAVA=(java -Xms8m -XX:ErrorFile="$tmp/hs_err.log" -cp "$tmp")

# name | what must appear in its output | command growing | idle command
# (| separates; commands are split on tabs, and so are the ways a program
# may fail: node's is V8's "heap out of memory", or, about 1 run in 50 to
# 100 here, an uncaught std::bad_alloc: README, Known limits).
TAB=$'\t'
cases=(
	"python3|MemoryError|python3${TAB}-c${TAB}$PY|python3${TAB}-c${TAB}pass"
	"py mmap|Cannot allocate memory|python3${TAB}-c${TAB}$PYMAP|python3${TAB}-c${TAB}import mmap"
	"py ctypes|malloc returned NULL|python3${TAB}-c${TAB}$PYCT|python3${TAB}-c${TAB}import ctypes"
	"py shm|Cannot allocate memory|python3${TAB}-c${TAB}$PYSHM|python3${TAB}-c${TAB}from multiprocessing import shared_memory"
	"node|JavaScript heap out of memory${TAB}std::bad_alloc|node${TAB}-e${TAB}$JS|node${TAB}-e${TAB}0"
	"java|insufficient memory for the Java Runtime Environment|$(printf '%s\t' "${JAVA[@]}")Grow|$(printf '%s\t' "${JAVA[@]}")Empty"
	"java ZGC|java.lang.OutOfMemoryError${TAB}insufficient memory for the Java Runtime Environment|$(printf '%s\t' "${JAVA[@]}")-XX:+UseZGC${TAB}Grow|$(printf '%s\t' "${JAVA[@]}")-XX:+UseZGC${TAB}Empty"
	"php|Out of memory|php${TAB}-n${TAB}-d${TAB}memory_limit=-1${TAB}-r${TAB}$PHP|php${TAB}-n${TAB}-r${TAB};"
	"php.ini|Out of memory|php${TAB}-d${TAB}memory_limit=-1${TAB}-r${TAB}$PHP|php${TAB}-r${TAB};"
	"ruby|failed to allocate memory|ruby${TAB}-e${TAB}$RUBY|ruby${TAB}-e${TAB}0"
	"perl|Out of memory!|perl${TAB}-e${TAB}$PERL|perl${TAB}-e${TAB}1"
	"lua5.4|not enough memory|lua5.4${TAB}-e${TAB}$LUA|lua5.4${TAB}-e${TAB};"
	"sqlite3|out of memory|sqlite3${TAB}:memory:${TAB}$SQL|sqlite3${TAB}:memory:${TAB}select 1;"
	"go|fatal error: runtime: out of memory|$tmp/go-grow|$tmp/go-empty"
	"fortran|Error allocating|env${TAB}GFORTRAN_ERROR_BACKTRACE=0${TAB}$tmp/f-grow|$tmp/f-empty"
	"c++ new|std::bad_alloc after|$PROGS/grow_new${TAB}500|$PROGS/grow_new${TAB}0"
	"c mmap|mmap: MAP_FAILED ENOMEM|$PROGS/mapped_helper${TAB}mmap${TAB}500|$PROGS/mapped_helper${TAB}mmap${TAB}0"
)

# peak KiB and status of a command: run_rss OUT CMD...
run_rss() {
	local out=$1
	shift
	(cd "$tmp" && "$PROGS/peakrss" "$tmp/rss" "$@" >"$out" 2>&1)
	read -r rss st <"$tmp/rss"
}

printf '%-8s %-6s %-44s %9s %9s %9s %9s\n' program fired "how it failed" "peak RSS" idle "peak-idle" "report"
for c in "${cases[@]}"; do
	IFS='|' read -r name want grow idle <<<"$c"
	IFS=$TAB read -r -a gcmd <<<"$grow"
	IFS=$TAB read -r -a icmd <<<"$idle"
	if ! command -v "${gcmd[0]}" >/dev/null; then
		fail "$name: ${gcmd[0]} is not installed or not built (scripts/setup test installs it)"
		continue
	fi
	run_rss "$tmp/idle.out" "${icmd[@]}"
	idle_kib=$rss
	if [ "$st" != 0 ]; then
		fail "$name: the idle run exited $st: $(head -c 600 "$tmp/idle.out")"
		continue
	fi
	rm -f "$tmp"/report.json*
	# (ruby 3.1 can spin for ever after a refusal: README, Known limits.)
	run_rss "$tmp/grow.out" timeout -s KILL 120 \
		"$ROOT/scripts/memlimit" --global-memory ${LIMIT_MIB}M \
		--report "$tmp/report.json" -- "${gcmd[@]}"
	out=$(cat "$tmp/grow.out")
	nbreach=$(grep -c "^$BREACH" "$tmp/grow.out")
	IFS=$TAB read -r -a wants <<<"$want"
	pats=()
	for w in "${wants[@]}"; do pats+=(-e "$w"); done
	how=$(grep -v '^memlimits:' "$tmp/grow.out" | grep -m1 -F "${pats[@]}" | cut -c1-44)
	# The report's peak of the global measure, in KiB (the runtimes that
	# abort write theirs on the abort path).
	measure=$(cat "$tmp"/report.json* 2>/dev/null |
		sed -n 's/.*"peak_\(heap\|memory\)_bytes": \([0-9]*\).*/\2/p' |
		sort -n | tail -1)
	measure=$(( ${measure:--1024} >> 10 ))
	grew_kib=$((rss - idle_kib))
	printf '%-8s %-6s %-44s %6d MiB %5d MiB %5d MiB %5d MiB\n' "$name" \
		"$([ "$nbreach" -ge 1 ] && echo yes || echo no)" "${how:-exit $st}" \
		$((rss >> 10)) $((idle_kib >> 10)) $((grew_kib >> 10)) $((measure >> 10))
	ok=1
	if [ "$st" -ge 128 ] && [ "$st" != 134 ]; then
		fail "$name: killed by signal $((st - 128)) (9: still running after 120 s), not its own out-of-memory path"
		ok=0
	fi
	if [ -z "$how" ]; then
		fail "$name: no '${wants[*]}' in its output"
		ok=0
	fi
	if [ "$nbreach" != 1 ]; then
		fail "$name: $nbreach breach lines, not 1"
		ok=0
	fi
	if [ $((grew_kib * 1024 * 2)) -gt $((LIMIT * 3)) ]; then
		fail "$name: peak RSS less idle is $((grew_kib >> 10)) MiB, over 1.5 x ${LIMIT_MIB} MiB"
		ok=0
	fi
	if [ "$name" = go ] && [ "$measure" -lt 0 ]; then
		: # Go's runtime ends the process by a direct exit_group system
		# call, not by exit(): no atexit handler runs, so no report
		# (README, What the global limit counts).
	elif [ $((measure * 10)) -lt $((grew_kib * 7)) ]; then
		fail "$name: the report's peak ($((measure >> 10)) MiB) is under 70% of the peak RSS less idle"
		ok=0
	fi
	if [ $ok = 0 ]; then
		printf '  output (last 1500 bytes): %s\n' "$(echo "$out" | tail -c 1500)"
	else
		pass
	fi
done
# node filling the limit with typed arrays and Buffers (backing stores from
# malloc): the collection V8 runs when one is refused mallocs its work
# lists, and with no room for them it segfaulted (5 runs of 5). Now V8's own
# out-of-memory end ("JavaScript heap out of memory", or "Fatal process out
# of memory" by V8's trap, 133), or the RangeError the program catches.
if command -v node >/dev/null; then
	for js in 'const a=[]; try{for(;;)a.push(new Uint8Array(65536))}catch(e){console.log("caught",e.message)}' \
		'const a=[]; try{for(;;)a.push(Buffer.alloc(65536))}catch(e){console.log("caught",e.message)}'; do
		for _ in 1 2 3; do
			out=$("$ROOT/scripts/memlimit" --global-memory 100M -- node -e "$js" 2>&1)
			st=$?
			if { [ $st = 0 ] && grep -q "caught Array buffer allocation failed" <<<"$out"; } ||
				{ { [ $st = 134 ] || [ $st = 133 ]; } && grep -q "out of memory" <<<"$out"; }; then
				pass
			else
				fail "node typed arrays under 100M: status $st: $(grep -v '^ *[0-9]*: 0x' <<<"$out" | tail -c 600)"
			fi
		done
	done
fi

# ruby 3.1 under small limits ends as under ulimit -v with the same limit
# (its transient heap is a 32 MiB block: "[BUG] transient_heap_block_alloc:
# failed" below that, "[FATAL] failed to allocate memory" above); it used
# to spin for ever after its first refusal at 20M.
if command -v ruby >/dev/null; then
	for mib in 20 50; do
		want=$( (ulimit -v $((mib * 1024)); ruby -e "$RUBY" 2>&1) 2>/dev/null |
			grep -m1 -o '\[BUG\] transient_heap_block_alloc: failed\|\[FATAL\] failed to allocate memory')
		out=$(timeout -s KILL 60 "$ROOT/scripts/memlimit" --global-memory ${mib}M -- ruby -e "$RUBY" 2>&1)
		st=$?
		if [ -n "$want" ] && [ "$st" != 137 ] && grep -qF "$want" <<<"$out"; then pass; else
			fail "ruby under ${mib}M: status $st, want '$want' as under ulimit -v: $(tail -c 600 <<<"$out")"
		fi
	done
fi

# Programs whose runtime maps its heap with system calls of its own, though
# the library is loaded into them, are refused (125, naming the program and
# why) rather than run with a limit that cannot hold (a held-out check: 400
# MiB under 50M, exit 0, no word): a Go program built without cgo as a PIE
# (an interpreter, no DT_NEEDED), and a Go or Free Pascal program (their
# sections) that imports neither malloc nor mmap. The second kind is made
# here from C, with the section of each runtime; with a malloc import it
# runs (as a cgo Go program or Free Pascal's cmem unit does).
refused_as() { # what-the-message-says program
	local out st
	out=$("$ROOT/scripts/memlimit" --global-memory 50M -- "$2" 2>&1)
	st=$?
	if [ $st = 125 ] && grep -qF "memlimits: $2 $1" <<<"$out" &&
		grep -qF "the limits set cannot hold on it" <<<"$out"; then pass; else
		fail "$2: status $st, want 125 and '$1': $(tail -c 400 <<<"$out")"
	fi
}
if command -v go >/dev/null; then
	sed '/import "C"/d; /#include/d' "$tmp/grow.go" >"$tmp/nocgo.go"
	(cd "$tmp" && CGO_ENABLED=0 GOCACHE="$tmp/gocache" GOPATH="$tmp/gopath" GO111MODULE=off \
		go build -buildmode=pie -o "$tmp/go-pie" nocgo.go) || fail "go build -buildmode=pie"
	refused_as "loads no shared library (as a Go program built without cgo)" "$tmp/go-pie"
fi
cat >"$tmp/ownheap.c" <<'EOF'
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef SECTION
__attribute__((section(SECTION), used)) static const char marker[] = "runtime";
#endif
#ifdef MALLOC
#include <stdlib.h>
void *(*volatile keep)(size_t) = malloc;
#endif
int main(void)
{
	/* 20 MiB (libc's syscall() is the library's: counted). */
	long n = 20L << 20;
	char *p = (char *)syscall(SYS_mmap, 0, n, 3, 0x22, -1, 0);
	memset(p, 1, n);
	return write(1, "grown\n", 6) != 6;
}
EOF
for sec in .fpcdata .go.buildinfo; do
	gcc -O1 -DSECTION="\"$sec\"" -o "$tmp/ownheap$sec" "$tmp/ownheap.c" || fail "gcc ownheap $sec"
	gcc -O1 -DSECTION="\"$sec\"" -DMALLOC -o "$tmp/ownheap-malloc$sec" "$tmp/ownheap.c" ||
		fail "gcc ownheap-malloc $sec"
done
refused_as "is a Free Pascal program (without the cmem unit)" "$tmp/ownheap.fpcdata"
refused_as "is a Go program built without cgo" "$tmp/ownheap.go.buildinfo"
# Run by the loader as a command, /proc/self/exe is the loader: the
# program's file is found where it is mapped (it got through).
ldso=$(sed -n 's/.*interpreter: \(.*\)\]/\1/p' < <(readelf -l "$tmp/ownheap.fpcdata" 2>/dev/null) | head -1)
if [ -x "$ldso" ]; then
	out=$("$ROOT/scripts/memlimit" --global-memory 50M -- "$ldso" "$tmp/ownheap.fpcdata" 2>&1)
	st=$?
	if [ $st = 125 ] && grep -qF "memlimits: $tmp/ownheap.fpcdata is a Free Pascal program" <<<"$out"; then
		pass
	else
		fail "ld.so ownheap.fpcdata: status $st: $(tail -c 400 <<<"$out")"
	fi
	# A path of more than 255 bytes (it got through: a held-out check).
	long="$tmp/$(printf 'd%.0s' $(seq 120))/$(printf 'e%.0s' $(seq 120))"
	mkdir -p "$long" && cp "$tmp/ownheap.fpcdata" "$long/"
	out=$("$ROOT/scripts/memlimit" --global-memory 50M -- "$ldso" "$long/ownheap.fpcdata" 2>&1)
	st=$?
	if [ $st = 125 ] && grep -qF "memlimits: $long/ownheap.fpcdata is a Free Pascal program" <<<"$out"; then
		pass
	else
		fail "ld.so ownheap.fpcdata at a long path: status $st: $(tail -c 400 <<<"$out")"
	fi
	# A name with a newline (written \012 in /proc/self/maps), and a file
	# deleted once opened, run as /proc/self/fd/N: the file is opened by
	# its mapping (both got through: a held-out check). Opening a mapping
	# needs root (CAP_CHECKPOINT_RESTORE) for the deleted one.
	nl="$tmp/own
heap"
	cp "$tmp/ownheap.fpcdata" "$nl"
	out=$("$ROOT/scripts/memlimit" --global-memory 50M -- "$ldso" "$nl" 2>&1)
	st=$?
	if [ $st = 125 ] && grep -qF "is a Free Pascal program" <<<"$out"; then
		pass
	else
		fail "ld.so on a name with a newline: status $st: $(tail -c 400 <<<"$out")"
	fi
	if [ "$(id -u)" = 0 ]; then
		cp "$tmp/ownheap.fpcdata" "$tmp/gone"
		out=$(exec 7<"$tmp/gone"; rm "$tmp/gone"
		      "$ROOT/scripts/memlimit" --global-memory 50M -- "$ldso" /proc/self/fd/7 2>&1)
		st=$?
		if [ $st = 125 ] && grep -qF "(deleted) is a Free Pascal program" <<<"$out"; then
			pass
		else
			fail "ld.so on a deleted file: status $st: $(tail -c 400 <<<"$out")"
		fi
	fi
fi
# A static program that a limited process starts (a shell, make, python's
# subprocess) runs with no limit, which memlimit refuses for the command
# itself: it ran 400 MiB under 50M without a word (a held-out check). Said
# at its exec (execve, execvp's PATH search, posix_spawn); nothing said
# with no limit set, nor for a dynamic program.
printf 'int main(void) { return 0; }\n' >"$tmp/static.c"
if gcc -static -O1 -o "$tmp/static" "$tmp/static.c" 2>/dev/null; then
	warned() { # command...: the warning's lines about $tmp/static
		"$@" 2>&1 | grep -c "memlimits: warning: .*/static is statically linked: the library cannot load in it, so it runs with no limit"
	}
	n=$(warned "$ROOT/scripts/memlimit" --global-memory 50M -- bash -c "'$tmp/static'; true")
	if [ "$n" = 1 ]; then pass; else fail "a static program started by bash: $n warnings"; fi
	n=$(PATH="$tmp:$PATH" warned "$ROOT/scripts/memlimit" --global-memory 50M -- \
		/usr/bin/python3 -c 'import os, subprocess; subprocess.run(["static"]); os.posix_spawnp("static", ["static"], os.environ); os.wait()')
	if [ "$n" = 2 ]; then pass; else fail "a static program started by python (PATH search, posix_spawnp): $n warnings"; fi
	# The loader run on it (ld.so [--argv0 NAME] PROG): PROG is what runs
	# (no word: a held-out check).
	ldso=$(compgen -G '/lib64/ld-linux*.so*' | head -1)
	if [ -n "$ldso" ]; then
		n=$(warned "$ROOT/scripts/memlimit" --global-memory 50M -- bash -c "$ldso '$tmp/static'; $ldso --argv0 x '$tmp/static'; true")
		if [ "$n" = 2 ]; then pass; else fail "a static program run by ld.so from bash: $n warnings"; fi
	fi
	n=$(warned "$ROOT/scripts/memlimit" --report "$tmp/r.json" -- bash -c "'$tmp/static'; true")
	if [ "$n" = 0 ]; then pass; else fail "a static program with no limit set: $n warnings"; fi
	n=$("$ROOT/scripts/memlimit" --global-memory 50M -- bash -c "/bin/true; true" 2>&1 | grep -c "memlimits: warning")
	if [ "$n" = 0 ]; then pass; else fail "a dynamic program: $n warnings"; fi
	# A shell that execs it: the new image writes no report, and the
	# shell's was lost with it (a held-out check); it is written at the
	# exec ("ended_by": "exec").
	mkdir -p "$tmp/unreached"
	"$ROOT/scripts/memlimit" --global-memory 50M --report "$tmp/unreached/r.json" -- \
		sh -c "exec '$tmp/static'" 2>/dev/null
	if grep -q '"ended_by": "exec"' "$tmp/unreached/r.json" 2>/dev/null; then pass; else
		fail "exec of a static program: no report that says \"ended_by\": \"exec\": $(ls "$tmp/unreached")"
	fi
	# The same with a report and no limit: no warning, the report written.
	rm -f "$tmp/unreached/"*
	out=$("$ROOT/scripts/memlimit" --report "$tmp/unreached/r.json" -- sh -c "exec '$tmp/static'" 2>&1)
	if grep -q '"ended_by": "exec"' "$tmp/unreached/r.json" 2>/dev/null && [ -z "$out" ]; then pass; else
		fail "exec of a static program, a report and no limit: '$out' $(ls "$tmp/unreached")"
	fi
	# posix_spawn of it: a new process; the parent's report is its exit's
	# (it was written at the spawn, "exec": a held-out check).
	rm -f "$tmp/unreached/"*
	"$ROOT/scripts/memlimit" --global-memory 50M --report "$tmp/unreached/r.json" -- \
		/usr/bin/python3 -c "import os; os.waitpid(os.posix_spawn('$tmp/static', ['static'], os.environ), 0)" 2>/dev/null
	if grep -q '"ended_by": "exit"' "$tmp/unreached/r.json" 2>/dev/null; then pass; else
		fail "posix_spawn of a static program: the parent's report does not end at its exit: $(cat "$tmp/unreached/r.json" 2>&1 | head -c 300)"
	fi
	# A script for it (#!): the kernel execs the interpreter (missed).
	printf '#!%s\n' "$tmp/static" >"$tmp/static.sh" && chmod +x "$tmp/static.sh"
	n=$("$ROOT/scripts/memlimit" --global-memory 50M -- bash -c "'$tmp/static.sh'; true" 2>&1 |
		grep -c "memlimits: warning: .*/static.sh is a script for an interpreter that is statically linked or set-ID")
	if [ "$n" = 1 ]; then pass; else fail "a script for a static interpreter: $n warnings"; fi
	# fexecve of an O_PATH descriptor, which cannot be read (missed).
	printf '%s\n' '#define _GNU_SOURCE' '#include <fcntl.h>' '#include <unistd.h>' \
		'extern char **environ;' \
		'int main(int c, char **v) { (void)c; char *a[] = { v[1], 0 }; fexecve(open(v[1], O_PATH), a, environ); return 1; }' >"$tmp/fx.c"
	if gcc -O1 -o "$tmp/fx" "$tmp/fx.c"; then
		n=$("$ROOT/scripts/memlimit" --global-memory 50M -- "$tmp/fx" "$tmp/static" 2>&1 |
			grep -c "memlimits: warning: the program fexecve runs is statically linked")
		if [ "$n" = 1 ]; then pass; else fail "fexecve of an O_PATH descriptor: $n warnings"; fi
	fi
	# Set-user-ID to another user, honoured or not: under no_new_privs the
	# bit is ignored and the library loads (it was said all the same).
	if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null &&
		/usr/bin/python3 -c 'import os, sys; sys.exit(os.statvfs(sys.argv[1]).f_flag & os.ST_NOSUID)' "$tmp"; then
		cp /bin/true "$tmp/suid" && chown nobody "$tmp/suid" && chmod 4755 "$tmp/suid"
		n=$("$ROOT/scripts/memlimit" --global-memory 50M -- bash -c "'$tmp/suid'; true" 2>&1 |
			grep -c "is set-user-ID to another user")
		m=$("$ROOT/scripts/memlimit" --global-memory 50M -- setpriv --no-new-privs bash -c "'$tmp/suid'; true" 2>&1 |
			grep -c "memlimits: warning")
		if [ "$n" = 1 ] && [ "$m" = 0 ]; then pass; else fail "set-user-ID: $n warnings, $m under no_new_privs"; fi
	fi
fi
for sec in .fpcdata .go.buildinfo; do
	out=$("$ROOT/scripts/memlimit" --global-memory 50M -- "$tmp/ownheap-malloc$sec" 2>&1)
	if [ $? = 0 ] && [ "$out" = grown ]; then pass; else fail "ownheap-malloc$sec: $out"; fi
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
