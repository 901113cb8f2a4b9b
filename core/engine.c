/* engine.c: start-up and the one slow path every limit shares.
 *
 * The fast path (mli_admit in internal.h) subtracts the request from the
 * thread's `left` and falls here only when that would go below zero. `left`
 * is a grant computed here: the largest number of bytes the thread can
 * allocate before any of its limits could fire. Every special case (first
 * use, a limit near, a token to poll, an interrupted task, a dead thread)
 * is expressed as a small or zero grant, so the fast path has one branch. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "output.h"

extern char **environ;

struct mli_engine mli_eng = { .global_limit = -1 };

/* Grants: with no limit near, a thread checks in every NOLIMIT_GRANT bytes
 * (to sample the peak heap). Under a global memory limit at most
 * GLOBAL_GRANT, so the heap overshoots the limit by at most that much per
 * thread. Under a token at most TOKEN_GRANT, the bytes allocated between
 * setting a token and its task noticing. */
#define NOLIMIT_GRANT ((uint64_t)1 << 20)
#define GLOBAL_GRANT ((uint64_t)64 << 10)
#define TOKEN_GRANT ((uint64_t)16 << 10)
/* MEMLIMITS_ALLOCATIONS is shared: a thread reserves up to PROC_BATCH (and
 * at most 1/16 of what is left) at a time, so a thread can be refused while
 * others still hold unused reservations, by at most 1/16 of the rest each. */
#define PROC_BATCH ((uint64_t)4 << 20)
/* After an exhausted MEMLIMITS_(THREAD_)ALLOCATIONS budget refuses an
 * allocation, the thread may allocate this much more before the next
 * refusal, so that it can report the error and exit cleanly (GHC: 100 KB). */
#define GRACE ((uint64_t)100 << 10)

static int init_state; /* 0 not yet, 1 in progress, 2 done */

void mli_engine_init(void)
{
	if (mli_likely(__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == 2))
		return;
	int expect = 0;
	if (!__atomic_compare_exchange_n(&init_state, &expect, 1, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		while (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != 2)
			;
		return;
	}
	mli_be_init();
	char err[512];
	if (mli_config_read(environ, &mli_eng.cfg, err, sizeof err) != 0)
		mli_die(err);
	const struct mli_config *c = &mli_eng.cfg;
	mli_eng.global_limit = c->global_memory;
	mli_eng.env_global = c->global_memory >= 0;
	if (c->allocations >= 0)
		mli_eng.proc_pool = (uint64_t)c->allocations;
	mli_eng.started = c->global_memory >= 0 || c->allocations >= 0 ||
			  c->thread_allocations >= 0;
	mli_prof_init();
	__atomic_store_n(&init_state, 2, __ATOMIC_RELEASE);
}

static inline uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Is this thread's heap check on: the environment's limit, or a task under
 * ml_limit_global_memory with a limit set? */
static bool global_checked(const struct mli_thread *t, int64_t limit)
{
	return limit >= 0 && (mli_eng.env_global || t->nglobal);
}

/* Marks every scope of the thread whose limit an allocation of n bytes
 * fires. Order of the checks as in OCaml: global memory, allocations,
 * token. */
static void check_scopes(struct mli_thread *t, size_t n, int64_t *live,
			 uint32_t *nthr)
{
	uint64_t count = t->count;
	int64_t limit = __atomic_load_n(&mli_eng.global_limit, __ATOMIC_RELAXED);
	for (struct mli_scope *s = t->top; s; s = s->outer) {
		if (s->fired)
			continue;
		ml_status st = ML_OK;
		switch (s->kind) {
		case MLI_SCOPE_GLOBAL:
			if (limit < 0)
				break;
			if (*live < 0)
				*live = mli_live_heap(nthr);
			if (*live > limit || n > (uint64_t)(limit - *live))
				st = ML_GLOBAL_MEMORY_LIMIT;
			break;
		case MLI_SCOPE_ALLOC: {
			/* used can pass the limit without firing only through
			 * re-entrant allocations, which are never refused. */
			uint64_t used = count - s->start;
			if (used > s->limit || n > s->limit - used)
				st = ML_ALLOCATION_LIMIT;
			break;
		}
		case MLI_SCOPE_TOKEN:
			if (__atomic_load_n(&s->token->set, __ATOMIC_ACQUIRE))
				st = ML_TOKEN_LIMIT;
			break;
		}
		if (st != ML_OK) {
			s->fired = (uint8_t)st;
			t->nfired++;
		}
	}
}

/* A budget of the environment refused n bytes: grant the grace allowance,
 * report once, and fail (or abort). */
static bool budget_refuse(struct mli_thread *t, enum mli_breach which,
			  size_t n)
{
	if (t->grace >= n) {
		t->grace -= n;
		return true;
	}
	t->grace = GRACE;
	mli_report_breach(which, n, -1);
	return false;
}

/* Takes up to `want` bytes (at least `need`) from the process budget. */
static bool pool_take(uint64_t need, uint64_t want, uint64_t *got)
{
	uint64_t avail = __atomic_load_n(&mli_eng.proc_pool, __ATOMIC_RELAXED);
	for (;;) {
		if (avail < need)
			return false;
		uint64_t take = min64(avail, want);
		if (__atomic_compare_exchange_n(&mli_eng.proc_pool, &avail,
						avail - take, true,
						__ATOMIC_RELAXED,
						__ATOMIC_RELAXED)) {
			*got = take;
			return true;
		}
	}
}

static bool decide(struct mli_thread *t, size_t n, int64_t *live,
		   uint32_t *nthr)
{
	const struct mli_config *c = &mli_eng.cfg;
	if (t->top)
		check_scopes(t, n, live, nthr);
	if (t->nfired && !t->mask_depth)
		return false;
	/* The environment's limits are hard caps: not masked, and a refusal
	 * is an ordinary allocation failure, not any task's interrupt. */
	int64_t limit = __atomic_load_n(&mli_eng.global_limit, __ATOMIC_RELAXED);
	if (mli_eng.env_global && limit >= 0) {
		if (*live < 0)
			*live = mli_live_heap(nthr);
		if (*live > limit || n > (uint64_t)(limit - *live)) {
			mli_report_breach(MLI_BREACH_GLOBAL, n, *live);
			return false;
		}
	}
	if (c->thread_allocations >= 0) {
		uint64_t cap = (uint64_t)c->thread_allocations;
		if (t->count > cap || n > cap - t->count)
			if (!budget_refuse(t, MLI_BREACH_THREAD, n))
				return false;
	}
	if (c->allocations >= 0) {
		if (t->proc_held >= n)
			t->proc_held -= n;
		else {
			uint64_t need = n - t->proc_held, got;
			uint64_t pool = __atomic_load_n(&mli_eng.proc_pool,
							__ATOMIC_RELAXED);
			if (pool_take(need, need + min64(PROC_BATCH, pool / 16), &got))
				t->proc_held = t->proc_held + got - n;
			else if (!budget_refuse(t, MLI_BREACH_ALLOC, n))
				return false;
		}
	}
	return true;
}

/* The grant: the bytes the fast path may hand out before a limit could
 * fire. `live` is the heap if the caller already measured it, else -1. */
static uint64_t grant(struct mli_thread *t, int64_t live, uint32_t nthr)
{
	const struct mli_config *c = &mli_eng.cfg;
	t->headroom = 0;
	if ((t->nfired && !t->mask_depth) || t->prof_busy)
		return 0;
	int64_t limit = __atomic_load_n(&mli_eng.global_limit, __ATOMIC_RELAXED);
	bool global = global_checked(t, limit);
	if (global || t->count - t->peak_mark >= NOLIMIT_GRANT) {
		/* Measuring the heap also records the peak: at least once per
		 * NOLIMIT_GRANT bytes of each thread. */
		t->peak_mark = t->count;
		if (live < 0)
			live = mli_live_heap(&nthr);
	}
	/* room: what the limits allow before one of them could fire. */
	uint64_t room = UINT64_MAX;
	if (global) {
		uint64_t free_heap = live < limit ? (uint64_t)(limit - live) : 0;
		room = free_heap / (2 * (nthr ? nthr : 1));
	}
	uint64_t count = t->count;
	for (const struct mli_scope *s = t->top; s; s = s->outer)
		if (s->kind == MLI_SCOPE_ALLOC && !s->fired) {
			uint64_t used = count - s->start;
			room = min64(room, used < s->limit ? s->limit - used : 0);
		}
	if (c->thread_allocations >= 0) {
		uint64_t cap = (uint64_t)c->thread_allocations;
		room = min64(room, t->count < cap ? cap - t->count : 0);
	}
	if (c->allocations >= 0)
		room = min64(room, t->proc_held);
	/* The grant: the room, but the thread checks in at least every
	 * NOLIMIT_GRANT bytes (peak), GLOBAL_GRANT under a heap limit (the
	 * overshoot bound), TOKEN_GRANT under a token, and at the next sample. */
	uint64_t g = min64(room, min64(NOLIMIT_GRANT, t->sample_left));
	if (global)
		g = min64(g, GLOBAL_GRANT);
	if (t->ntoken)
		g = min64(g, TOKEN_GRANT);
	/* Big reallocs may use the room beyond the grant (see realloc), unless
	 * a token or the sampler must see every byte. */
	if (!t->ntoken && t->sample_left == UINT64_MAX)
		t->headroom = room;
	return g;
}

/* Folds what the fast path handed out since the last refill into count
 * (and out of the process reservation). */
static void fold(struct mli_thread *t)
{
	uint64_t used = t->grant - t->left;
	t->count += used;
	if (t->sample_left != UINT64_MAX)
		t->sample_left -= used; /* the grant never exceeds it */
	if (mli_eng.cfg.allocations >= 0)
		t->proc_held -= used;
	t->grant = t->left = 0;
}

static void thread_start(struct mli_thread *t)
{
	mli_engine_init();
	mli_thread_attach(t);
}

void mli_refill(struct mli_thread *t)
{
	if (t->state != MLI_T_LIVE)
		return;
	mli_engine_enter(t);
	fold(t);
	mli_prof_sync(t);
	t->grant = t->left = grant(t, -1, 1);
	mli_engine_leave(t);
}

int mli_admit_slow(size_t n)
{
	struct mli_thread *t = &mli_tls;
	t->left += n; /* undo the fast path's wrapped subtraction */
	if (n > (size_t)PTRDIFF_MAX)
		return MLI_REFUSE; /* no allocator can serve it: not a limit's doing */
	if (mli_unlikely(t->in_engine)) {
		/* Re-entered: a signal handler that allocates, or the engine's own
		 * allocation. Count, never refuse, take no lock. */
		t->count += n;
		return MLI_ADMIT;
	}
	if (t->prof_busy)
		return MLI_ADMIT; /* a profiler callback: invisible to the limits */
	if (t->state != MLI_T_LIVE) {
		if (t->state == MLI_T_DEAD) {
			t->count += n;
			return MLI_ADMIT;
		}
		mli_engine_enter(t);
		thread_start(t);
	}
	mli_engine_enter(t);
	fold(t);
	mli_prof_sync(t);
	int64_t live = -1;
	uint32_t nthr = 1;
	int r = decide(t, n, &live, &nthr) ? MLI_ADMIT : MLI_REFUSE;
	if (r == MLI_ADMIT) {
		t->count += n;
		if (t->sample_left != UINT64_MAX &&
		    (t->pending_samples = mli_prof_count(t, n)) != 0)
			r = MLI_SAMPLE;
	} else
		t->breach_count++;
	t->grant = t->left = grant(t, live, nthr);
	mli_engine_leave(t);
	return r;
}

void mli_check_now(struct mli_thread *t)
{
	if (t->in_engine)
		return;
	mli_engine_enter(t);
	fold(t);
	int64_t live = -1;
	uint32_t nthr = 1;
	check_scopes(t, 0, &live, &nthr);
	t->grant = t->left = grant(t, live, nthr);
	mli_engine_leave(t);
}

void mli_charge_after(uint64_t n)
{
	struct mli_thread *t = &mli_tls;
	mli_engine_enter(t);
	t->count += n;
	t->headroom -= n;
	if (mli_eng.cfg.allocations >= 0)
		t->proc_held -= n;
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
	t->count -= n;
	if (mli_eng.cfg.allocations >= 0)
		t->proc_held += n;
}

void mli_thread_start(void)
{
	struct mli_thread *t = &mli_tls;
	if (t->state != MLI_T_NEW)
		return;
	mli_engine_enter(t);
	thread_start(t);
	t->grant = t->left = grant(t, -1, 1);
	mli_engine_leave(t);
}

__attribute__((constructor)) static void mli_constructor(void)
{
	mli_engine_init();
	mli_thread_init_once();
	mli_output_init(); /* core/output.c: checks MEMLIMITS_REPORT/PROFILE, atfork */
	mli_thread_start();
	if (mli_eng.cfg.report[0])
		atexit(mli_report_exit);
	if (mli_eng.cfg.profile[0])
		mli_profile_start_env();
}
