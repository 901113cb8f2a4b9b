#!/bin/bash
# valgrind.sh: valgrind's own allocator, preloaded before this library, takes
# malloc and free; the library's own calls must still reach jemalloc and not
# valgrind's (coreutils' test suite found an "Invalid free" in every program
# at start-up). Prints "N passed, M failed".
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
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
