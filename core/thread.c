/* thread.c: per-thread state and the registry of live threads.
 *
 * The registry is a list under one spin lock, taken when a thread starts or
 * exits, at fork, and by the rare walks over every thread (an exact memory
 * figure, the total allocated): never on a path an allocation takes
 * repeatedly, so nothing an allocation does costs O(threads). An exiting
 * thread unlinks itself under the lock, so a walker never touches a dead
 * thread's TLS. */
#include <pthread.h>
#include <signal.h>
#include <sched.h>

#include "internal.h"

__thread struct mli_thread mli_tls __attribute__((tls_model("initial-exec")));

static int reg_lock;                   /* spin lock: no futex, no allocation */
static struct mli_thread *reg_head;    /* live registered threads */
uint32_t mli_reg_n;                    /* atomic: read without the lock */
static uint64_t retired_count;         /* requested bytes of exited threads */
static uint64_t next_id;
static pthread_key_t exit_key;
static int exit_key_state;             /* 0 none, 1 creating, 2 ready */

/* The library's fork handlers are registered with no DSO handle:
 * pthread_atfork passes glibc the library's own, and the library's
 * __cxa_finalize at exit unregisters them. A fork in another thread at that
 * moment, between its prepare handlers and its parent handlers, then ran
 * no parent handler of the library: the locks its prepares took stayed
 * held, and the exiting thread spun in its next free for ever (a held-out
 * check: 7 of 30 runs under the profiler, at exit with forking threads).
 * The library is never unloaded (-z nodelete). */
extern int __register_atfork(void (*)(void), void (*)(void), void (*)(void), void *);

void mli_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
	__register_atfork(prepare, parent, child, NULL);
}

void mli_spin_lock(int *l)
{
	MLI_ANNOTATE_ATOMIC(l);
	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(l, __ATOMIC_RELAXED))
			sched_yield();
	MLI_ANNOTATE_LOCKED(l);
}

/* Every taker of the registry lock holds it with signals blocked: a signal
 * handler that forked on a thread holding it spun for ever in fork_prepare
 * (ml_stats's walk beside 1000 threads, with a timer's handler forking:
 * every run; a thread's exit: a held-out check). And marks its thread as in
 * the engine (the engine's own signal-safety rule). */
struct reg_hold {
	sigset_t mask;
	uint8_t was;
};

static void reg_take(struct reg_hold *h)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &h->mask);
	struct mli_thread *self = &mli_tls;
	h->was = self->in_engine;
	mli_engine_enter(self);
	mli_spin_lock(&reg_lock);
}

static void reg_give(const struct reg_hold *h)
{
	mli_spin_unlock(&reg_lock);
	if (!h->was)
		mli_engine_leave(&mli_tls);
	pthread_sigmask(SIG_SETMASK, &h->mask, NULL);
}

uint64_t mli_thread_count(const struct mli_thread *t)
{
	return t->count + (t->grant - t->left) - t->refund;
}

static void unlink_thread(struct mli_thread *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		reg_head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	__atomic_store_n(&mli_reg_n, mli_reg_n - 1, __ATOMIC_RELAXED);
}

static void thread_exit(void *arg)
{
	struct mli_thread *t = arg;
	if (t->state == MLI_T_LIVE && !t->exiting) {
		/* Scopes entered and never left (pthread_exit inside one) point
		 * into the dead thread's stack: forget them before another
		 * destructor's allocation looks at them. */
		mli_engine_enter(t);
		t->top = NULL;
		t->depth = 0;
		__atomic_sub_fetch(&mli_eng.mem_users, t->nglobal, __ATOMIC_RELAXED);
		t->nfired = t->ntoken = t->nglobal = 0;
		t->mask_depth = 0;
		mli_engine_leave(t);
		mli_refill(t);
		/* Run once more in the next destructor round, so that frees done
		 * by destructors of keys created after ours are still seen. */
		t->exiting = 1;
		pthread_setspecific(exit_key, t);
		return;
	}
	if (t->state != MLI_T_LIVE)
		return;
	mli_engine_enter(t);
	/* Its live bytes stay in the published sum, exact now; frees it makes
	 * later (other destructors) still publish through the backend's
	 * activity callback while its TLS lives. */
	mli_mem_publish(t, true);
	struct reg_hold h;
	reg_take(&h);
	unlink_thread(t);
	retired_count += mli_thread_count(t);
	reg_give(&h);
	mli_thread_retire(t);
	t->state = MLI_T_DEAD;
	/* From now on every allocation of this thread takes the slow path, which
	 * for a dead thread only counts. */
	t->count = mli_thread_count(t);
	t->grant = t->left = t->refund = 0;
	mli_engine_leave(t);
}

static void make_exit_key(void)
{
	int expect = 0;
	if (__atomic_compare_exchange_n(&exit_key_state, &expect, 1, false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		/* pthread_key_create does not allocate in glibc. */
		if (pthread_key_create(&exit_key, thread_exit) == 0)
			__atomic_store_n(&exit_key_state, 2, __ATOMIC_RELEASE);
		else
			__atomic_store_n(&exit_key_state, 0, __ATOMIC_RELEASE);
	}
	while (__atomic_load_n(&exit_key_state, __ATOMIC_ACQUIRE) == 1)
		sched_yield();
}

void mli_thread_attach(struct mli_thread *t)
{
	make_exit_key();
	struct reg_hold h;
	reg_take(&h);
	t->id = ++next_id;
	t->prev = NULL;
	t->next = reg_head;
	if (reg_head)
		reg_head->prev = t;
	reg_head = t;
	__atomic_store_n(&mli_reg_n, mli_reg_n + 1, __ATOMIC_RELAXED);
	reg_give(&h);
	mli_mem_thread_attach(t);
	t->state = MLI_T_LIVE;
	if (__atomic_load_n(&exit_key_state, __ATOMIC_ACQUIRE) == 2)
		pthread_setspecific(exit_key, t);
}

void mli_for_each_thread_if(void (*fn)(struct mli_thread *t, void *arg),
			    void *arg, uint64_t *gen, uint64_t seen)
{
	struct reg_hold h;
	reg_take(&h);
	if (__atomic_load_n(gen, __ATOMIC_RELAXED) == seen) {
		for (struct mli_thread *t = reg_head; t; t = t->next)
			fn(t, arg);
		__atomic_store_n(gen, seen + 1, __ATOMIC_RELEASE);
	}
	reg_give(&h);
}

uint64_t mli_total_allocated(void)
{
	struct reg_hold h;
	reg_take(&h);
	uint64_t n = retired_count;
	for (const struct mli_thread *t = reg_head; t; t = t->next)
		n += mli_thread_count(t);
	reg_give(&h);
	return n;
}

/* fork: the child has one thread. The others' TLS is still mapped (the
 * address space was copied) and so is the memory they allocated, which the
 * child now owns: publish their exact figures (they stay in the sum), give
 * back what their meters held, and drop them. */
static void fork_prepare(void)
{
	mli_spin_lock(&reg_lock);
}

static void fork_parent(void)
{
	mli_spin_unlock(&reg_lock);
}

static void fork_child(void)
{
	struct mli_thread *self = &mli_tls;
	struct mli_thread *t = reg_head, *next;
	reg_head = NULL;
	mli_reg_n = 0;
	for (; t; t = next) {
		next = t->next;
		if (t == self)
			continue;
		mli_mem_publish(t, true);
		retired_count += mli_thread_count(t);
		mli_eng.mem_users -= t->nglobal; /* its scopes are gone */
		mli_budget_forget(t); /* the parent's thread spends it */
		mli_thread_retire(t);
	}
	if (self->state == MLI_T_LIVE) {
		self->prev = self->next = NULL;
		reg_head = self;
		mli_reg_n = 1;
	}
	mli_spin_unlock(&reg_lock);
}

void mli_thread_init_once(void)
{
	mli_atfork(fork_prepare, fork_parent, fork_child);
}
