/* task.c: the memprof-limits API: tasks and scopes, tokens, masking, and
 * the task meter. A scope is a record on the caller's stack linked into the
 * thread's list; entering or leaving one only recomputes the thread's
 * grant, so the fast path never looks at scopes. */
#include <string.h>

#include "internal.h"
#include "mapped.h"

#define SCOPE_MAGIC 0x6d6c7363u /* "mlsc" */
/* A token task checks its token at least every TOKEN_GRANT bytes: the
 * bytes it may allocate between a token set by another thread and its
 * interrupt. */
#define TOKEN_GRANT ((uint64_t)16 << 10)
/* Version 1's ml_scope, which programs built then still pass to `enter`. */
#define SCOPE_V1_SIZE 64

_Static_assert(sizeof(struct mli_scope) <= SCOPE_V1_SIZE,
	       "a scope must fit version 1's ml_scope");
_Static_assert(sizeof(ml_scope) >= SCOPE_V1_SIZE, "ml_scope only grows");
_Static_assert(MLI_SCOPE_GLOBAL == 1 && MLI_SCOPE_ALLOC == 2 &&
		       MLI_SCOPE_TOKEN == 3,
	       "scope kinds are part of the ABI: the header's numbers");

/* ---- the task meter: the thread's scopes -------------------------------- */

/* Marks every scope of the thread whose limit the admission fires. Order
 * of the checks as in OCaml: global memory, allocations, token. */
static void check_scopes(struct mli_thread *t, struct mli_adm *a)
{
	uint64_t count = t->count;
	bool alloc = a->kind != MLI_ADM_MAP; /* mapped memory is no allocation */
	/* A request that an interrupt already refuses is made by no one: it
	 * is not weighed against the other scopes' limits (a 20 MiB request
	 * refused in an interrupted inner task fired its outer task's 10 MiB
	 * budget, of which nothing was used; a held-out check). Tokens are
	 * still looked at: they do not depend on the request. */
	bool refused = t->nfired && !t->mask_depth;
	for (struct mli_scope *s = t->top; s; s = s->outer) {
		if (s->fired)
			continue;
		ml_status st = ML_OK;
		switch (s->kind) {
		case MLI_SCOPE_GLOBAL: {
			int64_t limit = mli_task_mem_limit();
			if (!refused && limit >= 0 && mli_mem_over(t, a, limit))
				st = ML_GLOBAL_MEMORY_LIMIT;
			break;
		}
		case MLI_SCOPE_ALLOC: {
			/* used can pass the limit without firing only through
			 * re-entrant allocations, which are never refused. */
			uint64_t used = count - s->start;
			if (!refused && alloc && (used > s->limit || a->n > s->limit - used))
				st = ML_ALLOCATION_LIMIT;
			break;
		}
		case MLI_SCOPE_TOKEN:
			/* The slot's word is the set token's, or the token was
			 * destroyed under the task (misuse: it never fires). */
			if (__atomic_load_n(s->token_word, __ATOMIC_ACQUIRE) ==
			    s->limit)
				st = ML_TOKEN_LIMIT;
			break;
		}
		if (st != ML_OK) {
			s->fired = (uint8_t)st;
			t->nfired++;
			/* Refused here (unless masked): so not made, and not
			 * weighed against the outer scopes either (an inner
			 * 1 MiB budget refusing 20 MiB fired its outer task's
			 * 10 MiB budget, of which nothing was used). */
			refused = !t->mask_depth;
		}
	}
}

static bool task_admit(struct mli_thread *t, struct mli_adm *a)
{
	if (t->top)
		check_scopes(t, a);
	return !t->nfired || t->mask_depth;
}

static void task_bound(struct mli_thread *t, struct mli_adm *a)
{
	if (t->nfired && !t->mask_depth) {
		a->wait = a->room = 0; /* every allocation to the slow path */
		return;
	}
	if (!t->top)
		return;
	uint64_t count = t->count + a->n;
	for (const struct mli_scope *s = t->top; s; s = s->outer)
		if (s->kind == MLI_SCOPE_ALLOC && !s->fired) {
			uint64_t used = count - s->start;
			uint64_t room = used < s->limit ? s->limit - used : 0;
			a->wait = mli_min(a->wait, room);
			a->room = mli_min(a->room, room);
		}
	if (t->nglobal) {
		int64_t limit = mli_task_mem_limit();
		if (limit >= 0)
			mli_mem_bound(t, a, limit);
	}
	if (t->ntoken) {
		a->wait = mli_min(a->wait, TOKEN_GRANT);
		a->room = 0; /* every byte of a token task is seen */
	}
}

const struct mli_meter mli_meter_task = {
	.name = "task",
	.kinds = MLI_ADM_ALLOC | MLI_ADM_MAP | MLI_ADM_POLL,
	.admit = task_admit,
	.bound = task_bound,
};

/* ---- the API ------------------------------------------------------------ */

static ml_status start(void)
{
	mli_engine_init();
	bool expect = false;
	return __atomic_compare_exchange_n(&mli_eng.started, &expect, true, false,
					   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
		? ML_OK : ML_INVALID;
}

/* Sets the limit of global-memory tasks. It never loosens
 * MEMLIMITS_GLOBAL_MEMORY, which stays the process's hard cap: tasks are
 * interrupted at the tighter of the two. Other threads' grants were
 * computed for the old limit; each is at most the per-thread slack the
 * README states, and their realloc headroom dies with the generation. */
static void set_global_memory_limit(int64_t bytes)
{
	mli_engine_init();
	__atomic_store_n(&mli_eng.task_limit, bytes < 0 ? -1 : bytes,
			 __ATOMIC_RELAXED);
	__atomic_add_fetch(&mli_eng.limits_gen, 1, __ATOMIC_RELEASE);
	mli_refill(&mli_tls);
}

static int64_t global_memory_limit(void)
{
	mli_engine_init();
	return mli_task_mem_limit();
}

static ml_status enter_sized(ml_scope *pub, size_t size, int kind,
			     uint64_t limit, ml_token *tok)
{
	struct mli_scope *s = (struct mli_scope *)pub;
	if (!s || size < sizeof *s || kind < MLI_SCOPE_GLOBAL ||
	    kind > MLI_SCOPE_TOKEN)
		return ML_INVALID;
	if (kind == MLI_SCOPE_ALLOC && limit > ML_MAX_ALLOCATION_LIMIT)
		return ML_INVALID;
	uint64_t set_value = 0;
	const uint64_t *word = NULL;
	if (kind == MLI_SCOPE_TOKEN &&
	    !(word = mli_token_word(tok, &set_value)))
		return ML_INVALID;
	mli_engine_init();
	if (!__atomic_load_n(&mli_eng.started, __ATOMIC_ACQUIRE))
		return ML_NOT_STARTED;
	struct mli_thread *t = &mli_tls;
	mli_thread_start();
	if (t->state != MLI_T_LIVE)
		return ML_INVALID;
	for (const struct mli_scope *o = t->top; o; o = o->outer)
		if (o == s)
			return ML_INVALID; /* this storage is in use by an entered scope */
	mli_engine_enter(t); /* a handler's allocation must not see it half-built */
	memset(s, 0, sizeof *s);
	s->magic = SCOPE_MAGIC;
	s->kind = (uint8_t)kind;
	s->outer = t->top;
	s->owner = t;
	s->mask_at = t->mask_depth;
	s->depth = t->depth + 1;
	if (s->depth <= MLI_SCOPE_SLOTS)
		t->at_depth[s->depth - 1] = s;
	s->start = mli_thread_count(t);
	s->limit = kind == MLI_SCOPE_TOKEN ? set_value : limit;
	s->token = tok;
	s->token_word = word;
	if (kind == MLI_SCOPE_GLOBAL) {
		t->nglobal++;
		__atomic_add_fetch(&mli_eng.mem_users, 1, __ATOMIC_RELAXED);
	}
	if (kind == MLI_SCOPE_TOKEN) {
		t->ntoken++;
		/* A token set before the task starts interrupts it at once. */
		if (mli_token_is_set(tok)) {
			s->fired = ML_TOKEN_LIMIT;
			t->nfired++;
		}
	}
	t->top = s;
	t->depth = s->depth;
	mli_engine_leave(t);
	mli_refill(t);
	return ML_OK;
}

static ml_status enter(ml_scope *pub, int kind, uint64_t limit, ml_token *tok)
{
	return enter_sized(pub, SCOPE_V1_SIZE, kind, limit, tok);
}

/* The status a scope reports: its own limit if it fired, else that of the
 * nearest enclosing scope that fired (the scope was cut short), else OK. */
static ml_status scope_status(const struct mli_scope *s)
{
	for (; s; s = s->outer)
		if (s->fired)
			return (ml_status)s->fired;
	return ML_OK;
}

static ml_status leave(ml_scope *pub, uint64_t *allocated)
{
	struct mli_scope *s = (struct mli_scope *)pub;
	struct mli_thread *t = &mli_tls;
	if (!s || s->magic != SCOPE_MAGIC || s->owner != t || t->top != s)
		return ML_INVALID;
	mli_engine_enter(t);
	if (allocated)
		*allocated = mli_thread_count(t) - s->start;
	ml_status st = scope_status(s);
	t->top = s->outer;
	t->depth = s->depth - 1;
	if (s->fired)
		t->nfired--;
	if (s->kind == MLI_SCOPE_GLOBAL) {
		t->nglobal--;
		__atomic_sub_fetch(&mli_eng.mem_users, 1, __ATOMIC_RELAXED);
	}
	if (s->kind == MLI_SCOPE_TOKEN)
		t->ntoken--;
	s->magic = 0;
	mli_engine_leave(t);
	mli_refill(t);
	return st;
}

/* A longjmp whose target's stack pointer is `hi` discards the stack
 * below it (preload/longjmp.c): the thread's scopes that lie in [lo, hi)
 * are left, innermost first, their status lost with the frames. Not from
 * a signal handler that interrupted the engine: its state is the
 * interrupted code's, and a jump out of it is undefined anyway. */
/* Masks are dynamic extents: once the code that masked is gone (a task
 * returned, a jump discarded its frames), the thread's mask depth is the
 * one its scope started with. A jump out of a masked block (the alarm-
 * timeout pattern, out of ml_with_resource's acquire) left the thread
 * masked for good, and no later task's limit refused anything (a held-out
 * check); so did a task that returned with an ml_mask() not undone. */
static void unmask_to(struct mli_thread *t, uint32_t depth)
{
	if (t->mask_depth > depth) {
		t->mask_depth = depth;
		if (!depth && t->nfired)
			mli_refill(t); /* the pending interrupt: grant 0 */
	}
}

static bool in_discarded(const struct mli_discard *d, uintptr_t p)
{
	return (p >= d->lo && p < d->hi) || (p >= d->alo && p < d->ahi);
}

/* A mask goes with the frames below the jump's target; one taken in the
 * target's own frame stays (ML_MASKED_BLOCK, then setjmp, then a jump
 * back: the mask was undone when its frame's stack pointer counted as
 * discarded; telling the code order apart by return addresses failed at
 * gcc -O2, which moves the call: held-out checks). ml_with_resource is
 * never inlined, so its masks are its own frame's. */
static bool mask_discarded(const struct mli_discard *d, uintptr_t sp)
{
	return in_discarded(d, sp);
}

void mli_scopes_discarded(const struct mli_discard *d)
{
	struct mli_thread *t = &mli_tls;
	if (t->in_engine)
		return;
	struct mli_scope *s;
	bool left = false;
	uint32_t depth = 0;
	while ((s = t->top) && in_discarded(d, (uintptr_t)s)) {
		uint32_t at = s->mask_at;
		if (leave((ml_scope *)s, NULL) == ML_INVALID)
			break;
		left = true;
		depth = at;
	}
	if (!left)
		depth = t->mask_depth;
	if (!t->top)
		t->task_depth = 0; /* a jump out of every task */
	/* Then the masks taken in the discarded frames outside any scope (a
	 * jump out of ml_with_resource's acquire to a setjmp made outside any
	 * task left the thread masked for good: a held-out check). A mask
	 * deeper than MLI_MASK_FRAMES has no position, and stays. */
	/* Masks deeper than MLI_MASK_FRAMES have no position: they were taken
	 * after the last one that has, so they go if it goes (none went:
	 * a held-out check). */
	if (depth > MLI_MASK_FRAMES &&
	    mask_discarded(d, t->mask_sp[MLI_MASK_FRAMES - 1]))
		depth = MLI_MASK_FRAMES;
	while (depth && depth <= MLI_MASK_FRAMES &&
	       mask_discarded(d, t->mask_sp[depth - 1]))
		depth--;
	unmask_to(t, depth);
}

/* The scopes a task entered and did not leave, when it returns (an error
 * path that forgot ml_leave): the task's own scope stayed linked under
 * them after the task function's frame was gone, later tasks at the same
 * depth were refused as "in use" and the next slow path read the dead
 * frame and crashed (a held-out check). They are dropped: the thread's
 * list goes back to the task's scope, and its counts are recounted from
 * there outward, without reading the dropped scopes, which lie in dead
 * frames a signal handler may have reused. Their storage keeps its magic:
 * a later ml_leave of one finds it not the innermost (ML_INVALID). True if
 * there were any. */
static bool drop_left_open(struct mli_thread *t, struct mli_scope *sc)
{
	if (t->top == sc || sc->magic != SCOPE_MAGIC || sc->owner != t)
		return false;
	uint32_t nglobal = 0, ntoken = 0, nfired = 0;
	mli_engine_enter(t);
	for (const struct mli_scope *s = sc; s; s = s->outer) {
		nglobal += s->kind == MLI_SCOPE_GLOBAL;
		ntoken += s->kind == MLI_SCOPE_TOKEN;
		nfired += s->fired != 0;
	}
	__atomic_sub_fetch(&mli_eng.mem_users, t->nglobal - nglobal, __ATOMIC_RELAXED);
	t->nglobal = nglobal;
	t->ntoken = ntoken;
	t->nfired = nfired;
	t->top = sc;
	t->depth = sc->depth;
	mli_engine_leave(t);
	return true;
}

/* A C++ exception or a thread cancellation that unwinds through a task
 * leaves its scope (this file is built with -fexceptions); the status is
 * lost with the exception. */
static void leave_if_unwound(ml_scope *pub)
{
	struct mli_scope *s = (struct mli_scope *)pub;
	struct mli_thread *t = &mli_tls;
	if (s->magic != SCOPE_MAGIC || s->owner != t)
		return; /* left, or never entered */
	drop_left_open(t, s);
	unmask_to(t, s->mask_at);
	leave(pub, NULL);
}

/* The thread's innermost running task, put back when one ends, also by an
 * exception or a cancellation unwinding through it. */
static void task_over(uint32_t *outer)
{
	mli_tls.task_depth = *outer;
}

static ml_status run(int kind, uint64_t limit, ml_token *tok, ml_task_fn task,
		     void *arg, void **result, uint64_t *allocated)
{
	if (!task)
		return ML_INVALID;
	ml_scope sc __attribute__((cleanup(leave_if_unwound)));
	memset(&sc, 0, sizeof sc);
	ml_status st = enter_sized(&sc, sizeof sc, kind, limit, tok);
	if (st != ML_OK)
		return st;
	struct mli_thread *t = &mli_tls;
	struct mli_scope *in = (struct mli_scope *)(void *)&sc;
	uint32_t outer_task __attribute__((cleanup(task_over))) = t->task_depth;
	t->task_depth = in->depth;
	void *r = task(arg);
	if (result)
		*result = r;
	bool open = drop_left_open(t, in);
	unmask_to(t, in->mask_at);
	st = leave(&sc, allocated);
	return open ? ML_INVALID : st;
}

/* ml_leave_all: s's storage is about to end (a C++ scoped limit's
 * destructor) while scopes entered inside it may still be open (an error
 * path that forgot ml_leave): they are dropped as a task drops them when it
 * returns, masks taken inside s are undone, and s is left. The scopes on
 * the list inside s are not read (they may lie in dead frames): s is on
 * the list if the thread's slot for its depth holds it (a scope dropped
 * earlier keeps its magic, and was taken back into the list: a held-out
 * check; an address test refused two scopes of one frame). Deeper than
 * MLI_SCOPE_SLOTS, ML_INVALID and nothing done. */
static ml_status leave_all(ml_scope *pub, uint64_t *allocated)
{
	struct mli_scope *s = (struct mli_scope *)pub;
	struct mli_thread *t = &mli_tls;
	if (!s || s->magic != SCOPE_MAGIC || s->owner != t || !s->depth ||
	    s->depth > t->depth || s->depth > MLI_SCOPE_SLOTS ||
	    t->at_depth[s->depth - 1] != s)
		return ML_INVALID;
	/* Not past a running task's own scope (ml_leave_all of an outer scope
	 * from inside a task dropped the task's, and the task's return then
	 * linked the left scope back: a crash, a held-out check). */
	if (t->task_depth > s->depth)
		return ML_INVALID;
	bool open = drop_left_open(t, s);
	unmask_to(t, s->mask_at);
	ml_status st = leave(pub, allocated);
	return open ? ML_INVALID : st;
}

static ml_status limit_global_memory(ml_task_fn task, void *arg, void **result)
{
	return run(MLI_SCOPE_GLOBAL, 0, NULL, task, arg, result, NULL);
}

static ml_status limit_allocations(uint64_t limit, ml_task_fn task, void *arg,
				   void **result, uint64_t *allocated)
{
	return run(MLI_SCOPE_ALLOC, limit, NULL, task, arg, result, allocated);
}

static ml_status limit_with_token(ml_token *tok, ml_task_fn task, void *arg,
				  void **result)
{
	return run(MLI_SCOPE_TOKEN, 0, tok, task, arg, result, NULL);
}

static ml_token *token_create(void)
{
	mli_engine_init();
	return mli_token_create();
}

/* A lock-free store, safe from a signal handler. Threads under the token
 * notice it at their next slow path (a token task's grant is at most
 * TOKEN_GRANT bytes); the calling thread, if it is under a token, at its
 * very next allocation: this is what makes a token set from a signal handler
 * (or from the task itself) interrupt the next allocation. */
static void token_set(ml_token *tok)
{
	mli_token_set(tok);
	struct mli_thread *self = &mli_tls;
	if (self->ntoken)
		mli_poke(self);
}

static bool token_is_set(const ml_token *tok)
{
	return mli_token_is_set(tok);
}

static bool is_interrupted(void)
{
	return mli_tls.nfired > 0;
}

static void mask(void)
{
	/* The caller's stack pointer (ml_mask is always inlined there): a
	 * jump to a setjmp in the same function keeps the mask. */
	mli_mask(&mli_tls, MLI_CALLER_SP());
}

static void unmask(void)
{
	struct mli_thread *t = &mli_tls;
	if (t->mask_depth && --t->mask_depth == 0 && t->nfired)
		mli_refill(t); /* the pending interrupt: grant 0 */
}

static bool is_blocked(void)
{
	return mli_tls.mask_depth > 0;
}

static ml_status poll(void)
{
	struct mli_thread *t = &mli_tls;
	if (t->state != MLI_T_LIVE || !t->top)
		return ML_OK;
	mli_check_now(t);
	return t->mask_depth ? ML_OK : scope_status(t->top);
}

static int trim(void)
{
	return mli_be_trim();
}

/* Fills as much of *out as the caller's header knows (size): a program
 * built against the first version passes the four fields it had. */
static ml_status stats(struct ml_stats *out, size_t size)
{
	if (!out || size < offsetof(struct ml_stats, allocator_bytes))
		return ML_INVALID;
	mli_engine_init();
	mli_thread_start();
	struct ml_stats s;
	s.live_bytes = mli_heap_exact();
	s.peak_bytes = mli_mem_peak();
	s.thread_allocated = mli_thread_count(&mli_tls);
	s.process_allocated = mli_total_allocated();
	s.allocator_bytes = mli_be_stats_allocated();
	s.mapped_bytes = mli_mapped_bytes();
	memcpy(out, &s, size < sizeof s ? size : sizeof s);
	return ML_OK;
}

static const struct ml_api api = {
	.version = ML_ABI_VERSION,
	.size = sizeof(struct ml_api),
	.start = start,
	.set_global_memory_limit = set_global_memory_limit,
	.global_memory_limit = global_memory_limit,
	.limit_global_memory = limit_global_memory,
	.limit_allocations = limit_allocations,
	.token_create = token_create,
	.token_set = token_set,
	.token_is_set = token_is_set,
	.token_destroy = mli_token_destroy,
	.limit_with_token = limit_with_token,
	.is_interrupted = is_interrupted,
	.mask = mask,
	.unmask = unmask,
	.is_blocked = is_blocked,
	.enter = enter,
	.leave = leave,
	.poll = poll,
	.trim = trim,
	.stats = stats,
	.memprof_start = mli_prof_start,
	.memprof_stop = mli_prof_stop,
	.enter_sized = enter_sized,
	.on_memory_pressure = mli_soft_watch,
	.leave_all = leave_all,
};

__attribute__((visibility("default"))) const struct ml_api *
ml_engine(uint32_t abi_version)
{
	return abi_version >= 1 ? &api : NULL;
}
