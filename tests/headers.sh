#!/bin/bash
# headers.sh: the public headers compile cleanly wherever a user may put
# them. tests/headers/use_c.c (every function and macro of memlimits.h) is
# built as C99 and C11, and as C++11 and C++17; tests/headers/use_cxx.cc
# (every class and function of memlimits.hpp) as C++11 and C++17; all with
# -pedantic -Wall -Wextra -Werror, with the headers included before and
# after <dlfcn.h>, by gcc/g++ and by clang/clang++ when installed
# (scripts/setup test installs them). One build of each then runs with and
# without the preload, and misuses that memlimits.hpp refuses at compile
# time must not compile. Prints "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
lib=${MLT_LIB:-$PWD/build/libmemlimits.so}
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
strict="-pedantic -Wall -Wextra -Werror"
# C++ programs often build with these too (a held-out check found a 0 used
# as a null pointer in memlimits.h).
cxxstrict="$strict -Wzero-as-null-pointer-constant"

# build OUT COMPILER ARGS...: compiles and links; on failure shows why.
build() {
	local out=$1
	shift
	if "$@" -I. -o "$out" -ldl >"$tmp/log" 2>&1; then
		ok
	else
		bad "$*"
		head -20 "$tmp/log"
	fi
}

ccs=(gcc) cxxs=(g++)
if command -v clang >/dev/null && command -v clang++ >/dev/null; then
	ccs+=(clang) cxxs+=(clang++)
else
	echo "SKIP: clang is not installed (scripts/setup test installs it)"
fi

n=0
for cc in "${ccs[@]}"; do
	for std in c99 c11; do
		for order in "" -DML_DLFCN_FIRST; do
			n=$((n + 1))
			# shellcheck disable=SC2086
			build "$tmp/c$n" "$cc" -std=$std $strict $order tests/headers/use_c.c
		done
	done
done
for cxx in "${cxxs[@]}"; do
	for std in c++11 c++17; do
		for order in "" -DML_DLFCN_FIRST; do
			n=$((n + 1))
			# shellcheck disable=SC2086
			build "$tmp/cxx$n" "$cxx" -std=$std $cxxstrict $order tests/headers/use_cxx.cc
			# shellcheck disable=SC2086
			build "$tmp/cc$n" "$cxx" -x c++ -std=$std $strict $order tests/headers/use_c.c
		done
	done
done

# The built programs work: neutral values without the engine, the engine
# found through the header's dlsym with it.
for p in "$tmp/c1" "$tmp/cxx$n" "$tmp/cc$n"; do
	[ -x "$p" ] || continue
	out=$("$p" 2>&1)
	if [ "$out" = "not loaded: ok" ]; then ok; else bad "$(basename "$p") without the preload: $out"; fi
	out=$(LD_PRELOAD=$lib "$p" 2>&1)
	if [ "$out" = "loaded: ok" ]; then ok; else bad "$(basename "$p") with the preload: $out"; fi
done

# Misuses memlimits.hpp turns into compile errors. Each snippet must fail to
# compile, and for the reason given (the error's text), not for another.
refused() { # $1 = what, $2 = expected pattern in the error, $3 = body of main
	printf '#include "shim/memlimits.hpp"\nint main() { %s }\n' "$3" >"$tmp/m.cc"
	if g++ -std=c++11 -I. -fsyntax-only "$tmp/m.cc" >"$tmp/log" 2>&1; then
		bad "compiled, but must not: $1"
	elif grep -q "$2" "$tmp/log"; then
		ok
	else
		bad "$1: refused for another reason:"
		head -10 "$tmp/log"
	fi
}
refused "a token_limit on a temporary token" "deleted" \
	'ml::token_limit lim{ml::token()}; return lim.active();'
refused "a scoped limit on the heap" "deleted" \
	'auto *lim = new ml::allocation_limit(1); return lim->active();'
refused "a copied token" "deleted" \
	'ml::token a; ml::token b(a); return b.is_set();'
refused "a moved scoped limit" "deleted" \
	'ml::allocation_limit a(1); ml::allocation_limit b(std::move(a)); return b.active();'
refused "a masked block on the heap" "deleted" \
	'delete new ml::masked; return 0;'
# The same snippets' well-formed twins compile (the errors above are not
# caused by the snippet's frame).
printf '#include "shim/memlimits.hpp"\nint main() { ml::token t; ml::token_limit lim{t}; ml::masked m; return lim.active(); }\n' >"$tmp/m.cc"
if g++ -std=c++11 -I. -fsyntax-only "$tmp/m.cc" >"$tmp/log" 2>&1; then ok; else bad "well-formed twin"; head -10 "$tmp/log"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
