/* backend.c: core/backend.h over jemalloc. */
#include <stdint.h>

#include "../core/backend.h"
#include "jemalloc.h"

void mli_be_thread_counters(const uint64_t **alloc, const uint64_t **dealloc)
{
	/* Pointers into jemalloc's thread-specific data, which its fast paths
	 * update with usable sizes anyway. */
	static const uint64_t zero;
	uint64_t *p;
	size_t len = sizeof p;
	*alloc = *dealloc = &zero;
	if (mli_je_mallctl("thread.allocatedp", &p, &len, NULL, 0) == 0)
		*alloc = p;
	len = sizeof p;
	if (mli_je_mallctl("thread.deallocatedp", &p, &len, NULL, 0) == 0)
		*dealloc = p;
}

void *mli_be_malloc(size_t n)
{
	return mli_je_malloc(n);
}

void mli_be_free(void *p)
{
	free(p);
}

size_t mli_be_usable_size(const void *p)
{
	return p ? mli_je_sallocx(p, 0) : 0;
}

int mli_be_trim(void)
{
	/* arena.<all>.purge: return all unused dirty pages to the system. */
	return mli_je_mallctl("arena.4096.purge", NULL, NULL, NULL, 0) == 0 ? 0 : -1;
}

static uint64_t stat_u64(const char *name)
{
	uint64_t v = 0;
	size_t len = sizeof v;
	return mli_je_mallctl(name, &v, &len, NULL, 0) == 0 ? v : 0;
}

static void refresh(void)
{
	uint64_t epoch = 1;
	size_t len = sizeof epoch;
	mli_je_mallctl("epoch", &epoch, &len, &epoch, len);
}

uint64_t mli_be_nrequests(void)
{
	/* The tcache counts its requests locally and merges them into the
	 * arena's statistics when it flushes: flush this thread's first. */
	mli_je_mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
	refresh();
	return stat_u64("stats.arenas.4096.small.nrequests") +
	       stat_u64("stats.arenas.4096.large.nrequests");
}

int64_t mli_be_stats_allocated(void)
{
	refresh();
	size_t v = 0, len = sizeof v;
	return mli_je_mallctl("stats.allocated", &v, &len, NULL, 0) == 0
		? (int64_t)v : -1;
}
