#!/bin/bash
# install.sh: `make install` puts the library, headers, wrapper and pkg-config
# file where C libraries go, and the installed wrapper finds the installed
# library. Prints "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok; else bad "$1"; fi; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/usr
if ! make -s install PREFIX="$prefix" >"$tmp/log" 2>&1; then
	cat "$tmp/log"
	echo "0 passed, 1 failed"
	exit 1
fi
check '[ -x "$prefix/lib/libmemlimits.so" ]'
check '[ -f "$prefix/include/memlimits.h" ]'
check 'cmp -s shim/memlimits.hpp "$prefix/include/memlimits.hpp"'
check '[ -x "$prefix/bin/memlimit" ]'
check '[ -x "$prefix/bin/memlimit-report" ]'
check '[ -f "$prefix/lib/pkgconfig/memlimits.pc" ]'
check '[ -f "$prefix/share/man/man1/memlimit.1" ]'
version=$(cat VERSION)
check 'grep -q "^Version: $version$" "$prefix/lib/pkgconfig/memlimits.pc"'
# The installed wrapper knows its version without the source tree, and the
# installed man page is the wrapper's and renders.
check '[ "$("$prefix/bin/memlimit" --version)" = "memlimit (memlimits) $version" ]'
check 'grep -q "^\.TH MEMLIMIT 1 .*memlimits $version" "$prefix/share/man/man1/memlimit.1"'
if command -v man >/dev/null; then
	check 'MANWIDTH=80 man -l "$prefix/share/man/man1/memlimit.1" 2>/dev/null | grep -q -- "--global-memory"'
fi
check 'grep -q "^libdir=$prefix/lib$" "$prefix/lib/pkgconfig/memlimits.pc"'
check 'grep -q "^Libs: -ldl" "$prefix/lib/pkgconfig/memlimits.pc"'
# The installed wrapper, copied away from the source tree, uses the
# installed library.
out=$("$prefix/bin/memlimit" --global-memory 64M -- sh -c 'echo "$LD_PRELOAD|$MEMLIMITS_GLOBAL_MEMORY"')
check '[ "$out" = "$prefix/lib/libmemlimits.so|64M" ]'
# A program built against the installed header alone runs with and without
# the preload.
cat >"$tmp/p.c" <<'C'
#include <memlimits.h>
#include <stdio.h>
int main(void) { printf("%s\n", ml_loaded() ? "loaded" : "not loaded"); return 0; }
C
if cc -I"$prefix/include" -o "$tmp/p" "$tmp/p.c" -ldl; then
	check '[ "$("$tmp/p")" = "not loaded" ]'
	check '[ "$(LD_PRELOAD=$prefix/lib/libmemlimits.so "$tmp/p")" = "loaded" ]'
else
	bad "compiling against the installed header"
fi
# The C++ header finds memlimits.h next to it: a C++ program built against
# the installed headers alone runs with and without the preload.
cat >"$tmp/p.cc" <<'C'
#include <memlimits.hpp>
#include <cstdio>
int main() {
	ml_start();
	std::uint64_t used = 0;
	ml_status st = ml::limit_allocations(100, [] { delete[] new char[1000]; }, &used);
	std::printf("%s\n", ml_status_string(st));
	return 0;
}
C
if c++ -std=c++11 -I"$prefix/include" -o "$tmp/pp" "$tmp/p.cc" -ldl; then
	check '[ "$("$tmp/pp")" = "engine not loaded (libmemlimits.so is not preloaded)" ]'
	check '[ "$(LD_PRELOAD=$prefix/lib/libmemlimits.so "$tmp/pp")" = "allocation limit reached" ]'
else
	bad "compiling C++ against the installed headers"
fi
# DESTDIR stages the same tree under another root.
make -s install PREFIX=/usr/local DESTDIR="$tmp/stage" >/dev/null 2>&1
check '[ -x "$tmp/stage/usr/local/lib/libmemlimits.so" ]'
check '[ -f "$tmp/stage/usr/local/include/memlimits.hpp" ]'
check 'grep -q "^libdir_hint=\"/usr/local/lib\"$" "$tmp/stage/usr/local/bin/memlimit"'
check 'grep -q "^version=\"$version\"$" "$tmp/stage/usr/local/bin/memlimit"'
check '[ -f "$tmp/stage/usr/local/share/man/man1/memlimit.1" ]'
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
