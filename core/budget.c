/* budget.c: budgets of allocated bytes, and the meters of
 * MEMLIMITS_THREAD_ALLOCATIONS (each thread's own) and MEMLIMITS_ALLOCATIONS
 * (one budget shared by the process's threads, through struct mli_budget).
 *
 * Budgets count requested bytes and never give them back on free. An
 * exhausted budget refuses, then lets the thread allocate GRACE bytes more
 * before the next refusal, so that the program can report the error and
 * exit cleanly (GHC grants 100 KB after AllocationLimitExceeded), the
 * first GRACES times only: each thread's for its own budget, the process's
 * for the shared one. A program that caught each refusal and went on
 * (a server catching MemoryError per request) got 100 KiB after every one:
 * 400 MiB under MEMLIMITS_ALLOCATIONS=10M (a held-out check). These are
 * the operator's hard caps: masking does not apply, and a refusal is no
 * task's interrupt. */
#include "internal.h"

#define GRACE ((uint64_t)100 << 10)
#define GRACES 10
static uint32_t proc_graces; /* given for the process's budget (atomic) */
/* A thread's reservation: at most this (or 1/16 of what is left) at once,
 * since other threads may be refused while it holds it. */
#define PROC_BATCH ((uint64_t)1 << 20)

bool mli_budget_take(struct mli_budget *b, uint64_t need, uint64_t *got)
{
	uint64_t avail = __atomic_load_n(&b->avail, __ATOMIC_RELAXED);
	for (;;) {
		if (avail < need)
			return false;
		uint64_t take = mli_min(avail, need + mli_min(b->batch, avail / 16));
		if (__atomic_compare_exchange_n(&b->avail, &avail, avail - take,
						true, __ATOMIC_RELAXED,
						__ATOMIC_RELAXED)) {
			*got = take;
			return true;
		}
	}
}

/* Takes n bytes, or all there are if fewer: bytes already allocated. */
static void take_upto(struct mli_budget *b, uint64_t n)
{
	uint64_t avail = __atomic_load_n(&b->avail, __ATOMIC_RELAXED);
	while (!__atomic_compare_exchange_n(&b->avail, &avail,
					    avail > n ? avail - n : 0, true,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void mli_budget_return(struct mli_budget *b, uint64_t n)
{
	if (n)
		__atomic_fetch_add(&b->avail, n, __ATOMIC_RELAXED);
}

bool mli_budget_draw(struct mli_budget *b, uint64_t *held, uint64_t n)
{
	if (*held >= n) {
		*held -= n;
		return true;
	}
	uint64_t got;
	if (!mli_budget_take(b, n - *held, &got))
		return false;
	*held = *held + got - n;
	return true;
}

/* A budget refused n bytes: the grace allowance, or report and fail. */
static bool refuse(struct mli_thread *t, enum mli_breach which, uint64_t n)
{
	if (t->grace >= n) {
		t->grace -= n;
		return true;
	}
	uint32_t given = which == MLI_BREACH_THREAD
		? t->graces++
		: __atomic_fetch_add(&proc_graces, 1, __ATOMIC_RELAXED);
	t->grace = given < GRACES ? GRACE : 0;
	mli_report_breach(which, n, 0, -1);
	return false;
}

/* ---- MEMLIMITS_THREAD_ALLOCATIONS: the thread's count against a cap ---- */

static bool tb_admit(struct mli_thread *t, struct mli_adm *a)
{
	int64_t c = mli_eng.cfg.thread_allocations;
	if (c < 0)
		return true;
	uint64_t cap = (uint64_t)c;
	if (t->count <= cap && a->n <= cap - t->count)
		return true;
	return refuse(t, MLI_BREACH_THREAD, a->n);
}

static void tb_bound(struct mli_thread *t, struct mli_adm *a)
{
	int64_t c = mli_eng.cfg.thread_allocations;
	if (c < 0)
		return;
	uint64_t cap = (uint64_t)c, used = t->count + a->n;
	uint64_t room = used < cap ? cap - used : 0;
	a->wait = mli_min(a->wait, room);
	a->room = mli_min(a->room, room);
}

const struct mli_meter mli_meter_tbudget = {
	.name = "tbudget",
	.kinds = MLI_ADM_ALLOC,
	.admit = tb_admit,
	.bound = tb_bound,
};

/* ---- MEMLIMITS_ALLOCATIONS: the process's budget ---------------------- */

static struct mli_budget proc = { 0, PROC_BATCH };
/* The budget drawn on: the process's, or its process tree's (tree.c). */
static struct mli_budget *pool = &proc;

void mli_budget_init(void)
{
	if (mli_eng.cfg.allocations >= 0)
		proc.avail = (uint64_t)mli_eng.cfg.allocations;
}

/* In a process tree with a budget, the tree's replaces the process's. */
void mli_budget_use(struct mli_budget *b)
{
	pool = b;
}

static bool on(void)
{
	return mli_eng.cfg.allocations >= 0 || pool != &proc;
}

static bool pb_admit(struct mli_thread *t, struct mli_adm *a)
{
	if (!on() || mli_budget_draw(pool, &t->proc_held, a->n))
		return true;
	/* The grace bytes are not the budget's: nothing is drawn, and
	 * nothing is added to what the thread holds (which would let its
	 * fast path take them a second time: 200 KiB after a refusal, not
	 * 100). If the allocation then fails in the allocator, its uncharge
	 * leaves them in proc_held: a refused budget gains a failed block's
	 * bytes. */
	return refuse(t, MLI_BREACH_ALLOC, a->n);
}

static void pb_bound(struct mli_thread *t, struct mli_adm *a)
{
	if (!on())
		return;
	a->wait = mli_min(a->wait, t->proc_held);
	a->room = mli_min(a->room, t->proc_held);
}

/* The grant never exceeds proc_held, but `used` can, by a signal
 * handler's allocations that took the fast path while `left` was wrapped
 * (see sampler_fold in prof.c): the excess comes out of the budget now, as
 * far as it goes. proc_held wrapped instead, and the thread had a budget
 * of 2^64 bytes (a handler allocating 256 bytes on a 30 us timer under
 * MEMLIMITS_ALLOCATIONS=100M: 1 GB allocated, 10 refusals). */
static void pb_fold(struct mli_thread *t, uint64_t used)
{
	if (!on())
		return;
	if (used <= t->proc_held) {
		t->proc_held -= used;
		return;
	}
	take_upto(pool, used - t->proc_held);
	t->proc_held = 0;
}

static void pb_uncharge(struct mli_thread *t, uint64_t n)
{
	if (on())
		t->proc_held += n;
}

static void pb_retire(struct mli_thread *t)
{
	mli_budget_return(pool, t->proc_held);
	t->proc_held = 0;
}

/* What the thread's grant handed out since the last fold (which the fold
 * takes off proc_held); false if the grant is wrapped (a signal handler's
 * allocation inside the fast path's window: not looked at). */
static bool unfolded(const struct mli_thread *t, uint64_t *used)
{
	uint64_t left = __atomic_load_n(&t->left, __ATOMIC_RELAXED);
	if (t->in_engine || left > t->grant)
		return false;
	*used = t->grant - left - __atomic_load_n(&t->refund, __ATOMIC_RELAXED);
	return true;
}

/* fork in a tree with a budget: the child's one thread would hold its
 * parent's reservation of the tree's budget, which the parent goes on
 * drawing from, and both would spend it (children of a parent that had
 * allocated 100 bytes took 21 MiB of a 10M tree budget between them). The
 * child keeps only what the parent's grant had handed out (its next fold
 * takes that off, as the parent's will), and its next allocation draws on
 * the tree. A process's own budget (no tree) is the child's copy: kept. */
void mli_budget_fork_child(struct mli_thread *t)
{
	uint64_t used;
	if (pool == &proc || !unfolded(t, &used))
		return;
	t->proc_held = used;
	mli_poke(t);
}

/* fork, for each of the parent's other threads (thread.c, in the child):
 * their reservations of a tree's budget are the parent's threads', which
 * go on spending them; retiring the copies gave them to the tree a second
 * time (a child of a parent with 8 threads: 79 MiB of a 20M budget over 8
 * children, a held-out check). A process's own budget is the child's copy:
 * retired as before. */
void mli_budget_forget(struct mli_thread *t)
{
	if (pool != &proc)
		t->proc_held = 0;
}

/* A process of a tree with a budget exits (tree.c, from exit and _exit)
 * or execs (preload/exec.c): the calling thread's reservation, less what
 * its grant handed out, goes back to the tree (with reservations of 4 MiB,
 * 20 children that allocated 1 MiB each left their parent 2 MiB of a 50M
 * budget; every exec of a shell loop lost one too). The
 * grant is cut, so that what the process still allocates (exit handlers)
 * draws on the tree. Threads still running keep theirs, lost as a killed
 * process's are. */
void mli_budget_exit(struct mli_thread *t)
{
	uint64_t used;
	if (pool == &proc || !unfolded(t, &used) || t->proc_held <= used)
		return;
	mli_budget_return(pool, t->proc_held - used);
	t->proc_held = used;
	mli_poke(t);
}

const struct mli_meter mli_meter_pbudget = {
	.name = "pbudget",
	.kinds = MLI_ADM_ALLOC,
	.admit = pb_admit,
	.bound = pb_bound,
	.fold = pb_fold,
	.uncharge = pb_uncharge,
	.retire = pb_retire,
};
