/* engine.c: start-up and the one slow path every meter shares.
 *
 * The fast path (mli_admit in internal.h) subtracts the request from the
 * thread's `left` and falls here only when that would go below zero. `left`
 * is a grant computed here: the largest number of bytes the thread can
 * allocate before any meter (meter.h) must look again. Every special case
 * (first use, a limit near, a token to poll, an interrupted task, a sample
 * due, a dead thread) is expressed as a small or zero grant, so the fast
 * path has one branch. */
#include <errno.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "output.h"

extern char **environ;

struct mli_engine mli_eng = { .mem_cap = -1, .task_limit = -1 };

/* The meters, in admission order (meter.h). */
#define MLI_METER_ENTRY(m) &mli_meter_##m,
static const struct mli_meter *const meters[] = { MLI_METERS(MLI_METER_ENTRY) };
#undef MLI_METER_ENTRY
#define NMETERS (sizeof meters / sizeof meters[0])
_Static_assert(NMETERS == MLI_NMETERS, "one bit per meter");

#define GRANT MLI_GRANT

static int init_state; /* 0 not yet, 1 in progress, 2 done */
static void hooks_init(void);

void mli_engine_init(void)
{
	if (mli_likely(__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == 2))
		return;
	struct mli_thread *self = &mli_tls;
	if (self->initialising)
		return; /* re-entered by the backend's own start-up (see below) */
	int expect = 0;
	if (!__atomic_compare_exchange_n(&init_state, &expect, 1, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		while (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != 2)
			;
		return;
	}
	/* The backend's start-up may start threads and allocate (jemalloc's
	 * background_thread: pthread_create allocates the new thread's TLS
	 * with calloc, in this thread): those allocations come back here and
	 * must not wait for this initialisation to end. */
	self->initialising = 1;
	hooks_init();
	/* The configuration first (it allocates nothing): the backend sizes
	 * its caches by the memory limit. */
	char err[512];
	if (mli_config_read(environ, &mli_eng.cfg, err, sizeof err) != 0)
		mli_die(err);
	const struct mli_config *c = &mli_eng.cfg;
	uint8_t was = self->in_engine;
	mli_engine_enter(self);
	mli_be_init(c->global_memory);
	if (!was)
		mli_engine_leave(self);
	mli_eng.mem_cap = c->global_memory;
	mli_eng.started = c->global_memory >= 0 || c->allocations >= 0 ||
			  c->thread_allocations >= 0;
	mli_budget_init();
	mli_soft_init();
	mli_prof_init();
	if (c->global_memory >= 0) {
		mli_meter_on(MLI_METER_BIT(memory));
		mli_eng.mem_users++;
	}
	if (c->thread_allocations >= 0)
		mli_meter_on(MLI_METER_BIT(tbudget));
	if (c->allocations >= 0)
		mli_meter_on(MLI_METER_BIT(pbudget));
	if (mli_prof.enabled)
		mli_meter_on(MLI_METER_BIT(sampler));
	if (c->tree[0]) {
		if (mli_tree_attach(c->tree, err, sizeof err) != 0)
			mli_die(err);
		if (mli_tree_limit() >= 0)
			mli_eng.mem_users++;
		if (mli_tree_budget()) {
			mli_budget_use(mli_tree_budget());
			mli_meter_on(MLI_METER_BIT(pbudget));
		}
	}
	self->initialising = 0;
	__atomic_store_n(&init_state, 2, __ATOMIC_RELEASE);
}

int64_t mli_task_mem_limit(void)
{
	int64_t a = __atomic_load_n(&mli_eng.task_limit, __ATOMIC_RELAXED);
	int64_t c = mli_eng.mem_cap;
	if (a < 0)
		return c;
	return c >= 0 && c < a ? c : a;
}

/* The meters on for this thread: the process-wide ones, and its task
 * meter while it has scopes. */
static inline unsigned active(const struct mli_thread *t)
{
	unsigned m = __atomic_load_n(&mli_eng.meters, __ATOMIC_RELAXED);
	if (t->top || t->nfired)
		m |= MLI_METER_BIT(task);
	return m;
}

#define FOR_EACH_METER(i, mask)                                              \
	for (unsigned i, m_##i = (mask); m_##i && (i = (unsigned)__builtin_ctz(m_##i), 1); \
	     m_##i &= m_##i - 1)

void mli_meter_on(unsigned bit)
{
	__atomic_fetch_or(&mli_eng.meters, bit, __ATOMIC_RELAXED);
}

/* Which meters have which hook, so that the loops visit only those. */
static unsigned has_fold, has_bound, has_uncharge, has_admit[MLI_ADM_POLL + 1];

static void hooks_init(void)
{
	for (unsigned i = 0; i < NMETERS; i++) {
		const struct mli_meter *m = meters[i];
		if (m->fold)
			has_fold |= 1u << i;
		if (m->bound)
			has_bound |= 1u << i;
		if (m->uncharge)
			has_uncharge |= 1u << i;
		for (unsigned k = 1; k <= MLI_ADM_POLL; k <<= 1)
			if (m->admit && (m->kinds & k))
				has_admit[k] |= 1u << i;
	}
}

/* Tells the meters in mask about `used` bytes handed out. */
static void fold_meters(struct mli_thread *t, unsigned mask, uint64_t used)
{
	FOR_EACH_METER(i, mask & has_fold)
		meters[i]->fold(t, used);
}

/* Folds what the fast path handed out since the last refill into count,
 * tells the meters, and publishes the thread's memory if it moved enough
 * to matter to others. */
static inline __attribute__((always_inline)) void
fold(struct mli_thread *t, unsigned mask)
{
	/* Exchanges, so that a signal handler's allocation on this thread
	 * lands either before (in `used`) or after (in the slow path, which
	 * counts it). */
	uint64_t left = mli_take_left(t);
	uint64_t refund = mli_take_refund(t);
	uint64_t used = t->grant - left - refund;
	t->grant = 0;
	MLI_TLS_ADD(count, used);
	if (mask)
		fold_meters(t, mask, used);
	if (__atomic_load_n(&mli_eng.mem_users, __ATOMIC_RELAXED))
		mli_mem_publish(t, false);
}

/* Sets the grant from the bounds of the meters in mask. */
static inline __attribute__((always_inline)) void
regrant(struct mli_thread *t, struct mli_adm *a, unsigned mask)
{
	a->wait = GRANT;
	a->room = UINT64_MAX;
	FOR_EACH_METER(i, mask & has_bound)
		meters[i]->bound(t, a);
	t->headroom = a->room;
	uint32_t gen = __atomic_load_n(&mli_eng.limits_gen, __ATOMIC_RELAXED);
	t->limits_gen = gen;
	t->quick_gen = t->mem_gen = 0;
	t->far_left = 0;
	if (!(mask & ~MLI_METER_BIT(memory)) && !t->callout &&
	    t->state == MLI_T_LIVE) {
		/* A lane for the next slow path (mli_quick_refill, mli_mem_quick). */
		if (mask || __atomic_load_n(&mli_eng.mem_users, __ATOMIC_RELAXED))
			t->mem_gen = gen + 1;
		else
			t->quick_gen = gen + 1;
	}
	t->grant = a->wait;
	t->left = a->wait;
}

/* Runs the admission through the meters in mask that take part in its
 * kind. On a refusal, the meters that charged before it are uncharged. */
static inline __attribute__((always_inline)) bool
admit(struct mli_thread *t, struct mli_adm *a, unsigned mask)
{
	unsigned passed = 0;
	FOR_EACH_METER(i, mask & has_admit[a->kind]) {
		if (meters[i]->admit(t, a)) {
			passed |= 1u << i;
			continue;
		}
		FOR_EACH_METER(j, passed & has_uncharge)
			meters[j]->uncharge(t, a->n);
		if (a->reserved) /* a memory limit had reserved the block */
			mli_mem_settle(t);
		return false;
	}
	return true;
}

static void thread_start(struct mli_thread *t)
{
	mli_engine_init();
	mli_thread_attach(t);
}

/* Enters the engine, registering the thread first if it is not yet. */
static void enter_live(struct mli_thread *t)
{
	if (t->state != MLI_T_LIVE) {
		mli_engine_enter(t);
		thread_start(t);
	}
	mli_engine_enter(t);
}

/* After leaving the engine: a signal handler that set a token (or changed
 * a limit) while this thread was inside found it busy and asked for
 * another look. */
static void after(struct mli_thread *t)
{
	if (mli_unlikely(t->poked)) {
		t->poked = 0;
		mli_check_now(t);
	}
	if (mli_unlikely(t->soft_pending))
		mli_soft_run(t);
}

void mli_refill(struct mli_thread *t)
{
	if (t->state != MLI_T_LIVE)
		return;
	/* A poke (a token set by a signal handler, a profiler callback's
	 * start) cut the grant so that the next allocation would look: a new
	 * grant must not skip that look, and the look is the allocation's,
	 * not the refill's, which allocates nothing (at a profiler callback's
	 * end inside free, the look interrupted the task, though none of its
	 * allocations failed: a held-out check). The grant stays cut. */
	if (t->poked) {
		mli_poke(t);
		return;
	}
	mli_engine_enter(t);
	unsigned mask = active(t);
	fold(t, mask);
	struct mli_adm a = { .kind = MLI_ADM_POLL, .mem = MLI_MEM_UNKNOWN };
	regrant(t, &a, mask);
	mli_engine_leave(t);
	/* A poke that came meanwhile (a signal handler's token): left to the
	 * next allocation too (after()'s look here interrupted 15 tasks of
	 * 20,000 whose token a timer set as they entered scopes: a held-out
	 * check). */
	if (mli_unlikely(t->poked))
		mli_poke(t);
	if (mli_unlikely(t->soft_pending))
		mli_soft_run(t);
}

void mli_poke(struct mli_thread *t)
{
	t->quick_gen = t->mem_gen = 0; /* the next slow path looks */
	t->far_left = 0;
	t->poked = 1;
	if (t->in_engine)
		return; /* the engine looks when it leaves (after) */
	/* A grant above its size is one the interrupted code has wrapped
	 * and is about to undo (mli_admit_fast, mli_take): cutting it would
	 * take the wrapped figure off the grant, and the next fold counted
	 * it, some 2^64 bytes (1 TiB budgets exhausted when the activity
	 * callback of a signal handler's allocation poked there). The
	 * thread's next slow path looks anyway (quick_gen, poked). */
	if (__atomic_load_n(&t->left, __ATOMIC_RELAXED) > t->grant)
		return;
	/* Cut the grant: the unused part of it is not counted. Inside the
	 * engine: a signal handler's allocation between the exchange and the
	 * subtraction refilled the grant, which the subtraction then cut by
	 * the old figure, leaving `left` above `grant` (the fast path's
	 * window, never looked at again): a task making only malloc(0) ran on
	 * past its token (a held-out check). Inside, a handler only counts. */
	mli_engine_enter(t);
	uint64_t left = __atomic_exchange_n(&t->left, 0, __ATOMIC_RELAXED);
	t->grant -= left;
	mli_engine_leave(t);
}

static MLI_NOINLINE int admit_full(struct mli_thread *t, size_t n,
				   size_t grow);

/* A signal handler that allocated between the fast path's subtraction that
 * wrapped `left` and its undoing (mli_admit_fast) found `left` huge and
 * took the fast path: if it took more than was left, `left` is still
 * wrapped after the undo. The paths that return without a refill (a request
 * over PTRDIFF_MAX, a callout, a dead thread) left it so, and the thread's
 * every allocation took the fast path from then on: no limit, no sample
 * (test_prof handler_allocations_keep_meters_whole, "huge"). The bytes it
 * took stay in grant - left, for the next fold. */
static void unwrap(struct mli_thread *t)
{
	if (mli_likely(__atomic_load_n(&t->left, __ATOMIC_RELAXED) <= t->grant))
		return;
	mli_engine_enter(t); /* a handler's allocation now only counts */
	t->grant -= __atomic_exchange_n(&t->left, 0, __ATOMIC_RELAXED);
	mli_engine_leave(t);
}

/* Where no meter may run: would n bytes take the memory over
 * MEMLIMITS_GLOBAL_MEMORY, by the O(1) estimate alone? */
static bool over_cap(const struct mli_thread *t, size_t n)
{
	int64_t cap = mli_eng.mem_cap;
	if (cap < 0)
		return false;
	int64_t mem = mli_mem_estimate(t);
	return mem > cap || n > (uint64_t)(cap - mem);
}

int mli_admit_slow(size_t n)
{
	if (mli_likely(mli_quick_refill(n)))
		return MLI_ADMIT;
	return mli_admit_rest(n);
}

int mli_admit_rest(size_t n)
{
	struct mli_thread *t = &mli_tls;
	uint32_t lane = __atomic_load_n(&mli_eng.limits_gen, __ATOMIC_RELAXED) + 1;
	int r;
	if (mli_likely(n < MLI_PEAK_NOTE)) {
		if (t->mem_gen == lane && !t->in_engine && mli_mem_quick(t, n, n))
			r = MLI_ADMIT;
		else
			r = admit_full(t, n, n);
	} else {
		/* A block the peak must note: the memory lane, or the plain
		 * lane's refill (mli_quick_refill leaves big blocks here). */
		size_t grow = mli_be_block_size(n); /* n if no class has it */
		if ((t->mem_gen == lane || t->quick_gen == lane) &&
		    n <= (size_t)PTRDIFF_MAX && !t->in_engine &&
		    mli_mem_quick(t, n, grow))
			r = MLI_ADMIT;
		else
			r = admit_full(t, n, grow);
	}
	if (mli_unlikely(__atomic_load_n(&mli_be_tick_owed, __ATOMIC_RELAXED)) &&
	    !t->in_engine)
		mli_be_tick();
	if (mli_unlikely(!n) && r != MLI_REFUSE && !t->in_engine)
		mli_mem_zero_admitted(t);
	return r;
}

int mli_admit_resize(size_t n, size_t grow)
{
	if (mli_likely(mli_admit_fast(n)))
		return MLI_ADMIT; /* within the grant: grow - n is within the slack */
	if (n < MLI_PEAK_NOTE && grow < MLI_PEAK_NOTE)
		return mli_admit_slow(n);
	return admit_full(&mli_tls, n, grow > n ? grow : n);
}

/* Everything else: a separate function, so that the quick refill above
 * saves no registers. */
static MLI_NOINLINE int admit_full(struct mli_thread *t, size_t n,
				   size_t grow)
{
	if (!t->in_engine)
		unwrap(t);
	if (n > (size_t)PTRDIFF_MAX)
		return MLI_REFUSE; /* no allocator can serve it: not a limit's doing */
	if (mli_unlikely(t->in_engine)) {
		/* Re-entered: a signal handler that allocates, or the engine's own
		 * allocation. Take no lock and run no meter: count it, and refuse
		 * it only if the O(1) estimate alone says it would take the memory
		 * over MEMLIMITS_GLOBAL_MEMORY. */
		if (!t->callout && over_cap(t, grow))
			return MLI_REFUSE;
		MLI_TLS_ADD(count, n);
		return MLI_ADMIT;
	}
	if (t->callout) {
		/* Invisible to the limits (a profiler callback, the library's
		 * own needs), but a tracker's tables are the process's memory:
		 * MEMLIMITS_GLOBAL_MEMORY is a hard cap for them too. */
		if (t->tracker && over_cap(t, grow)) {
			t->breach_count++;
			mli_report_breach(MLI_BREACH_GLOBAL, n, grow,
					  mli_mem_estimate(t));
			return MLI_REFUSE;
		}
		return MLI_ADMIT;
	}
	if (t->state != MLI_T_LIVE && (t->state == MLI_T_DEAD || t->initialising)) {
		/* A thread past its exit destructor (other destructors, a signal
		 * handler there), or the start-up's own: the same. */
		if (t->state == MLI_T_DEAD && over_cap(t, grow))
			return MLI_REFUSE;
		MLI_TLS_ADD(count, n);
		return MLI_ADMIT;
	}
	enter_live(t);
	t->poked = 0; /* this admission is the look a poke asks for */
	unsigned mask = active(t);
	fold(t, mask);
	struct mli_adm a = { .n = n, .grow = grow, .kind = MLI_ADM_ALLOC,
			     .mem = MLI_MEM_UNKNOWN };
	int r = MLI_REFUSE;
	if (admit(t, &a, mask)) {
		MLI_TLS_ADD(count, n);
		r = a.sampled ? MLI_SAMPLE : MLI_ADMIT;
		/* Every admitted block is in the peak (smaller ones within the
		 * publication's quantum). */
		if (grow >= MLI_PEAK_NOTE)
			mli_mem_note(mli_adm_mem(t, &a) + (int64_t)grow);
	} else {
		t->breach_count++;
		a.n = a.grow = 0;
	}
	regrant(t, &a, active(t));
	mli_engine_leave(t);
	after(t);
	return r;
}

/* pthread_create's check (preload/thread.c). A thread started while the
 * memory is at a hard limit fails at its first allocations, and a runtime
 * may not survive that: CPython 3.11's Thread.start() waits for ever for a
 * thread whose bootstrap died of MemoryError before it said it started
 * (the held-out survey: 5 of 6 runs of 8 python threads under 100M hung).
 * Under ulimit -v the thread's stack mapping fails instead and start()
 * raises "can't start new thread". So: refused (EAGAIN) when the memory
 * meters (the cap, the tree) would refuse an allocation of MLI_THREAD_ROOM
 * bytes; nothing is charged. Tasks' limits and budgets do not apply: a
 * thread is not an allocation. */
#define MLI_THREAD_ROOM ((uint64_t)64 << 10)
bool mli_thread_may_start(void)
{
	struct mli_thread *t = &mli_tls;
	unsigned mask = mli_eng.meters &
			(MLI_METER_BIT(memory) | MLI_METER_BIT(tree));
	if (!mask || t->in_engine || t->callout || t->initialising ||
	    t->state == MLI_T_DEAD)
		return true;
	enter_live(t);
	struct mli_adm a = { .n = MLI_REQ_THREAD, .grow = MLI_THREAD_ROOM,
			     .kind = MLI_ADM_ALLOC, .mem = MLI_MEM_UNKNOWN };
	bool ok = true;
	FOR_EACH_METER(i, mask)
		if (!meters[i]->admit(t, &a)) {
			ok = false;
			break;
		}
	if (!ok)
		t->breach_count++;
	mli_mem_settle(t); /* the room was only looked at: nothing to reserve */
	mli_engine_leave(t);
	return ok;
}

bool mli_fork_may_start(uint64_t child)
{
	struct mli_thread *t = &mli_tls;
	int64_t mem = 0;
	if (!(mli_eng.meters & MLI_METER_BIT(tree)))
		return true;
	/* A fork from a signal handler that interrupted the engine (or a
	 * thread's start or end): on the published figures, with no breach
	 * line (the engine's state is the interrupted code's). Such forks
	 * were never refused: 670 MiB under a 200M tree (a held-out check). */
	if (t->in_engine || t->callout || t->initialising || t->state == MLI_T_DEAD) {
		if (mli_tree_fork_fits(child, &mem, false))
			return true;
		mli_tree_fired();
		return false;
	}
	enter_live(t);
	bool ok = mli_tree_fork_fits(child, &mem, true);
	if (!ok) {
		t->breach_count++;
		mli_report_breach(MLI_BREACH_TREE, MLI_REQ_FORK, child, mem);
	}
	mli_engine_leave(t);
	return ok;
}

bool mli_admit_mapped(uint64_t bytes)
{
	struct mli_thread *t = &mli_tls;
	if (t->in_engine || t->callout ||
	    t->initialising || t->state == MLI_T_DEAD) {
		if (t->tracker && !t->in_engine && over_cap(t, bytes))
			return false; /* as admit_full */
		mli_mem_mapped_add((int64_t)bytes);
		return true;
	}
	enter_live(t);
	t->poked = 0;
	unsigned mask = active(t);
	fold(t, mask);
	struct mli_adm a = { .n = bytes, .grow = bytes, .kind = MLI_ADM_MAP,
			     .mem = MLI_MEM_UNKNOWN };
	bool ok = admit(t, &a, mask);
	if (ok)
		mli_mem_mapped_add((int64_t)bytes); /* notes the peak */
	else
		t->breach_count++;
	a.n = a.grow = 0;
	a.mem = MLI_MEM_UNKNOWN;
	regrant(t, &a, active(t));
	mli_engine_leave(t);
	/* The caller holds its lock: pressure callbacks wait for it to call
	 * mli_after_call. */
	if (mli_unlikely(t->poked)) {
		t->poked = 0;
		mli_check_now(t);
	}
	return ok;
}

void mli_check_now(struct mli_thread *t)
{
	if (t->in_engine || t->state != MLI_T_LIVE)
		return;
	mli_engine_enter(t);
	t->poked = 0;
	unsigned mask = active(t);
	fold(t, mask);
	struct mli_adm a = { .kind = MLI_ADM_POLL, .mem = MLI_MEM_UNKNOWN };
	admit(t, &a, mask);
	regrant(t, &a, active(t));
	mli_engine_leave(t);
	after(t);
}

void mli_charge_after(uint64_t n)
{
	struct mli_thread *t = &mli_tls;
	mli_engine_enter(t);
	t->count += n;
	t->headroom = t->headroom > n ? t->headroom - n : 0;
	fold_meters(t, active(t), n);
	/* The grant may not outlast the room that is left. */
	uint64_t used = t->grant - t->left;
	uint64_t room = t->headroom > used ? t->headroom - used : 0;
	if (t->left > room) {
		t->grant -= t->left - room;
		t->left = room;
	}
	mli_engine_leave(t);
}

void mli_uncharge(size_t n)
{
	struct mli_thread *t = &mli_tls;
	mli_engine_enter(t);
	t->count -= n;
	FOR_EACH_METER(i, active(t) & has_admit[MLI_ADM_ALLOC] & has_uncharge)
		meters[i]->uncharge(t, n);
	mli_mem_settle(t); /* the block admitted and reserved was not made */
	mli_engine_leave(t);
	if (mli_unlikely(t->soft_pending)) /* held back while it was reserved */
		mli_soft_run(t);
}

void mli_thread_retire(struct mli_thread *t)
{
	mli_mem_settle_slow(t); /* a reservation of a block never made */
	FOR_EACH_METER(i, (1u << NMETERS) - 1)
		if (meters[i]->retire)
			meters[i]->retire(t);
}

void mli_thread_start(void)
{
	struct mli_thread *t = &mli_tls;
	if (t->state != MLI_T_NEW || t->initialising)
		return;
	mli_engine_enter(t);
	thread_start(t);
	struct mli_adm a = { .kind = MLI_ADM_POLL, .mem = MLI_MEM_UNKNOWN };
	regrant(t, &a, active(t));
	mli_engine_leave(t);
}

/* Refuses to run with limits that cannot hold: a malloc that is not this
 * library's (another allocator before it in LD_PRELOAD, the program's own,
 * valgrind's) sees none of them, silently. Without a limit, the report and
 * the profile would miss that heap: said once. */
static void reach_check(void)
{
	const struct mli_config *c = &mli_eng.cfg;
	bool limits = c->global_memory >= 0 || c->soft_memory >= 0 ||
		      c->allocations >= 0 || c->thread_allocations >= 0 ||
		      mli_tree_limit() >= 0 || mli_tree_budget();
	if (!limits && !c->report[0] && !c->profile[0])
		return;
	char why[PATH_MAX + 256], b[PATH_MAX + 512];
	if (mli_exe_unreachable(why, sizeof why)) {
		struct mli_buf m = { b, 0, sizeof b };
		mli_buf_str(&m, limits ? "memlimits: " : "memlimits: warning: ");
		mli_buf_str(&m, why);
		mli_buf_str(&m, limits ? ": the limits set cannot hold on it"
				       : ": the report and the profile miss it\n");
		if (m.len >= sizeof b)
			m.len = sizeof b - 1;
		b[m.len] = '\0';
		if (limits)
			mli_die(b);
		mli_say(b, m.len);
		return;
	}
	const char *path;
	int kind = mli_be_foreign_malloc(&path);
	if (kind == MLI_MALLOC_OURS)
		return;
	struct mli_buf m = { b, 0, sizeof b };
	mli_buf_str(&m, limits ? "memlimits: " : "memlimits: warning: ");
	mli_buf_str(&m, "malloc in this process is not memlimits' but ");
	mli_buf_str(&m, kind == MLI_MALLOC_TOOL	   ? "a tool's that replaces it (valgrind's)"
			: kind == MLI_MALLOC_PROGRAM ? "the program's own ("
						     : "");
	mli_buf_str(&m, kind == MLI_MALLOC_TOOL ? "" : path[0] ? path : "another library");
	mli_buf_str(&m, kind == MLI_MALLOC_PROGRAM ? ")" : kind == MLI_MALLOC_TOOL ? "" : "'s");
	mli_buf_str(&m, !limits ? ": the report and the profile miss its heap\n"
			: kind == MLI_MALLOC_TOOL
				? ": the limits set cannot hold on its heap (valgrind"
				  " --tool=none keeps the program's malloc)"
			: kind == MLI_MALLOC_PROGRAM
				? ": the limits set cannot hold on its heap"
				: ": the limits set cannot hold on its heap; put"
				  " libmemlimits.so first in LD_PRELOAD, or run"
				  " without the other allocator");
	if (m.len >= sizeof b)
		m.len = sizeof b - 1;
	b[m.len] = '\0';
	if (limits)
		mli_die(b);
	mli_say(b, m.len);
}

__attribute__((constructor)) static void mli_constructor(void)
{
	mli_engine_init();
	mli_say_start(!strcmp(mli_eng.cfg.report, "stderr"));
	mli_limit_status_start(); /* first: its exit handler runs last */
	mli_thread_init_once();
	mli_token_init_once();
	mli_soft_init_once();
	mli_output_init(); /* core/output.c: checks MEMLIMITS_REPORT/PROFILE, atfork */
	mli_unwind_start();
	mli_tree_start();
	mli_thread_start();
	reach_check();
	if (mli_eng.cfg.report[0]) {
		mli_report_startup();
		atexit(mli_report_exit);
	}
	if (mli_eng.cfg.soft_memory >= 0)
		mli_soft_watch(mli_eng.cfg.soft_memory, mli_report_soft, NULL);
	if (mli_eng.cfg.profile[0])
		mli_profile_start_env();
}
