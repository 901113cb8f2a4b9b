// alloc_cxx: C++ new/delete go through the preloaded malloc. Run under the
// preload; prints what it checked and exits 0 iff all of it held.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "shim/memlimits.h"

static int failures;

static void check(bool ok, const char *what)
{
	std::printf("%s: %s\n", ok ? "ok" : "FAIL", what);
	if (!ok)
		failures++;
}

static uint64_t counted(void)
{
	struct ml_stats s;
	if (ml_stats(&s) != ML_OK)
		return 0;
	return s.thread_allocated;
}

// Keeps the compiler from eliding new/delete pairs.
static void *volatile sink;
static volatile size_t vsize;

struct Big {
	char data[1000];
	int x;
};

int main(void)
{
	check(ml_loaded(), "engine loaded");
	if (!ml_loaded())
		return 1;

	static const size_t sizes[] = { 1, 17, 4096, 12345, 1 << 20 };
	for (size_t n : sizes) {
		vsize = n;
		uint64_t a = counted();
		char *p = new char[vsize];
		sink = p;
		uint64_t b = counted();
		char msg[128];
		std::snprintf(msg, sizeof msg, "new char[%zu] counted %llu", n,
			      (unsigned long long)(b - a));
		check(b - a == n, msg);
		a = counted();
		delete[] p;
		check(counted() == a, "delete[] counts nothing");
	}

	uint64_t a = counted();
	Big *o = new Big;
	sink = o;
	check(counted() - a == sizeof(Big), "new Big counts sizeof(Big)");
	delete o;

	// Failure is std::bad_alloc, and counts nothing.
	vsize = SIZE_MAX / 4;
	a = counted();
	bool thrown = false;
	try {
		char *p = new char[vsize];
		sink = p;
		delete[] p;
	} catch (const std::bad_alloc &) {
		thrown = true;
	}
	check(thrown, "huge new throws std::bad_alloc");
	/* Only the exception object may have been allocated. */
	check(counted() - a < 4096, "failed new counts nothing");
	char *np = new (std::nothrow) char[vsize];
	sink = np;
	check(np == nullptr, "huge nothrow new gives nullptr");

	// Aligned new goes through the aligned forms.
	vsize = 1000;
	a = counted();
	char *al = new (std::align_val_t(256)) char[vsize];
	sink = al;
	uint64_t got = counted() - a;
	check(((uintptr_t)al & 255) == 0, "aligned new is 256-aligned");
	check(got >= 1000 && got < 1000 + 256, "aligned new counted");
	::operator delete[](al, std::align_val_t(256));

	// Containers.
	a = counted();
	{
		std::vector<int> v;
		for (int i = 0; i < 100000; i++)
			v.push_back(i);
		std::string s(50000, 'x');
		sink = &v[0];
		check(v[99999] == 99999 && s.size() == 50000, "containers work");
	}
	check(counted() - a >= 100000 * sizeof(int) + 50000,
	      "container memory counted");

	std::printf("%d failures\n", failures);
	return failures ? 1 : 0;
}
