/* prof_jeapi: jemalloc's API (preload/jeapi.c) on the profiling build's
 * sampled blocks, which live in the profiler's range, not in jemalloc. At
 * rate 1 every block is sampled; sallocx gives its usable size, dallocx and
 * sdallocx free it (its dealloc callback runs once), rallocx moves it when
 * it outgrows its slot (old block reported freed, contents kept) and grows
 * it in place otherwise (zeroing the growth for MALLOCX_ZERO), xallocx
 * leaves it in place.
 * Linked with libjemalloc.so.2 like a real user of the API. Prints
 * "checks N" and "failures F". */
#define _GNU_SOURCE
#include <jemalloc/jemalloc.h>
#include <stdio.h>
#include <string.h>

#include "shim/memlimits.h"

static void *volatile last_block;
static long deallocs;
static int checks, failures;

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)data;
	last_block = s->block;
	return s->block;
}

static void on_dealloc(void *cookie, void *data)
{
	(void)data;
	if (cookie)
		deallocs++;
}

static void check(int ok, const char *what, size_t n)
{
	checks++;
	if (!ok) {
		failures++;
		printf("FAIL %s (size %zu)\n", what, n);
	}
}

static unsigned char *sampled(size_t n, int flags)
{
	last_block = NULL;
	unsigned char *p = mallocx(n, flags);
	check(p && last_block == p, "mallocx sampled", n);
	return p;
}

int main(void)
{
	ml_tracker tr = { on_alloc, on_dealloc, NULL };
	if (ml_memprof_start(1.0, 4, &tr) != ML_OK) {
		printf("start failed\n");
		return 1;
	}
	static const size_t sizes[] = { 1, 100, 4000, 70000, 1 << 20 };
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		size_t n = sizes[i];
		unsigned char *p = sampled(n, MALLOCX_ZERO | MALLOCX_ALIGN(64));
		if (!p)
			continue;
		check(((uintptr_t)p & 63) == 0, "aligned", n);
		int zero = 1;
		for (size_t k = 0; k < n; k++)
			zero &= p[k] == 0;
		check(zero, "zeroed", n);
		check(sallocx(p, 0) == nallocx(n, MALLOCX_ALIGN(64)), "sallocx = nallocx", n);
		check(xallocx(p, n, 0, 0) == sallocx(p, 0), "xallocx leaves it", n);
		long d = deallocs;
		dallocx(p, 0);
		check(deallocs == d + 1, "dallocx reported it", n);

		p = sampled(n, 0);
		d = deallocs;
		sdallocx(p, n, 0);
		check(deallocs == d + 1, "sdallocx reported it", n);

		p = sampled(n, 0);
		memset(p, 0x42, n);
		d = deallocs;
		unsigned char *q = rallocx(p, 3 * n + 5000, 0);
		check(q && q != p, "rallocx moved it", n);
		check(deallocs == d + 1, "rallocx reported the old block", n);
		int kept = q != NULL;
		for (size_t k = 0; q && k < n; k++)
			kept &= q[k] == 0x42;
		check(kept, "rallocx kept the contents", n);
		d = deallocs;
		dallocx(q, 0);
		check(deallocs == d + 1, "the moved block freed", n);
	}
	/* Grown in place in its slot by rallocx with MALLOCX_ZERO: the bytes
	 * past the old usable size are zero, though the slot held another
	 * block's bytes (a freed slot is reused as it was). */
	unsigned char *x = sampled(3000, 0);
	memset(x, 0xaa, 3000);
	dallocx(x, 0);
	unsigned char *p = sampled(100, 0);
	size_t have = sallocx(p, 0);
	memset(p, 0x42, 100);
	unsigned char *q = rallocx(p, 2000, MALLOCX_ZERO);
	check(q == p && q == x, "rallocx grew it in place, in the reused slot", 100);
	int kept = q != NULL, zero = q != NULL;
	for (size_t k = 0; q && k < 100; k++)
		kept &= q[k] == 0x42;
	for (size_t k = have; q && k < sallocx(q, 0); k++)
		zero &= q[k] == 0;
	check(kept, "rallocx in place kept the contents", 100);
	check(zero, "rallocx in place zeroed the growth", 100);
	dallocx(q, 0);
	ml_memprof_stop();
	printf("checks %d\nfailures %d\n", checks, failures);
	return failures ? 1 : 0;
}
