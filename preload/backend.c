/* backend.c: core/backend.h over jemalloc. */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "../core/backend.h"
#include "../core/internal.h"
#include "jemalloc.h"

/* The embedded jemalloc's defaults (its weak `malloc_conf`, which this
 * strong one replaces; MALLOC_CONF in the environment still overrides
 * each option). Measured on the workload kinds of make bench (issue 13):
 *  - muzzy_decay_ms:-1: freed pages that decay are given back lazily
 *    (MADV_FREE: the kernel takes them when it needs them) instead of
 *    with MADV_DONTNEED, which the next use refaults: large blocks freed
 *    and allocated in cycles ran 14x faster (13k page faults instead of
 *    286k), at the same peak RSS;
 *  - tcache_max:1048576: threads cache freed blocks up to 1 MiB, not 32
 *    KiB: random sizes up to 1 MiB ran 1.5x faster (127k faults instead of
 *    199k), peak RSS +8%;
 *  - lg_extent_max_active_fit:10: a free extent up to 1024 times (not 64)
 *    the request's size may be split for it. With lazily given back pages
 *    (above), python3 building and dropping objects (scripts/bench/pywork.py,
 *    PYTHONMALLOC=malloc) kept taking new extents while the freed ones sat
 *    resident: peak RSS 200 MiB against stock jemalloc's 110; 90 MiB now,
 *    with half the page faults, and no other workload of make bench moved.
 * The cost: resident memory after a spike stays until the kernel needs
 * it, and each thread may cache some large blocks (jemalloc's cache GC
 * returns the unused ones as the thread keeps allocating). Under a memory
 * limit, a refusal purges what jemalloc holds (memory.c); but a block in a
 * thread's cache is neither in the limit's measure (it is freed) nor
 * purged (it is jemalloc's allocated), and each thread caches up to 20
 * blocks of every size class up to tcache_max: 64 threads that filled a
 * 100M limit with blocks of 1,000,000 bytes and freed them held 519 MB
 * resident (a held-out check). So under a memory limit tcache_max is the
 * largest power of two within limit/1024, from 16 KiB up to 1 MiB (100M:
 * 64 KiB; 1G and more: 1 MiB). */
#define CONF_BASE "muzzy_decay_ms:-1,lg_extent_max_active_fit:10"
const char *malloc_conf = CONF_BASE ",tcache_max:1048576";
static char limited_conf[96];

/* jemalloc's size-class tables (src/sz.c), filled by its sz_boot(). */
extern uint8_t je_sz_size2index_tab[];
extern size_t je_sz_index2size_tab[];

/* glibc returns 16-byte aligned memory for every request on x86-64, and
 * programs rely on it; jemalloc serves requests of 8 bytes or less from an
 * 8-byte "tiny" class. Rounding the request up on the fast path would cost
 * two instructions per malloc, so instead the size-to-class table that
 * jemalloc's own fast path reads maps 0..8 bytes to the 16-byte class, as a
 * jemalloc built with --with-lg-tiny-min=4 would. Done only if the tables
 * look as this code expects (jemalloc 5.3's layout), and after jemalloc's
 * initialisation, which fills them. */
void mli_be_init(int64_t mem_limit)
{
	if (mem_limit >= 0) {
		uint64_t max = (uint64_t)1 << 20;
		while (max > ((uint64_t)16 << 10) && max > (uint64_t)mem_limit / 1024)
			max >>= 1;
		struct mli_buf b = { limited_conf, 0, sizeof limited_conf };
		mli_buf_str(&b, CONF_BASE ",tcache_max:");
		mli_buf_u64(&b, max);
		limited_conf[b.len < sizeof limited_conf ? b.len : sizeof limited_conf - 1] = 0;
		malloc_conf = limited_conf; /* read by jemalloc's start, below */
	}
	const char *version = NULL;
	size_t len = sizeof version;
	void *p = mli_je_malloc(1); /* makes sure jemalloc is initialised */
	mli_je_free(p);
	if (mli_je_mallctl("version", &version, &len, NULL, 0) != 0 || !version ||
	    strncmp(version, "5.3.", 4) != 0)
		return;
	/* Index 0 must be the 8-byte class and index 1 the 16-byte class;
	 * lookup slot k covers sizes 8k-7 .. 8k (slot 0: size 0). */
	if (je_sz_index2size_tab[0] != 8 || je_sz_index2size_tab[1] != 16 ||
	    je_sz_size2index_tab[0] != 0 || je_sz_size2index_tab[1] != 0 ||
	    je_sz_size2index_tab[2] != 1)
		return;
	__atomic_store_n(&je_sz_size2index_tab[0], 1, __ATOMIC_RELAXED);
	__atomic_store_n(&je_sz_size2index_tab[1], 1, __ATOMIC_RELAXED);
}

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

/* jemalloc 5.3's experimental.thread.activity_callback: a per-thread
 * callback its peak-tracking events run every 64 KiB of the thread's
 * allocation and of its deallocation (src/peak_event.c). */
struct activity_thunk {
	void (*fn)(void *arg, uint64_t allocated, uint64_t deallocated);
	void *arg;
};

bool mli_be_thread_watch(void (*fn)(void *arg, uint64_t allocated,
				    uint64_t deallocated),
			 void *arg)
{
	struct activity_thunk t = { fn, arg };
	return mli_je_mallctl("experimental.thread.activity_callback", NULL,
			      NULL, &t, sizeof t) == 0;
}

/* The engine's calls into jemalloc outside the allocation path (its own
 * blocks, the statistics, a purge) take jemalloc's locks: a signal handler
 * that allocates or forks (wrong, but programs do it) must not run in this
 * thread meanwhile. A fork there waits in jemalloc's fork handler for the
 * lock its own thread holds: pthread_create's block for the new thread
 * (6 runs of 10 of a program forking from a 2 ms timer while it made
 * threads hung) and the exit report's statistics (ctl_mtx) did (a held-out
 * check). So signals are blocked around each. */
static void signals_off(sigset_t *old)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, old);
}

static void signals_on(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* Usable bytes of the engine's own live blocks (the profile's tables, a
 * token, a starting thread's arguments): jemalloc's per-thread counters
 * include them, the heap the limits see does not. */
static int64_t own_live;

void *mli_be_malloc(size_t n)
{
	sigset_t old;
	signals_off(&old);
	void *p = mli_je_malloc(n);
	if (p) {
		int64_t size = (int64_t)mli_je_sallocx(p, 0);
		__atomic_fetch_add(&own_live, size, __ATOMIC_RELAXED);
		mli_mem_base_add(-size);
	}
	signals_on(&old);
	return p;
}

void mli_be_free(void *p)
{
	if (!p)
		return;
	sigset_t old;
	signals_off(&old);
	int64_t size = (int64_t)mli_je_sallocx(p, 0);
	__atomic_fetch_sub(&own_live, size, __ATOMIC_RELAXED);
	mli_mem_base_add(size);
	mli_je_free(p);
	signals_on(&old);
}

int64_t mli_be_own_live(void)
{
	return __atomic_load_n(&own_live, __ATOMIC_RELAXED);
}

size_t mli_be_usable_size(const void *p)
{
	return p ? mli_je_sallocx(p, 0) : 0;
}

size_t mli_be_block_size(size_t n)
{
	size_t s = mli_je_nallocx(n, 0);
	return s >= n ? s : n; /* 0: too large for any class */
}

int mli_be_trim(void)
{
	/* arena.<all>.purge: return all unused dirty pages to the system. */
	sigset_t old;
	signals_off(&old);
	int r = mli_je_mallctl("arena.4096.purge", NULL, NULL, NULL, 0);
	signals_on(&old);
	return r == 0 ? 0 : -1;
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

int64_t mli_be_unused(void)
{
	sigset_t old;
	signals_off(&old);
	refresh();
	size_t dirty = 0, muzzy = 0, page = 0, len = sizeof dirty;
	int r = mli_je_mallctl("stats.arenas.4096.pdirty", &dirty, &len, NULL, 0) |
		mli_je_mallctl("stats.arenas.4096.pmuzzy", &muzzy, &len, NULL, 0) |
		mli_je_mallctl("arenas.page", &page, &len, NULL, 0);
	signals_on(&old);
	return r ? -1 : (int64_t)((dirty + muzzy) * page);
}

void mli_be_flush_cache(void)
{
	sigset_t old;
	signals_off(&old);
	mli_je_mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
	signals_on(&old);
}

uint64_t mli_be_nrequests(void)
{
	/* The tcache counts its requests locally and merges them into the
	 * arena's statistics when it flushes: flush this thread's first. */
	sigset_t old;
	signals_off(&old);
	mli_je_mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
	refresh();
	uint64_t n = stat_u64("stats.arenas.4096.small.nrequests") +
		     stat_u64("stats.arenas.4096.large.nrequests");
	signals_on(&old);
	return n;
}

int64_t mli_be_stats_allocated(void)
{
	sigset_t old;
	signals_off(&old);
	/* Blocks in this thread's cache count as allocated: flush them. */
	mli_je_mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
	refresh();
	size_t v = 0, len = sizeof v;
	int r = mli_je_mallctl("stats.allocated", &v, &len, NULL, 0);
	signals_on(&old);
	return r == 0 ? (int64_t)v : -1;
}
