/* soft.c: memory pressure. Thresholds on the process's memory (the global
 * limit's measure) that refuse nothing: when the memory crosses one on its
 * way up, its callback runs once, then the threshold re-arms when the
 * memory falls back below REARM of it. MEMLIMITS_SOFT_MEMORY is one
 * (it warns on stderr, records the crossing in the report, and writes the
 * profile, FILE.soft, with the profiling build); ml_on_memory_pressure adds
 * others.
 *
 * A meter that never refuses: its admission notices the crossing (the
 * memory plus the request reaches the threshold) and marks the callback
 * pending in the crossing thread; its bound brings every thread to the
 * slow path within a share of the distance to the lowest armed threshold
 * (at most 56 KiB), so a crossing is seen within the same per-thread slack
 * as a hard limit. The callback runs when the thread has left the engine
 * (mli_soft_run, from the slow path's end, or from the mmap interposers
 * once their lock is released): masked (no task limit refuses what it
 * allocates; the hard caps still do), never under a lock of the engine, so
 * it may allocate, free, and raise or lower limits. */
#include <string.h>

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include "internal.h"

#define MAX_WATCH 16
#define REARM_PCT 90 /* re-armed below 90% of the threshold */

/* A registration's slot. Its state word holds a generation (high half),
 * which changes with each registration and removal, and the callbacks of
 * that registration running (low half).
 * - A crossing runs the callback of the registration it crossed, not one
 *   made in the slot since (a callback registered at 1 TiB ran for the
 *   crossings of one removed from its slot: a held-out check).
 * - A removal waits for the callbacks running: after it, no callback of
 *   the removed registration runs (the program may free its arg;
 *   callbacks still running used it after it was freed, hundreds of times
 *   a run: a held-out check).
 * - A new registration starts with none running: a callback left by
 *   longjmp or ended by pthread_cancel, never done, made every later
 *   removal in its slot wait (a second each; a held-out check). Only its
 *   own removal waits (the second). */
#define GEN(s) ((uint32_t)((s) >> 32))
#define RUNNING(s) ((uint32_t)(s))
struct watch {
	int64_t threshold; /* bytes; -1: free slot */
	ml_pressure_fn fn;
	void *arg;
	int armed;          /* atomic */
	uint64_t state;     /* atomic: GEN and RUNNING */
	uint64_t crossings; /* atomic */
	int64_t crossed_at; /* the memory with the request that crossed */
};

static struct watch watches[MAX_WATCH];
static int lock;              /* registration */
static int64_t lowest_armed = INT64_MAX; /* atomic: the next to cross */
static int nwatch;            /* slots in use (atomic) */
/* The slot whose callback this thread runs, -1: none (for a fork from it). */
static __thread int running_slot __attribute__((tls_model("initial-exec"))) = -1;

int64_t mli_soft_lowest(void)
{
	return __atomic_load_n(&lowest_armed, __ATOMIC_ACQUIRE);
}

static void recompute(void)
{
	int64_t low = INT64_MAX;
	for (int i = 0; i < MAX_WATCH; i++)
		if (__atomic_load_n(&watches[i].armed, __ATOMIC_ACQUIRE) &&
		    watches[i].threshold >= 0 && watches[i].threshold < low)
			low = watches[i].threshold;
	__atomic_store_n(&lowest_armed, low, __ATOMIC_RELEASE);
}

static bool admit(struct mli_thread *t, struct mli_adm *a)
{
	/* Re-armed on the memory before the request, crossed with it: the
	 * memory is seen only at allocations, and a program that fell to 80%
	 * and grew back by 1 MiB blocks never re-armed a 10 MiB threshold
	 * (each request took the figure over 90%; a held-out check). */
	/* Not for the callbacks' own allocations: a callback runs before the
	 * block that crossed is made, so its own blocks found the memory
	 * below 90% again, re-armed and crossed, and ran it again, for ever
	 * (a callback that allocates 100,000 bytes, registered 100 KiB over
	 * the memory). */
	if (t->soft_running)
		return true;
	int64_t before = mli_adm_mem(t, a);
	int64_t mem = before + (int64_t)a->grow;
	bool changed = false;
	for (int i = 0; i < MAX_WATCH; i++) {
		struct watch *w = &watches[i];
		uint32_t gen = GEN(__atomic_load_n(&w->state, __ATOMIC_ACQUIRE));
		int64_t th = __atomic_load_n(&w->threshold, __ATOMIC_ACQUIRE);
		if (th < 0)
			continue;
		int armed = __atomic_load_n(&w->armed, __ATOMIC_ACQUIRE);
		if (!armed && before < th / 100 * REARM_PCT) {
			__atomic_store_n(&w->armed, 1, __ATOMIC_RELEASE);
			armed = 1;
			changed = true;
		}
		if (armed && mem >= th &&
		    __atomic_exchange_n(&w->armed, 0, __ATOMIC_ACQ_REL)) {
			/* A registration made in the slot meanwhile: this was
			 * not its threshold, and it was armed. */
			if (GEN(__atomic_load_n(&w->state, __ATOMIC_ACQUIRE)) != gen) {
				__atomic_store_n(&w->armed, 1, __ATOMIC_RELEASE);
				changed = true;
				continue;
			}
			__atomic_store_n(&w->crossed_at, mem, __ATOMIC_RELAXED);
			t->soft_gen[i] = gen;
			t->soft_pending |= 1u << i;
			__atomic_add_fetch(&w->crossings, 1, __ATOMIC_RELAXED);
			changed = true;
		}
	}
	if (changed)
		recompute();
	return true;
}

static void bound(struct mli_thread *t, struct mli_adm *a)
{
	int64_t low = __atomic_load_n(&lowest_armed, __ATOMIC_ACQUIRE);
	if (low == INT64_MAX) {
		/* All crossed: they re-arm at the slow paths of a thread whose
		 * grant the table's default bounds, and a realloc's growth
		 * beyond it comes there too (with no room bound, a buffer grown
		 * back by realloc after a shrink never re-armed, and the
		 * callback never ran again; a held-out check). */
		if (__atomic_load_n(&nwatch, __ATOMIC_RELAXED))
			a->room = mli_min(a->room, a->wait);
		return;
	}
	mli_mem_bound(t, a, low);
}

const struct mli_meter mli_meter_soft = {
	.name = "soft",
	.kinds = MLI_ADM_ALLOC | MLI_ADM_MAP,
	.admit = admit,
	.bound = bound,
};

/* The callbacks of the thresholds this thread crossed. */
void mli_soft_run(struct mli_thread *t)
{
	/* Later: from the outermost place that can; and not between a big
	 * block's admission and its making, while it is reserved: the
	 * callbacks' own blocks, published, would settle its reservation
	 * (t->pending is the thread's sum), and callbacks keeping 2 MiB each
	 * took the heap a block over a 20M cap. mli_block_made runs them. */
	if (t->in_engine || t->soft_running ||
	    __atomic_load_n(&t->pending, __ATOMIC_RELAXED))
		return;
	t->soft_running = 1;
	while (t->soft_pending) {
		unsigned i = (unsigned)__builtin_ctz(t->soft_pending);
		t->soft_pending &= t->soft_pending - 1;
		struct watch *w = &watches[i];
		uint32_t gen = t->soft_gen[i];
		/* Counted running, if its registration is still there, in the
		 * word a removal changes before it looks at the count. */
		uint64_t s = __atomic_load_n(&w->state, __ATOMIC_SEQ_CST);
		do {
			if (GEN(s) != gen)
				break;
		} while (!__atomic_compare_exchange_n(&w->state, &s, s + 1, true,
						      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
		if (GEN(s) != gen)
			continue;
		ml_pressure_fn fn = w->fn;
		void *arg = w->arg;
		int64_t th = w->threshold;
		if (fn && th >= 0) {
			running_slot = (int)i;
			mli_callout_begin(t, MLI_CALLOUT_MASKED);
			fn(__atomic_load_n(&w->crossed_at, __ATOMIC_RELAXED), th, arg);
			mli_callout_end(t, MLI_CALLOUT_MASKED);
			running_slot = -1;
		}
		/* Done: counted out of this registration, or of its removal's
		 * generation (gen + 1); a registration made since counts none. */
		s = __atomic_load_n(&w->state, __ATOMIC_ACQUIRE);
		while ((GEN(s) == gen || GEN(s) == gen + 1) && RUNNING(s) &&
		       !__atomic_compare_exchange_n(&w->state, &s, s - 1, true,
						    __ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
			;
	}
	t->soft_running = 0;
}

/* fork: the registration lock may be held by a thread that does not
 * survive; a child forked then spun in its first registration for ever
 * (test_soft fork_while_registering). */
static void prepare(void)
{
	mli_spin_lock(&lock);
}

static void release(void)
{
	mli_spin_unlock(&lock);
}

/* The child has one thread: the callbacks in flight are its own (a fork
 * from one), not the other threads' (a removal in the child waited for
 * them for ever). */
static void child(void)
{
	for (int i = 0; i < MAX_WATCH; i++) {
		uint64_t s = __atomic_load_n(&watches[i].state, __ATOMIC_RELAXED);
		__atomic_store_n(&watches[i].state, (s & ~(uint64_t)UINT32_MAX) + (i == running_slot),
				 __ATOMIC_RELAXED);
	}
	release();
}

void mli_soft_init_once(void)
{
	mli_atfork(prepare, release, child);
}

/* Adds (threshold >= 0) or removes (threshold < 0: every registration of
 * fn and arg) a threshold. */
ml_status mli_soft_watch(int64_t threshold, ml_pressure_fn fn, void *arg)
{
	/* 0: the memory is above it from the start and never crosses it on
	 * its way up (MEMLIMITS_SOFT_MEMORY=0 is refused for that). */
	if (!fn || threshold == 0)
		return ML_INVALID;
	mli_engine_init();
	mli_spin_lock(&lock);
	ml_status st = ML_OK;
	unsigned removed = 0;
	if (threshold < 0) {
		for (int i = 0; i < MAX_WATCH; i++)
			if (watches[i].threshold >= 0 && watches[i].fn == fn &&
			    watches[i].arg == arg) {
				__atomic_store_n(&watches[i].armed, 0, __ATOMIC_RELEASE);
				__atomic_store_n(&watches[i].threshold, -1,
						 __ATOMIC_RELEASE);
				__atomic_add_fetch(&watches[i].state, (uint64_t)1 << 32,
						   __ATOMIC_SEQ_CST);
				removed |= 1u << i;
				watches[i].fn = NULL;
				__atomic_sub_fetch(&nwatch, 1, __ATOMIC_RELAXED);
				__atomic_sub_fetch(&mli_eng.mem_users, 1,
						   __ATOMIC_RELAXED);
			}
	} else {
		int i = 0;
		while (i < MAX_WATCH && watches[i].threshold >= 0)
			i++;
		if (i == MAX_WATCH)
			st = ML_INVALID;
		else {
			watches[i].fn = fn;
			watches[i].arg = arg;
			watches[i].crossings = 0;
			uint64_t s = __atomic_load_n(&watches[i].state, __ATOMIC_RELAXED);
			__atomic_store_n(&watches[i].state, ((uint64_t)GEN(s) + 1) << 32,
					 __ATOMIC_RELEASE);
			__atomic_store_n(&watches[i].threshold, threshold,
					 __ATOMIC_RELEASE);
			/* Armed only if not already above it: a crossing is on
			 * the way up. */
			__atomic_store_n(&watches[i].armed,
					 mli_mem_estimate(&mli_tls) < threshold,
					 __ATOMIC_RELEASE);
			__atomic_add_fetch(&nwatch, 1, __ATOMIC_RELAXED);
			__atomic_add_fetch(&mli_eng.mem_users, 1, __ATOMIC_RELAXED);
		}
	}
	recompute();
	mli_spin_unlock(&lock);
	/* The removed registrations' callbacks still running, in other
	 * threads, end first (outside the lock, which they may take to
	 * register or remove; not from inside a callback, whose own would
	 * never end, and two callbacks removing each other's would wait for
	 * ever, as ml_memprof_stop's). At most a second: a callback left by
	 * longjmp is never done. */
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; removed && !mli_tls.soft_running && i < MAX_WATCH; i++)
		while ((removed >> i & 1) &&
		       RUNNING(__atomic_load_n(&watches[i].state, __ATOMIC_SEQ_CST)) > 0 &&
		       clock_gettime(CLOCK_MONOTONIC, &now) == 0 &&
		       (now.tv_sec - t0.tv_sec) * 1000000000L + (now.tv_nsec - t0.tv_nsec) <
			       1000000000L)
			sched_yield();
	if (st == ML_OK) {
		mli_meter_on(MLI_METER_BIT(soft));
		/* Every thread's lane and headroom are for the old thresholds. */
		__atomic_add_fetch(&mli_eng.limits_gen, 1, __ATOMIC_RELEASE);
		mli_refill(&mli_tls);
	}
	return st;
}

/* The crossings of the registration (the first with this fn and arg). */
uint64_t mli_soft_crossings(ml_pressure_fn fn, void *arg)
{
	for (int i = 0; i < MAX_WATCH; i++)
		if (watches[i].fn == fn && watches[i].arg == arg)
			return __atomic_load_n(&watches[i].crossings, __ATOMIC_RELAXED);
	return 0;
}

void mli_soft_init(void)
{
	for (int i = 0; i < MAX_WATCH; i++)
		watches[i].threshold = -1;
}
