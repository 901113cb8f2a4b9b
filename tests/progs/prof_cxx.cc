// prof_cxx: under the profiling build at rate 1 every block is sampled and
// lives in the profiler's range; each form of operator delete (sized and
// aligned ones included, which otherwise go to jemalloc's sized free) must
// recognise such a block: its dealloc callback runs exactly once and the
// block goes back to the profiler. Prints "ok"/"FAIL" lines and
// "N failures"; exit 0 iff none failed.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

#include "shim/memlimits.h"

static void *volatile last_block;
static long deallocs;
static int failures;

static void *on_alloc(const ml_sample *s, void *)
{
	last_block = s->block;
	return s->block; // the cookie: tracked
}

static void on_dealloc(void *cookie, void *)
{
	if (cookie)
		deallocs++;
}

static void check(bool ok, const char *what, std::size_t n, int form)
{
	if (!ok) {
		std::printf("FAIL: %s (size %zu, delete form %d)\n", what, n, form);
		failures++;
	}
}

static void *volatile sink;
static volatile std::size_t vsize;
using std::align_val_t;

int main()
{
	ml_tracker tr = { on_alloc, on_dealloc, nullptr };
	ml_status st = ml_memprof_start(1.0, 4, &tr);
	if (st != ML_OK) {
		std::printf("FAIL: ml_memprof_start: %s\n", ml_status_string(st));
		return 1;
	}
	static const std::size_t sizes[] = { 1, 16, 100, 4000, 70000, 1 << 20 };
	int checks = 0;
	for (std::size_t n : sizes)
		for (int form = 0; form < 10; form++) {
			vsize = n;
			last_block = nullptr;
			long before = deallocs;
			void *p;
			switch (form) {
			case 0: case 1: case 2: p = ::operator new(vsize); break;
			case 3: case 4: p = ::operator new[](vsize); break;
			case 5: p = ::operator new(vsize, std::nothrow); break;
			default: p = ::operator new(vsize, align_val_t(256)); break;
			}
			sink = p;
			check(p && last_block == p, "the block was sampled", n, form);
			std::memset(p, 0x33, n);
			switch (form) {
			case 0: ::operator delete(p); break;
			case 1: ::operator delete(p, vsize); break;
			case 2: ::operator delete(p, std::nothrow); break;
			case 3: ::operator delete[](p); break;
			case 4: ::operator delete[](p, vsize); break;
			case 5: ::operator delete(p, vsize); break;
			case 6: ::operator delete(p, align_val_t(256)); break;
			case 7: ::operator delete(p, vsize, align_val_t(256)); break;
			case 8: ::operator delete[](p, vsize, align_val_t(256)); break;
			default: ::operator delete(p, align_val_t(256), std::nothrow); break;
			}
			check(deallocs == before + 1, "the delete reported the block freed", n, form);
			checks++;
		}
	ml_memprof_stop();
	std::printf("checks %d\nfailures %d\n", checks, failures);
	return failures ? 1 : 0;
}
