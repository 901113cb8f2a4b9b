/* memory.c: the process's memory, as the global limit sees it, and the
 * meter of MEMLIMITS_GLOBAL_MEMORY.
 *
 * Memory = malloc heap + memory mapped outside malloc. The heap is what the
 * backend counts per thread (allocated minus deallocated usable bytes, on
 * its own fast paths, so free() needs no wrapper), plus sampled blocks, less
 * the engine's own blocks. Summing it over threads at every decision would
 * cost O(threads); instead each thread publishes its live bytes into one
 * shared sum:
 *  - from the backend's activity callback, which runs every 64 KiB of the
 *    thread's allocation and of its deallocation: when its live bytes moved
 *    by PUB_QUANTUM since it last published (a thread that allocates and
 *    frees in balance never touches the shared word); this is what makes a
 *    thread that only frees (a consumer) count;
 *  - at its slow path, when they grew by more than PUB_SLACK.
 * A decision reads the sum plus the deciding thread's own unpublished bytes:
 * O(1). Another thread's unpublished growth is at most PUB_SLACK plus what
 * it took from its grant since its last slow path, which is why the global
 * limit's overshoot bound is per thread (engine.c: MEM_GRANT + PUB_SLACK).
 * The sum may also run ahead of the truth by frees not yet published; when
 * a decision would refuse, or a figure must be exact (ml_stats, the report),
 * one walker at a time publishes every thread's exact figure.
 *
 * The peak is noted at every admission (the memory plus the request, so
 * every admitted block is in it) and at every publication. */

#include "internal.h"
#include "mapped.h"

#define PUB_QUANTUM MLI_PUB_QUANTUM
#define PUB_SLACK MLI_PUB_SLACK
/* Under a cap, a thread's grant: with PUB_SLACK, the per-thread overshoot
 * bound of 64 KiB stated in the README. */
#define MEM_GRANT ((uint64_t)56 << 10)
_Static_assert(MEM_GRANT + PUB_SLACK == ((uint64_t)64 << 10),
	       "the README states 64 KiB per thread");

static int64_t heap_pub; /* sum of published live bytes, dead threads too */
/* Memory not in any thread's counters: sampled blocks (region.c) and
 * mapped memory, less the engine's own blocks, which are (backend.c). */
static int64_t base;
static int64_t mapped;   /* counted bytes mapped outside malloc */
/* Big blocks admitted under a memory limit and not yet published by their
 * threads (mli_mem_over's reserve): in the measure meanwhile, as
 * reserved - settled. Two counters that only grow, not one sum: a
 * reservation's compare-and-swap on a sum that went down (a block settled)
 * and back up (another block of the same size reserved) succeeded on a
 * stale view, and a reader of the sum that read the published heap before
 * a block's publication and the sum after its settlement missed the block:
 * 3 blocks of 8 MiB under 20M (a held-out run of tests/progs/big_at_once
 * under load). A block is published before it is settled; readers read
 * settled, then the heap, then reserved: a block is seen once at least. */
static uint64_t reserved, settled;
static int64_t peak;
static uint64_t walks;   /* exact walks completed */
/* False if the backend cannot call on_activity: then a thread's frees are
 * published only by its own slow paths and by walks, and every decision
 * walks (O(threads), the price of an allocator without the callback). */
static bool watched = true;

static int64_t thread_live(const struct mli_thread *t)
{
	return (int64_t)(__atomic_load_n(t->be_alloc, __ATOMIC_RELAXED) -
			 __atomic_load_n(t->be_dealloc, __ATOMIC_RELAXED));
}

/* thread_live of a thread that may be running (a walker's read), or of
 * this one when a signal handler may run between the two loads: the two
 * counters are read at different moments, and the thread may free a lot in
 * between (a walker descheduled there read -1.4 GB for a thread that held
 * 16 KiB, and the figure was published). Read the deallocations on both
 * sides of the allocations: if they did not move, the pair is the thread's
 * live bytes at one moment; if they keep moving, the first reading, which
 * can only over-count by the frees made during the reads. */
static int64_t thread_live_consistent(const struct mli_thread *t)
{
	uint64_t d1, a, d2 = __atomic_load_n(t->be_dealloc, __ATOMIC_ACQUIRE);
	for (int i = 0; i < 4; i++) {
		d1 = d2;
		a = __atomic_load_n(t->be_alloc, __ATOMIC_ACQUIRE);
		d2 = __atomic_load_n(t->be_dealloc, __ATOMIC_ACQUIRE);
		if (d1 == d2)
			break;
	}
	return (int64_t)(a - d1);
}

void mli_mem_note(int64_t v)
{
	int64_t p = __atomic_load_n(&peak, __ATOMIC_RELAXED);
	while (v > p && !__atomic_compare_exchange_n(&peak, &p, v, true,
						     __ATOMIC_RELAXED,
						     __ATOMIC_RELAXED))
		;
}

/* Read again while `settled` moved by more than this during the reads. */
#define SETTLED_DRIFT ((uint64_t)1 << 20)

static int64_t others(void)
{
	/* A block settled between the reads of `settled` and `reserved` is
	 * counted twice: a reader descheduled there counted all the blocks
	 * settled meanwhile (the peak reported 2.2 GB for 4 threads holding
	 * 2 MB, realloc'ing blocks of 100-400 KB under 64M: a held-out
	 * check). Read again while that drift is large (a few times; then
	 * over, not under). */
	for (int i = 0;; i++) {
		uint64_t s = __atomic_load_n(&settled, __ATOMIC_ACQUIRE);
		int64_t v = __atomic_load_n(&heap_pub, __ATOMIC_ACQUIRE) +
			    __atomic_load_n(&base, __ATOMIC_RELAXED);
		uint64_t r = __atomic_load_n(&reserved, __ATOMIC_ACQUIRE);
		if (i == 3 || __atomic_load_n(&settled, __ATOMIC_ACQUIRE) - s <= SETTLED_DRIFT)
			return v + (int64_t)(r - s);
	}
}

void mli_mem_base_add(int64_t delta)
{
	mli_tree_publish(__atomic_add_fetch(&base, delta, __ATOMIC_RELAXED) +
			 __atomic_load_n(&heap_pub, __ATOMIC_RELAXED));
}

int64_t mli_mem_estimate(const struct mli_thread *t)
{
	int64_t v = others();
	if (t && t->be_alloc)
		v += thread_live(t) - __atomic_load_n(&t->pub, __ATOMIC_RELAXED);
	return v;
}

/* The published sum follows t's published value from old to v. */
static void commit(struct mli_thread *t, int64_t v, int64_t old)
{
	if (v != old)
		__atomic_add_fetch(&heap_pub, v - old, __ATOMIC_RELEASE);
	if (t == &mli_tls)
		mli_mem_settle(t); /* its reserved block is in the sum, or gone */
	int64_t all = others();
	if (v > old)
		mli_mem_note(all);
	mli_tree_publish(all);
}

/* Publishes t's live bytes: always if exact, else only when they moved by
 * PUB_QUANTUM (or grew by PUB_SLACK when `grown`). The exchange keeps the
 * sum equal to the sum of the published values whoever publishes (the
 * thread itself, its signal handler; a walker: publish_other). */
static void publish(struct mli_thread *t, int64_t v, bool exact, bool grown)
{
	int64_t d = v - __atomic_load_n(&t->pub, __ATOMIC_RELAXED);
	if (!exact && d < PUB_QUANTUM && d > -PUB_QUANTUM &&
	    !(grown && d > PUB_SLACK))
		return;
	int64_t old = __atomic_exchange_n(&t->pub, v, __ATOMIC_ACQ_REL);
	commit(t, v, old);
}

/* Another thread's live bytes, published by a walker. The value read may
 * be older than one the thread publishes meanwhile (the walker read the
 * counters, the thread made a big block, published it and settled its
 * reservation, then the walker's store wrote the older value over it: the
 * block was in neither the sum nor the reservations, and another thread's
 * was admitted past the limit). So the walker stores only if the thread's
 * published value is still the one it saw before it read the counters. */
static void publish_other(struct mli_thread *t)
{
	int64_t old = __atomic_load_n(&t->pub, __ATOMIC_ACQUIRE);
	int64_t v = thread_live_consistent(t);
	if (v != old && __atomic_compare_exchange_n(&t->pub, &old, v, false,
						    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		commit(t, v, old);
}

void mli_mem_publish(struct mli_thread *t, bool exact)
{
	if (!t->be_alloc)
		return;
	if (t != &mli_tls && exact)
		publish_other(t);
	else
		publish(t, thread_live_consistent(t), exact, true);
}

/* Could what is left of t's grant take the memory over a memory limit?
 * A grant is counted in requests, and a request may be a block 16 times
 * larger (malloc(1) is 16 bytes); the grant is scaled by the thread's last
 * ratio of blocks to requests (scale_to_blocks), which says nothing of the
 * next ones: 16 threads that had made big blocks then called malloc(1)
 * took 896 KiB of blocks each on 56 KiB grants, 6-9.5 MB over a 150M limit.
 * The activity callback, every 64 KiB of the thread's blocks, is where the
 * blocks show: when the thread's unpublished bytes (unpub) and the rest of
 * its grant at the worst ratio are more than its part of the room left (or
 * the memory is over), the grant is cut and the thread's next allocation
 * decides on the exact figure. Far from the limit this never holds. */
static int64_t room_of(int64_t unpub)
{
	int64_t room = INT64_MAX;
	int64_t cap = mli_task_mem_limit(); /* the cap, or tasks' limits */
	if (cap >= 0)
		room = cap - others() - unpub;
	int64_t tree = mli_tree_limit();
	if (tree >= 0) {
		int64_t r = tree - mli_tree_memory() - unpub;
		room = r < room ? r : room;
	}
	return room; /* INT64_MAX: no memory limit */
}

static bool grant_may_cross(const struct mli_thread *t, int64_t unpub)
{
	int64_t room = room_of(unpub);
	if (room == INT64_MAX)
		return false;
	if (room < 0)
		return true;
	/* left is at most MLI_GRANT and n below 2^32: no overflow (a left
	 * above the grant is wrapped, in the window the fast path undoes:
	 * not looked at). */
	uint64_t n = mli_thread_n();
	uint64_t left = __atomic_load_n(&t->left, __ATOMIC_RELAXED);
	if (left > t->grant)
		return false;
	return left * 16 * (n ? n : 1) > (uint64_t)room;
}

static inline bool mem_limited(void)
{
	return mli_eng.mem_cap >= 0 ||
	       __atomic_load_n(&mli_eng.task_limit, __ATOMIC_RELAXED) >= 0 ||
	       mli_tree_limit() >= 0;
}

/* The backend calls this in the thread itself, every 64 KiB of its
 * allocation and of its deallocation. It may run inside the engine (the
 * engine's own blocks) or in a signal handler: it only publishes. */
static MLI_NOINLINE void grown_half(struct mli_thread *t, int64_t d)
{
	if (mem_limited() && grant_may_cross(t, d))
		mli_poke(t); /* the next allocation decides exactly */
}

int64_t mli_mem_lowest_limit(void)
{
	int64_t lim = mli_task_mem_limit(), tree = mli_tree_limit();
	return tree >= 0 && (lim < 0 || tree < lim) ? tree : lim;
}

/* Blocks a thread frees go to its cache in the allocator (jemalloc: up
 * to 20 blocks of each size class up to tcache_max, a few hundred small
 * ones), which is neither in the measure (they are freed) nor given back
 * by a purge (they are the allocator's allocated): 64 threads of a pool
 * that each made and freed 10 MiB of blocks of 1-64 KiB, then waited,
 * held 289 MiB in their caches under a 100M limit (a held-out check). A
 * thread whose live bytes fell by its share of the lowest memory limit
 * (a quarter over the threads, at least the 64 KiB this callback's
 * period can tell) below their highest since its cache was last emptied
 * empties it: its cache then holds at most about that share. An eighth
 * flushed 3 times a wave 8 threads that each made and freed 1 MiB in
 * turn under 16M (1.5 times the CPU time: a held-out check); a quarter
 * once a wave, a half 0.65 times. The pool of test_meters
 * pool_caches_within_limit under 100M, resident with its threads waiting
 * and at the end: 35 and 113 MiB with an eighth, 52 and 121 with a
 * quarter, 52 and 133 with a half. Only on the thread's own way out of
 * the allocator (the activity callback), never inside the engine nor
 * while a resize has both blocks. */
static uint64_t cache_share(const struct mli_thread *t, int64_t lim)
{
	uint64_t n = mli_thread_n();
	uint64_t share = (uint64_t)lim / (4 * (n ? n : 1));
	if (share < (uint64_t)PUB_QUANTUM)
		share = PUB_QUANTUM; /* the callback's period */
	return share << t->cache_shift;
}

/* A thread that grows back by its share after a flush was using its cache
 * (batches of blocks made and freed in turn): each such flush doubles its
 * share, up to four times the first (the limit over the threads: caches
 * in use). A batch just over the share was flushed every time (1.26-1.5
 * times the CPU time under 2M with 4 threads, 8M with 16: a held-out
 * check; 4 and 23 flushes in all now); a thread that frees and waits keeps
 * the first share. */
static void cache_check(struct mli_thread *t, int64_t v)
{
	int64_t lim = mli_mem_lowest_limit();
	if (lim < 0)
		return;
	if (v > t->cache_high) {
		t->cache_high = v;
		if (t->cache_flushed && v - t->cache_low >= (int64_t)cache_share(t, lim)) {
			t->cache_flushed = false;
			if (t->cache_shift < 2)
				t->cache_shift++;
		}
		return;
	}
	if ((uint64_t)(t->cache_high - v) < cache_share(t, lim) || t->in_engine ||
	    t->resizing)
		return;
	mli_be_flush_cache();
	t->cache_high = t->cache_low = v;
	t->cache_flushed = true;
}

static MLI_NOINLINE void unbalanced(struct mli_thread *t, int64_t v,
				    uint64_t deallocated)
{
	if (mli_unlikely(mem_limited())) {
		cache_check(t, v);
		/* mli_mem_keep_down's count, by the MiB (a shared word; the
		 * look's period is 4 MiB or more). A balanced thread's frees
		 * wait: its next allocations reuse what they free. */
		uint64_t freed = deallocated - t->freed_seen;
		if (freed >= ((uint64_t)1 << 20)) {
			t->freed_seen = deallocated;
			__atomic_add_fetch(&mli_freed_all, freed, __ATOMIC_RELAXED);
		}
		/* The look comes at the thread's next slow path, which a
		 * thread that frees, then makes a few small blocks and
		 * waits, never reaches: python's 140 MiB freed under 200M
		 * stayed resident (a held-out check; glibc gave them back).
		 * Every 4 MiB of frees (the shortest period) the grant is
		 * cut: its next allocation looks. */
		if (deallocated - t->freed_poked >= ((uint64_t)4 << 20)) {
			t->freed_poked = deallocated;
			mli_poke(t);
		}
	}
	/* Published (and a reserved block settled: it was just allocated, even
	 * if another thread's exact walk already published it, d == 0). */
	publish(t, v, true, false);
	if (mli_unlikely(mem_limited()) && grant_may_cross(t, 0))
		mli_poke(t);
}

/* Zero-byte requests make blocks (8 or 16 bytes) and are charged nothing,
 * so a thread that makes only those never uses up its grant and never
 * comes back to the engine: under the strict fast path (left > n) they
 * stopped only where the grant was cut, and still went up to 328 KiB a
 * thread past a global limit's slack, a task making only them was never
 * stopped by its token, and a soft limit was crossed by 240 MiB unseen
 * (held-out checks). Every 64 KiB of the thread's blocks (this callback's
 * period), a thread whose blocks grew by more than 16 times what it was
 * charged since the last look (the most a non-zero request makes:
 * malloc(1)) is sent to the slow path, which decides on everything. No
 * cost on the fast path; every 64 KiB of blocks for such a thread. And a
 * thread whose grant predates a change of the limits is sent back. */

static void look(struct mli_thread *t, uint64_t allocated)
{
	uint64_t da = allocated - t->look_alloc;
	if (da < (uint64_t)PUB_QUANTUM)
		return;
	/* A limit set or changed since the thread's grant (by another
	 * thread): its next allocation decides. Else a thread making blocks
	 * much larger than its requests (malloc(1): 16 bytes) went on for up
	 * to 94 KiB of blocks on its old grant of requests. */
	if (mli_unlikely(t->limits_gen !=
			 __atomic_load_n(&mli_eng.limits_gen, __ATOMIC_RELAXED)))
		mli_poke(t);
	/* Only where a zero-byte block matters: a memory limit or a soft
	 * limit (mem_users counts both), a token (the budgets count requests:
	 * they charge it nothing). Else the period starts again (the next
	 * callback, a free's, returns above). */
	if (!t->ntoken && !__atomic_load_n(&mli_eng.mem_users, __ATOMIC_RELAXED)) {
		t->look_alloc = allocated;
		return;
	}
	if (t->in_engine || __atomic_load_n(&t->left, __ATOMIC_RELAXED) > t->grant)
		return; /* the engine's own blocks; the fast path's window */
	uint64_t c = mli_thread_count(t);
	uint64_t dc = c - t->look_charged;
	t->look_alloc = allocated;
	t->look_charged = c;
	if (da / 16 > dc)
		mli_poke(t);
}

/* A zero-byte request was admitted: within a look's period (64 KiB) of a
 * memory limit or of a soft limit's next threshold, the grant is cut, so
 * that each of the next ones decides (met to a block, where a look every
 * 64 KiB of blocks went a few hundred bytes past its 64 KiB). */
void mli_mem_zero_admitted(struct mli_thread *t)
{
	int64_t soft = mli_soft_lowest();
	if ((!mem_limited() && soft == INT64_MAX) || !t->be_alloc)
		return;
	int64_t unpub = thread_live(t) - __atomic_load_n(&t->pub, __ATOMIC_RELAXED);
	int64_t room = room_of(unpub);
	if (soft != INT64_MAX && soft - others() - unpub < room)
		room = soft - others() - unpub;
	if (room < PUB_QUANTUM)
		mli_poke(t);
}

static void on_activity(void *arg, uint64_t allocated, uint64_t deallocated)
{
	struct mli_thread *t = arg;
	/* A realloc reports its new block, then its old one: in between,
	 * the thread's figure is up by the whole new block, and publishing
	 * that (and undoing it) twice per realloc of a large block cost a
	 * tenth of jemalloc's instructions for the realloc. The caller
	 * charges and publishes the net growth itself. */
	if (t->resizing)
		return;
	look(t, allocated);
	int64_t v = (int64_t)(allocated - deallocated);
	int64_t d = v - __atomic_load_n(&t->pub, __ATOMIC_RELAXED);
	if (mli_likely(d < PUB_QUANTUM && d > -PUB_QUANTUM) &&
	    !__atomic_load_n(&t->pending, __ATOMIC_RELAXED)) {
		/* Balanced: the shared sum is not touched. A thread that has
		 * grown by half the quantum since it published is looked at
		 * (only read, under a memory limit): else a thread could grow
		 * by twice the quantum between two looks. */
		if (mli_unlikely(d > PUB_QUANTUM / 2))
			grown_half(t, d);
		return;
	}
	unbalanced(t, v, deallocated);
}

void mli_mem_settle_slow(struct mli_thread *t)
{
	int64_t r = __atomic_exchange_n(&t->pending, 0, __ATOMIC_RELAXED);
	if (r)
		__atomic_add_fetch(&settled, (uint64_t)r, __ATOMIC_RELEASE);
}

/* Reserves a->grow in the measure if it fits under limit with everything
 * else, other threads' reservations included: a compare-and-swap on the
 * reservations' sum, so that big blocks admitted by different threads at
 * the same moment each count in the other's decision. Each decision read
 * the published sum, in which another thread's block was not yet: 8
 * threads' malloc(8 MiB) at once under 20M got 4 to 7 of them (56 MiB).
 * The reservation leaves when the thread publishes the block (right after
 * it is made, from malloc, calloc and the aligned forms; else the
 * backend's activity callback, at most 64 KiB of allocation later, or a
 * resize's publication) or gives it up (mli_mem_settle). */
static bool reserve(struct mli_thread *t, struct mli_adm *a, int64_t limit)
{
	for (;;) {
		uint64_t s = __atomic_load_n(&settled, __ATOMIC_ACQUIRE);
		int64_t m = __atomic_load_n(&heap_pub, __ATOMIC_ACQUIRE) +
			    __atomic_load_n(&base, __ATOMIC_RELAXED) + thread_live(t) -
			    __atomic_load_n(&t->pub, __ATOMIC_RELAXED);
		uint64_t r = __atomic_load_n(&reserved, __ATOMIC_ACQUIRE);
		m += (int64_t)(r - s);
		if (m > limit || a->grow > (uint64_t)(limit - m))
			return false;
		/* Fails if another reservation came meanwhile: look again. */
		if (__atomic_compare_exchange_n(&reserved, &r, r + a->grow, false,
						__ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			break;
	}
	__atomic_add_fetch(&t->pending, (int64_t)a->grow, __ATOMIC_RELAXED);
	a->reserved = true;
	return true;
}

void mli_mem_thread_attach(struct mli_thread *t)
{
	mli_be_thread_counters(&t->be_alloc, &t->be_dealloc);
	/* What the thread's counters held before it was registered (a thread
	 * attached late, or counters reused) is published now. */
	mli_mem_publish(t, true);
	if (!mli_be_thread_watch(on_activity, t))
		__atomic_store_n(&watched, false, __ATOMIC_RELAXED);
}

static void publish_exact(struct mli_thread *t, void *arg)
{
	(void)arg;
	mli_mem_publish(t, true);
}

int64_t mli_mem_exact(void)
{
	/* One walker at a time: whoever waited for another's walk uses it. */
	uint64_t seen = __atomic_load_n(&walks, __ATOMIC_ACQUIRE);
	mli_for_each_thread_if(publish_exact, NULL, &walks, seen);
	int64_t v = others();
	mli_mem_note(v);
	return v;
}

int64_t mli_heap_exact(void)
{
	return mli_mem_exact() - __atomic_load_n(&mapped, __ATOMIC_RELAXED);
}

int64_t mli_mem_peak(void)
{
	return __atomic_load_n(&peak, __ATOMIC_RELAXED);
}

void mli_mem_mapped_add(int64_t delta)
{
	__atomic_add_fetch(&mapped, delta, __ATOMIC_RELAXED);
	__atomic_add_fetch(&base, delta, __ATOMIC_RELAXED);
	int64_t all = others();
	if (delta > 0)
		mli_mem_note(all);
	mli_tree_publish(all);
}

int64_t mli_mem_mapped(void)
{
	return __atomic_load_n(&mapped, __ATOMIC_RELAXED);
}

int64_t mli_adm_mem(const struct mli_thread *t, struct mli_adm *a)
{
	if (a->mem == MLI_MEM_UNKNOWN)
		a->mem = mli_mem_estimate(t);
	return a->mem;
}

/* The part of a memory limit that only malloc may use: mapped memory is
 * refused that much below the limit. A runtime whose heap growth was
 * refused collects garbage before it gives up, and needs malloc for that:
 * V8's collector mallocs its work lists and page vectors as it goes. Under
 * a 100M limit node 20 segfaulted in Worklist::PublishPushSegment with no
 * reserve, and died of an uncaught std::bad_alloc in 6 runs of 12 with
 * 1/16; with 1/8 it reported its own "JavaScript heap out of memory" in 12
 * of 12. So: 1/8 of the limit, at least 8 MiB (but at most half the
 * limit), at most 256 MiB. */
int64_t mli_map_reserve(int64_t limit)
{
	const int64_t MiB = (int64_t)1 << 20;
	int64_t r = limit / 8;
	if (r < 8 * MiB)
		r = limit / 2 < 8 * MiB ? limit / 2 : 8 * MiB;
	return r < 256 * MiB ? r : 256 * MiB;
}

/* A runtime whose big allocation a memory limit refused collects garbage
 * before it gives up, and its collector mallocs small blocks as it goes:
 * node's typed arrays and Buffers (64 KiB backing stores from malloc)
 * filled a 100M limit to the last bytes, and the full collection V8 runs
 * when one is refused segfaulted in Worklist::PublishPushSegment, its
 * work list's malloc refused (5 runs of 5; 2 of 5 with worker threads).
 * So once a block of MLI_PEAK_NOTE or more has been refused, blocks under
 * it may take memory up to limit/32 (256 KiB to 4 MiB) over the limit,
 * until the memory is seen that much under the limit again (the collection
 * is over, or the program freed what it held).
 * Stopping big blocks below the limit instead (a reserve, as mapped
 * memory has) was tried: it took a quarter of the limit from python's and
 * ruby's big blocks to let node throw its RangeError. */
static int big_refused[2];   /* by limit: MLI_ROOM_CAP, MLI_ROOM_TREE */

static int64_t collector_room(int64_t limit)
{
	const int64_t KiB = 1024;
	int64_t g = limit / 32;
	return g < 256 * KiB ? 256 * KiB : g > 4096 * KiB ? 4096 * KiB : g;
}

/* Each limit ends its own room, on its own measure: the process's memory
 * under its cap says nothing of the tree's (a tree's refusal in a small
 * process was undone at once by the process's own look, and node
 * segfaulted again beside a sibling holding memory). */
void mli_collector_done(int which, int64_t limit, int64_t mem)
{
	if (mli_unlikely(__atomic_load_n(&big_refused[which], __ATOMIC_RELAXED)) &&
	    mem < limit - collector_room(limit))
		__atomic_store_n(&big_refused[which], 0, __ATOMIC_RELAXED);
}

bool mli_collector_grace(int which, const struct mli_adm *a, int64_t limit,
			 int64_t mem)
{
	if (a->n == MLI_REQ_THREAD)
		return false; /* pthread_create's look: no block, no collector */
	if (a->grow >= MLI_PEAK_NOTE) {
		/* Every limit's room: the next small block may meet another
		 * limit than this one (the process's cap in a tree). */
		if (a->kind != MLI_ADM_POLL) {
			__atomic_store_n(&big_refused[MLI_ROOM_CAP], 1, __ATOMIC_RELAXED);
			__atomic_store_n(&big_refused[MLI_ROOM_TREE], 1, __ATOMIC_RELAXED);
		}
		return false;
	}
	return a->kind == MLI_ADM_ALLOC &&
	       __atomic_load_n(&big_refused[which], __ATOMIC_RELAXED) &&
	       mem + (int64_t)a->grow <= limit + collector_room(limit);
}

/* Would n more bytes take memory `mem` over `limit`? On a yes from the
 * estimate, which may run ahead of the truth by frees not yet published,
 * ask for the exact figure first (and keep it in a->mem). Mapped memory
 * leaves malloc its reserve. */
bool mli_mem_over(struct mli_thread *t, struct mli_adm *a, int64_t limit)
{
	if (a->kind == MLI_ADM_MAP)
		limit -= mli_map_reserve(limit);
	/* A block of MLI_PEAK_NOTE (16 KiB) or more is reserved (once, by the
	 * first memory limit that admits it): it comes on top of the thread's
	 * grant, and 16 threads' 50,000-byte blocks took the heap 104 KiB a
	 * thread over the limit when only blocks of 64 KiB or more were. */
	bool big = a->kind == MLI_ADM_ALLOC && a->grow >= MLI_PEAK_NOTE &&
		   !a->reserved && t->be_alloc;
	int64_t mem = mli_adm_mem(t, a);
	if (mem <= limit && a->grow <= (uint64_t)(limit - mem) &&
	    __atomic_load_n(&watched, __ATOMIC_RELAXED) &&
	    (!big || reserve(t, a, limit)))
		return false;
	a->mem = mem = mli_mem_exact();
	if (mem > limit || a->grow > (uint64_t)(limit - mem))
		return true;
	return big && !reserve(t, a, limit); /* another's block took the room */
}

/* A memory grant is counted in requested bytes, the heap in blocks: for
 * tiny requests a block is many times the request (malloc(1) is a 16-byte
 * block), and a thread came back to the engine only after 56 KiB of
 * requests, 896 KiB of blocks. So the grant is scaled down by the ratio
 * of the thread's heap growth (its live blocks) to its charged requests
 * since its last memory grant; a new thread's first grant assumes the
 * worst, 16. (Not its allocated blocks: jemalloc counts a realloc's whole
 * new block there, which made every realloc of a big buffer a slow path.) */
static inline uint64_t scale_to_blocks(struct mli_thread *t, uint64_t g)
{
	if (!t->be_alloc)
		return g;
	uint64_t live = (uint64_t)thread_live(t), c = t->count;
	bool first = !t->scale_live && !t->scale_count;
	int64_t dl = (int64_t)(live - t->scale_live);
	uint64_t dc = c - t->scale_count;
	t->scale_live = live;
	t->scale_count = c;
	if (first)
		return g / 16; /* no history: the worst ratio, 1 byte in 16 */
	if (dl > 0 && (uint64_t)dl > dc && dc)
		g = (uint64_t)dl / dc >= 16 ? g / 16 : g * dc / (uint64_t)dl;
	return g;
}

/* The grant under a memory limit: a share of the room left, so that the
 * threads together approach the limit gradually, and at most MEM_GRANT
 * (of blocks: scale_to_blocks). */
void mli_mem_bound(struct mli_thread *t, struct mli_adm *a,
		   int64_t limit)
{
	int64_t mem = mli_adm_mem(t, a) + (int64_t)a->grow;
	uint64_t free_mem = mem < limit ? (uint64_t)(limit - mem) : 0;
	uint32_t n = mli_thread_n();
	uint64_t share = free_mem / (2 * (uint64_t)(n ? n : 1));
	a->wait = mli_min(a->wait, scale_to_blocks(t, mli_min(share, MEM_GRANT)));
	a->room = 0; /* a realloc's growth beyond the grant is checked */
}

/* Far from the cap, the memory lane's refills take a shorter way: while
 * the room left is more than what every thread could take before its next
 * look, its grant (MEM_GRANT, scaled) and its admission of a request under
 * MLI_PEAK_NOTE are the same at every refill. So the lane, when it finds
 * such a room (FAR_MARGIN a thread: one grant at the worst ratio of blocks
 * to requests, 16, twice over), makes the next FAR_REFILLS refills plain
 * ones (mli_quick_refill) of the grant it gave: each still reads the
 * measure and compares (O(1)) and publishes the thread's growth beyond
 * PUB_SLACK for other threads' decisions, without the lane's scaling,
 * collector room, look at the allocator's free pages (its period is 4 MiB
 * of frees or more: every FAR_REFILLS-th refill is soon enough) and
 * dispatch: malloc(4096)/free under a 1T cap, 129.4 to 124.1 instructions
 * a pair (callgrind). A room under the margin, a poke or a limit set meanwhile
 * (limits_gen) sends the refill back to the lane. */
#define FAR_REFILLS 8
#define FAR_MARGIN (2 * 16 * MEM_GRANT)

/* The memory lane of the slow path: the thread's meters are MEMLIMITS_
 * GLOBAL_MEMORY's at most (or none, while other threads' tasks have memory
 * limits that need this thread's growth published; or none at all, for a
 * block of MLI_PEAK_NOTE or more, which the peak must see). What the meter
 * would decide, when it would admit, without the table: every 56 KiB of a
 * thread's allocation under a cap comes here. grow: what the heap grows by
 * (the block's size class from MLI_PEAK_NOTE up). */
bool mli_mem_quick(struct mli_thread *t, size_t n, size_t grow)
{
	int64_t v = thread_live(t);
	int64_t cap = mli_eng.mem_cap;
	uint64_t g = MLI_GRANT;
	bool far = false;
	int64_t mem = others() + v - __atomic_load_n(&t->pub, __ATOMIC_RELAXED);
	if (cap >= 0) {
		mli_collector_done(MLI_ROOM_CAP, cap, mem);
		if (grow >= MLI_PEAK_NOTE)
			return false; /* reserved by the meter (mli_mem_over) */
		if (mem > cap || grow > (uint64_t)(cap - mem))
			return false; /* the meter decides: exact figure, report */
		uint64_t free_mem = (uint64_t)(cap - mem) - grow;
		uint64_t nt = mli_thread_n();
		nt = nt ? nt : 1;
		if (free_mem < 2 * MEM_GRANT * nt) /* as mli_mem_bound */
			g = free_mem / (2 * nt);
		else
			g = MEM_GRANT;
		far = free_mem / FAR_MARGIN >= nt &&
		      __atomic_load_n(&watched, __ATOMIC_RELAXED);
	}
	if (mli_unlikely(grow >= MLI_PEAK_NOTE)) /* as admit_full (no cap here) */
		mli_mem_note(mem + (int64_t)grow);
	mli_engine_enter(t);
	mli_quick_fold(t, n);
	int64_t d = v - __atomic_load_n(&t->pub, __ATOMIC_RELAXED);
	if (mli_unlikely(d > PUB_SLACK || d <= -PUB_QUANTUM))
		publish(t, v, true, false);
	if (cap >= 0) {
		mli_mem_keep_down(t, cap);
		g = scale_to_blocks(t, g);
		/* Far from the cap, the next FAR_REFILLS refills are plain
		 * ones (mli_quick_refill), of this grant. */
		t->far_left = far ? FAR_REFILLS : 0;
		t->far_grant = g;
		t->quick_gen = far ? t->mem_gen : 0;
	}
	t->grant = g;
	t->left = g;
	mli_engine_leave(t);
	if (mli_unlikely(t->poked))
		mli_check_now(t);
	return true;
}

uint64_t mli_mem_far_refill(struct mli_thread *t, size_t n)
{
	int64_t cap = mli_eng.mem_cap;
	int64_t v = thread_live(t);
	int64_t d = v - __atomic_load_n(&t->pub, __ATOMIC_RELAXED);
	int64_t mem = others() + d;
	uint64_t nt = mli_thread_n();
	if (--t->far_left == 0 || mem > cap ||
	    (uint64_t)(cap - mem) < n + (nt ? nt : 1) * FAR_MARGIN) {
		t->far_left = 0;
		t->quick_gen = 0;
		return 0;
	}
	if (mli_unlikely(d > PUB_SLACK || d <= -PUB_QUANTUM))
		publish(t, v, true, false);
	return t->far_grant;
}

/* The process's frees, as the threads' activity callbacks see them (under
 * a memory limit), and their figure at the last look. */
uint64_t mli_freed_all, mli_freed_looked;

/* Under a memory limit the allocator's free memory is bounded too. jemalloc
 * keeps the pages of freed blocks resident for reuse (dirty, then muzzy:
 * given back with MADV_FREE, resident until the kernel needs them) and
 * returns them over seconds. A buffer grown by realloc moves to a bigger
 * block at each size class and leaves the old ones behind: under a 30M
 * limit its measure stayed at 24 MiB while its resident set reached 79 MiB
 * (glibc's mremap: 26); 16 threads churning under 50M reached 122 MiB.
 * So at every limit/8 (4 to 64 MiB) of a thread's frees, its next slow
 * path asks jemalloc what it keeps, and over a quarter of the limit (at
 * least 4 MiB) purges it all; and so does any thread's slow path at every
 * limit/8 of the process's frees: threads that take turns (python's under
 * its lock) each fill the memory, then free it all; the pages freed stay in
 * the freeing thread's arena, and its next slow path, which looked, came
 * after the next thread had filled the limit with fresh pages (1.6-1.9
 * times the limit resident: a held-out check). (The process's count is
 * added to by the threads' activity callbacks when they publish, which a
 * realloc's frees skip: the thread's own count sees those.) The look
 * takes jemalloc's statistics locks. */
void mli_mem_look(struct mli_thread *t, int64_t limit, uint64_t own,
		  uint64_t all)
{
	const int64_t MiB = (int64_t)1 << 20;
	t->unused_mark = own;
	int64_t keep = limit / 4 > 4 * MiB ? limit / 4 : 4 * MiB;
	/* Nothing to look for when the bound is above the machine's memory
	 * (a limit of 1T). */
	static int64_t ram;
	if (!ram) {
		int64_t r = mli_phys_mem();
		__atomic_store_n(&ram, r > 0 ? r : INT64_MAX, __ATOMIC_RELAXED);
	}
	if (keep >= __atomic_load_n(&ram, __ATOMIC_RELAXED)) {
		__atomic_store_n(&mli_freed_looked, all, __ATOMIC_RELAXED);
		return;
	}
	/* The look costs about 120,000 instructions with a few threads, and
	 * grows with them (jemalloc merges every thread cache's statistics):
	 * at most one every 10 ms in the process, and 10 ms more for every 64
	 * threads. Without that a malloc/free loop under a 32M limit spent 5%
	 * of its instructions there, and one thread beside 8,192 idle ones
	 * ran 5 times slower. */
	static uint64_t last_look;
	uint64_t gap = 10000000u * (1 + (uint64_t)mli_thread_n() / 64);
	if (!mli_take_turn(&last_look, mli_now_ns(), gap))
		return; /* the process's frees: the next slow path looks again */
	__atomic_store_n(&mli_freed_looked, all, __ATOMIC_RELAXED);
	if (mli_be_unused() > keep)
		mli_be_trim();
}

/* ---- the meter of MEMLIMITS_GLOBAL_MEMORY ----------------------------- */

/* At a refusal, give the allocator's free pages back to the system, at most
 * once per 16 MiB of the process's allocation: the measure counts live
 * bytes, but a container's limit counts what is resident, and blocks just
 * freed (the old buffer of a grown realloc) stay resident as the
 * allocator's dirty pages for seconds. Without this, a program that meets
 * its limit in a container can be killed by the kernel while it cleans up
 * after its out-of-memory error. */
static void trim_on_refusal(void)
{
	static uint64_t last;
	if (mli_tls.in_acct)
		return; /* the allocator's locks: see in_acct */
	uint64_t now = mli_tls.count;
	uint64_t prev = __atomic_load_n(&last, __ATOMIC_RELAXED);
	if (prev && now - prev < ((uint64_t)16 << 20) && now >= prev)
		return;
	__atomic_store_n(&last, now ? now : 1, __ATOMIC_RELAXED);
	mli_be_trim();
}

static bool admit(struct mli_thread *t, struct mli_adm *a)
{
	int64_t cap = mli_eng.mem_cap;
	if (cap < 0)
		return true;
	if (!mli_mem_over(t, a, cap)) {
		mli_collector_done(MLI_ROOM_CAP, cap, a->mem);
		return true;
	}
	if (mli_start_grace(t, a) || mli_collector_grace(MLI_ROOM_CAP, a, cap, a->mem))
		return true;
	/* A hard cap: not masked, and not any task's interrupt. */
	mli_report_breach(MLI_BREACH_GLOBAL, a->n, a->grow, a->mem);
	trim_on_refusal();
	return false;
}

static void bound(struct mli_thread *t, struct mli_adm *a)
{
	if (mli_eng.mem_cap >= 0) {
		mli_mem_bound(t, a, mli_eng.mem_cap);
		mli_collector_done(MLI_ROOM_CAP, mli_eng.mem_cap, a->mem);
		mli_mem_keep_down(t, mli_eng.mem_cap);
	}
}

const struct mli_meter mli_meter_memory = {
	.name = "memory",
	.kinds = MLI_ADM_ALLOC | MLI_ADM_MAP,
	.admit = admit,
	.bound = bound,
};

/* ---- core/mapped.h: the mmap interposers' side ------------------------- */

bool mli_mapped_charge(uint64_t bytes)
{
	return mli_admit_mapped(bytes);
}

void mli_mapped_sub(uint64_t bytes)
{
	mli_mem_mapped_add(-(int64_t)bytes);
}

int64_t mli_mapped_bytes(void)
{
	return mli_mem_mapped();
}
