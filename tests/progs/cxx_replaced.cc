// cxx_replaced: a program that defines its own operator new(size_t) and
// operator delete(void *) only (a tracking allocator with a header before
// each block, as memory-tracking code does). libstdc++ makes every other
// form of those two, so new[], nothrow new, sized delete, delete[] must all
// reach the program's, also under the preload, which then steps aside
// (preload/cxx.c). Without that, a sized delete would hand the program's
// block (16 bytes into a malloc'd one) to jemalloc. Prints "ok"/"FAIL" lines
// and "N failures"; exit 0 iff none failed.
// Deliberately only the unsized delete: what this program tests.
#pragma GCC diagnostic ignored "-Wsized-deallocation"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

static long news, deletes, live;
static const uint64_t MAGIC = 0x6d656d6c696d6974ULL;

void *operator new(std::size_t n)
{
	uint64_t *h = static_cast<uint64_t *>(std::malloc(n + 16));
	if (!h)
		throw std::bad_alloc();
	h[0] = MAGIC;
	h[1] = n;
	news++;
	live += (long)n;
	return h + 2;
}

void operator delete(void *p) noexcept
{
	if (!p)
		return;
	uint64_t *h = static_cast<uint64_t *>(p) - 2;
	if (h[0] != MAGIC) {
		std::fprintf(stderr, "FAIL: delete of a block that is not ours: %p\n", p);
		std::abort();
	}
	h[0] = 0;
	deletes++;
	live -= (long)h[1];
	std::free(h);
}

static int failures;
static void check(bool ok, const char *what, long got, long want)
{
	std::printf("%s: %s (%ld, expected %ld)\n", ok ? "ok" : "FAIL", what, got, want);
	if (!ok)
		failures++;
}

static void *volatile sink;
static volatile std::size_t vsize = 100;

struct Obj {
	char data[40];
};

int main()
{
	long n0 = news, d0 = deletes;
	Obj *o = new Obj; // operator new(size_t): the program's own
	sink = o;
	delete o;         // sized delete: libstdc++ makes it of the unsized one
	char *a = new char[vsize]; // new[]
	sink = a;
	delete[] a;
	Obj *arr = new Obj[3];
	sink = arr;
	delete[] arr;     // sized delete[]
	Obj *nt = new (std::nothrow) Obj;
	sink = nt;
	delete nt;
	char *nta = new (std::nothrow) char[vsize];
	sink = nta;
	::operator delete[](nta, std::nothrow);
	void *raw = ::operator new(64);
	::operator delete(raw, std::size_t(64));
	{
		std::vector<std::string> v;
		for (int i = 0; i < 1000; i++)
			v.push_back(std::string(50, 'x'));
		sink = &v[0];
	}
	check(news - n0 >= 6 + 1000, "allocations reached the program's operator new",
	      news - n0, 6 + 1000);
	check(deletes - d0 == news - n0, "every one freed by the program's operator delete",
	      deletes - d0, news - n0);
	check(live == 0, "nothing left", live, 0);
	std::printf("%d failures\n", failures);
	return failures ? 1 : 0;
}
