#!/bin/bash
# valgrind.sh: valgrind's own allocator, preloaded before this library, takes
# malloc and free; the library's own calls must still reach jemalloc and not
# valgrind's (coreutils' test suite found an "Invalid free" in every program
# at start-up). And limits that cannot hold on such a malloc (valgrind's, or
# tcmalloc's preloaded first) are refused before main. Prints "N passed, M
# failed".
set -u
cd "$(dirname "$0")/.."
lib=${MLT_LIB:-$PWD/build/libmemlimits.so}
pass=0 fail=0
# A C++ program too: its operators (a sized delete is free's address in
# the library) must all be valgrind's, or all the library's.
cxx=$(mktemp -d)
trap 'rm -rf "$cxx"' EXIT
g++ -O2 -o "$cxx/ops" -x c++ - <<'EOF'
#include <string>
#include <vector>
struct Obj { char b[48]; };
int main()
{
	std::vector<std::string> v;
	for (int i = 0; i < 1000; i++) {
		v.push_back(std::string(100 + i, 'x'));
		Obj *o = new Obj; /* a sized delete */
		delete o;
		int *a = new int[i + 1];
		delete[] a;
	}
	return v.size() == 1000 ? 0 : 1;
}
EOF
for cmd in /bin/true "/usr/bin/python3 -c print(1)" "$cxx/ops"; do
	# shellcheck disable=SC2086
	if out=$(LD_PRELOAD=$lib valgrind -q --error-exitcode=9 $cmd 2>&1); then
		pass=$((pass + 1))
	else
		echo "FAIL: valgrind $cmd under the preload:"
		echo "$out" | head -20
		fail=$((fail + 1))
	fi
done
# With a limit set, a malloc that is not the library's is refused before
# main: valgrind's, or another allocator preloaded before the library
# (tcmalloc grew its heap with sbrk: 200 MiB under a 50M limit, no word).
# Without one, a report or a profile gets a warning; alone, nothing.
tc=/usr/lib/$(cc -print-multiarch)/libtcmalloc_minimal.so.4
check() { # description, expected status, expected stderr (grep -E; "": none), command...
	local what=$1 want=$2 re=$3 out st
	shift 3
	out=$("$@" 2>&1 >/dev/null)
	st=$?
	if [ "$st" = "$want" ] && if [ -z "$re" ]; then [ -z "$out" ]; else grep -qE -- "$re" <<<"$out"; fi; then
		pass=$((pass + 1))
	else
		echo "FAIL: $what: status $st, stderr: $out"
		fail=$((fail + 1))
	fi
}
check "valgrind's malloc under a limit" 125 "^memlimits: malloc in this process is not memlimits' but a tool's" \
	env LD_PRELOAD="$lib" MEMLIMITS_GLOBAL_MEMORY=50M valgrind -q /bin/true
check "valgrind --tool=none under a limit" 0 "" \
	env LD_PRELOAD="$lib" MEMLIMITS_GLOBAL_MEMORY=50M valgrind -q --tool=none /bin/true
if [ -f "$tc" ]; then
	check "tcmalloc before the library, under a limit" 125 \
		"^memlimits: malloc in this process is not memlimits' but $tc's: the limits set cannot hold" \
		env LD_PRELOAD="$tc:$lib" MEMLIMITS_ALLOCATIONS=1G /bin/true
	check "tcmalloc before the library, a report" 0 "^memlimits: warning: malloc in this process is not memlimits'" \
		env LD_PRELOAD="$tc:$lib" MEMLIMITS_REPORT=stderr /bin/true
	check "tcmalloc after the library, under a limit" 0 "" \
		env LD_PRELOAD="$lib:$tc" MEMLIMITS_GLOBAL_MEMORY=50M /bin/true
else
	echo "SKIP: $tc is missing (google-perftools)"
fi
# glibc's libc_malloc_debug defines only the versioned malloc@GLIBC_2.2.5
# (which programs bind, and an unversioned lookup skips); with
# MALLOC_CHECK_ it serves them from glibc's heap (400 MiB under 50M, no
# word: a held-out check). Without it, it passes calls on to the library.
dbg=/lib/$(cc -print-multiarch)/libc_malloc_debug.so.0
if [ -f "$dbg" ]; then
	check "libc_malloc_debug with MALLOC_CHECK_=3 before the library" 125 \
		"^memlimits: malloc in this process is not memlimits' but $dbg's" \
		env LD_PRELOAD="$dbg:$lib" MALLOC_CHECK_=3 MEMLIMITS_GLOBAL_MEMORY=50M /bin/true
	check "libc_malloc_debug, glibc.malloc.check=3, before the library" 125 \
		"^memlimits: malloc in this process is not memlimits' but $dbg's" \
		env LD_PRELOAD="$dbg:$lib" GLIBC_TUNABLES=glibc.malloc.check=3 MEMLIMITS_GLOBAL_MEMORY=50M /bin/true
	check "libc_malloc_debug without checks before the library" 0 "" \
		env LD_PRELOAD="$dbg:$lib" MEMLIMITS_GLOBAL_MEMORY=50M /bin/true
	check "libc_malloc_debug with MALLOC_CHECK_=3 after the library" 0 "" \
		env LD_PRELOAD="$lib:$dbg" MALLOC_CHECK_=3 MEMLIMITS_GLOBAL_MEMORY=50M /bin/true
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
