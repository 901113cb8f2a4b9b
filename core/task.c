/* task.c: the memprof-limits API: tasks and scopes, tokens, masking. A scope
 * is a record on the caller's stack linked into the thread's list; entering
 * or leaving one only recomputes the thread's grant, so the fast path never
 * looks at scopes. */
#include <string.h>

#include "internal.h"
#include "mapped.h"

#define SCOPE_MAGIC 0x6d6c7363u /* "mlsc" */
#define TOKEN_MAGIC 0x6d6c746bu /* "mltk" */

_Static_assert(sizeof(struct mli_scope) <= sizeof(ml_scope),
	       "ml_scope must hold the engine's scope record");

static ml_status start(void)
{
	mli_engine_init();
	bool expect = false;
	return __atomic_compare_exchange_n(&mli_eng.started, &expect, true, false,
					   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
		? ML_OK : ML_INVALID;
}

static void set_global_memory_limit(int64_t bytes)
{
	mli_engine_init();
	__atomic_store_n(&mli_eng.global_limit, bytes < 0 ? -1 : bytes,
			 __ATOMIC_RELAXED);
	mli_refill(&mli_tls);
}

static int64_t global_memory_limit(void)
{
	mli_engine_init();
	return __atomic_load_n(&mli_eng.global_limit, __ATOMIC_RELAXED);
}

static ml_status enter(ml_scope *pub, int kind, uint64_t limit, ml_token *tok)
{
	struct mli_scope *s = (struct mli_scope *)pub;
	if (!s || kind < MLI_SCOPE_GLOBAL || kind > MLI_SCOPE_TOKEN)
		return ML_INVALID;
	if (kind == MLI_SCOPE_ALLOC && limit > ML_MAX_ALLOCATION_LIMIT)
		return ML_INVALID;
	if (kind == MLI_SCOPE_TOKEN && (!tok || tok->magic != TOKEN_MAGIC))
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
	s->start = mli_thread_count(t);
	s->limit = limit;
	s->token = tok;
	if (kind == MLI_SCOPE_GLOBAL)
		t->nglobal++;
	if (kind == MLI_SCOPE_TOKEN) {
		t->ntoken++;
		/* A token set before the task starts interrupts it at once. */
		if (__atomic_load_n(&tok->set, __ATOMIC_ACQUIRE)) {
			s->fired = ML_TOKEN_LIMIT;
			t->nfired++;
		}
	}
	t->top = s;
	mli_engine_leave(t);
	mli_refill(t);
	return ML_OK;
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
	if (s->fired)
		t->nfired--;
	if (s->kind == MLI_SCOPE_GLOBAL)
		t->nglobal--;
	if (s->kind == MLI_SCOPE_TOKEN)
		t->ntoken--;
	s->magic = 0;
	mli_engine_leave(t);
	mli_refill(t);
	return st;
}

/* A C++ exception or a thread cancellation that unwinds through a task
 * leaves its scope (this file is built with -fexceptions); the status is
 * lost with the exception. */
static void leave_if_unwound(ml_scope *pub)
{
	struct mli_scope *s = (struct mli_scope *)pub;
	if (s->magic == SCOPE_MAGIC && mli_tls.top == s)
		leave(pub, NULL);
}

static ml_status run(int kind, uint64_t limit, ml_token *tok, ml_task_fn task,
		     void *arg, void **result, uint64_t *allocated)
{
	if (!task)
		return ML_INVALID;
	ml_scope sc __attribute__((cleanup(leave_if_unwound)));
	memset(&sc, 0, sizeof sc);
	ml_status st = enter(&sc, kind, limit, tok);
	if (st != ML_OK)
		return st;
	void *r = task(arg);
	if (result)
		*result = r;
	return leave(&sc, allocated);
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

/* Tokens come from the allocator directly: creating one is the engine's
 * business and must not be refused by the caller's own limits. */
static ml_token *token_create(void)
{
	ml_token *t = mli_be_malloc(sizeof *t);
	if (t) {
		t->magic = TOKEN_MAGIC;
		t->set = 0;
		MLI_ANNOTATE_ATOMIC(&t->set);
	}
	return t;
}

/* A lock-free store, safe from a signal handler. Threads under the token
 * notice it at their next slow path (a token task's grant is at most
 * TOKEN_GRANT bytes); the calling thread, if it is under a token, at its
 * very next allocation: this is what makes a token set from a signal handler
 * (or from the task itself) interrupt the next allocation. */
static void token_set(ml_token *t)
{
	if (!t)
		return;
	__atomic_store_n(&t->set, 1, __ATOMIC_RELEASE);
	struct mli_thread *self = &mli_tls;
	if (self->ntoken && !self->in_engine)
		mli_cut_grant(self);
}

static bool token_is_set(const ml_token *t)
{
	return t && __atomic_load_n(&t->set, __ATOMIC_ACQUIRE);
}

static void token_destroy(ml_token *t)
{
	if (t && t->magic == TOKEN_MAGIC) {
		t->magic = 0;
		mli_be_free(t);
	}
}

static bool is_interrupted(void)
{
	return mli_tls.nfired > 0;
}

static void mask(void)
{
	mli_tls.mask_depth++;
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
	s.live_bytes = mli_live_heap(NULL);
	s.peak_bytes = mli_peak_heap();
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
	.token_destroy = token_destroy,
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
};

__attribute__((visibility("default"))) const struct ml_api *
ml_engine(uint32_t abi_version)
{
	return abi_version >= 1 ? &api : NULL;
}
