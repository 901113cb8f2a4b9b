// libcxxlocal.so: C++ code in a library that a C program loads with
// RTLD_LOCAL (as python loads a C++ extension), so that libstdc++ is only
// in this library's own scope: the library's operator new must still find
// the runtime to throw std::bad_alloc and to catch a new_handler's
// exception. cxxlocal_run returns the number of failed checks and prints
// what it checked.
#include <cstdint>
#include <cstdio>
#include <new>

#include "shim/memlimits.h"

static volatile std::size_t vsize;
static void *volatile sink;
static int failures;

static void check(bool ok, const char *what)
{
	std::printf("%s: %s\n", ok ? "ok" : "FAIL", what);
	if (!ok)
		failures++;
}

static int calls;
static void throwing_handler()
{
	calls++;
	throw 7;
}

extern "C" int cxxlocal_run(void)
{
	vsize = SIZE_MAX / 2;
	bool caught = false;
	try {
		sink = ::operator new(vsize);
	} catch (const std::bad_alloc &) {
		caught = true;
	}
	check(caught, "an impossible new throws std::bad_alloc");

	ml_start();
	ml_scope s;
	ml_enter_allocations(&s, 4096);
	caught = false;
	try {
		sink = new char[8192];
	} catch (const std::bad_alloc &) {
		caught = true;
	}
	ml_status st = ml_leave(&s, nullptr);
	check(caught && st == ML_ALLOCATION_LIMIT, "a task's limit throws std::bad_alloc");

	std::set_new_handler(throwing_handler);
	void *p = ::operator new(vsize, std::nothrow);
	std::set_new_handler(nullptr);
	check(p == nullptr && calls == 1, "nothrow new: the handler's exception caught, nullptr");
	return failures;
}
