/* unit_engine: the engine (core/) linked directly, over a fake backend, so
 * that its logic runs without the preload, and under ThreadSanitizer and
 * UndefinedBehaviorSanitizer (make test-sanitize). An "allocation" here is
 * fake_alloc(n): the engine's admission, then the fake backend's counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

/* ---- the fake backend: usable size == requested size ------------------ */
static __thread uint64_t fake_allocated, fake_deallocated;
/* Its activity callback, run every 64 KiB of allocation and of
 * deallocation, as jemalloc's. */
static __thread void (*watch_fn)(void *, uint64_t, uint64_t);
static __thread void *watch_arg;
static __thread uint64_t watch_alloc_next, watch_dealloc_next;
#define WATCH_WAIT (64 << 10)

void mli_be_thread_counters(const uint64_t **alloc, const uint64_t **dealloc)
{
	*alloc = &fake_allocated;
	*dealloc = &fake_deallocated;
}

bool mli_be_thread_watch(void (*fn)(void *, uint64_t, uint64_t), void *arg)
{
	watch_fn = fn;
	watch_arg = arg;
	watch_alloc_next = fake_allocated + WATCH_WAIT;
	watch_dealloc_next = fake_deallocated + WATCH_WAIT;
	return true;
}

static void watch(void)
{
	if (!watch_fn)
		return;
	if (fake_allocated >= watch_alloc_next) {
		watch_alloc_next = fake_allocated + WATCH_WAIT;
		watch_fn(watch_arg, fake_allocated, fake_deallocated);
	}
	if (fake_deallocated >= watch_dealloc_next) {
		watch_dealloc_next = fake_deallocated + WATCH_WAIT;
		watch_fn(watch_arg, fake_allocated, fake_deallocated);
	}
}
void *mli_be_malloc(size_t n) { return malloc(n); }
int mli_be_foreign_malloc(const char **path) { *path = ""; return MLI_MALLOC_OURS; }
void mli_be_free(void *p) { free(p); }
int64_t mli_be_own_live(void) { return 0; }
int mli_be_trim(void) { return 0; }
void mli_be_flush_cache(void) {}
void mli_be_init(int64_t mem_limit) { (void)mem_limit; }
uint64_t mli_be_nrequests(void) { return 0; }
int64_t mli_be_stats_allocated(void) { return -1; }
size_t mli_be_usable_size(const void *p) { return 0; }
size_t mli_be_block_size(size_t n) { return n; }
uint64_t mli_be_tick_owed;
int64_t mli_be_unused(void) { return -1; }
void mli_be_tick(void) {}
/* No profiler here: no region for sampled blocks (core/region.h). */
bool mli_be_free_tracking(void) { return false; }
int mli_be_sample_init(void) { return -1; }
void *mli_be_sample_alloc(size_t n, size_t a, bool z, struct mli_sampled **r) { return NULL; }
struct mli_sampled *mli_be_sample_record(const void *p) { return NULL; }
size_t mli_be_sample_size(const void *p) { return 0; }
bool mli_be_sample_resize(void *p, size_t n, int f) { return false; }
int64_t mli_be_sample_live(void) { return 0; }
void mli_be_sample_fork(int phase) {}

/* The bytes are counted as the real backend does, with relaxed atomics so
 * that the engine's cross-thread reads are race-free under TSan. */
static bool fake_alloc(size_t n)
{
	MLI_ANNOTATE_ATOMIC(&fake_allocated); /* atomics: see the engine's */
	MLI_ANNOTATE_ATOMIC(&fake_deallocated);
	if (!mli_admit(n))
		return false;
	__atomic_fetch_add(&fake_allocated, n, __ATOMIC_RELAXED);
	watch();
	return true;
}

static void fake_free(size_t n)
{
	__atomic_fetch_add(&fake_deallocated, n, __ATOMIC_RELAXED);
	watch();
}

static const struct ml_api *api;

static int setup(void **state)
{
	api = ml_engine(ML_ABI_VERSION);
	if (!api)
		return -1;
	ml_status st = api->start();
	return st == ML_OK || st == ML_INVALID ? 0 : -1;
}

static void exact_counts(void **state)
{
	uint64_t before = mli_thread_count(&mli_tls);
	uint64_t sum = 0;
	for (size_t n = 0; n < 5000; n++) {
		assert_true(fake_alloc(n * 7 + 1));
		sum += n * 7 + 1;
	}
	assert_int_equal(mli_thread_count(&mli_tls) - before, sum);
}

/* Bytes given back to the grant where `left` could not take them (a
 * signal handler cut it to 0 after the take) wait in `refund`, and the
 * next slow path folds them out of the count. A take never leaves 0
 * itself: the fast path admits n only while left > n, so that a cut grant
 * stops even a zero-byte request (test_meters zero_byte_blocks_refused). */
static void refund_is_folded(void **state)
{
	assert_true(fake_alloc(1)); /* the thread has a grant */
	uint64_t before = mli_thread_count(&mli_tls);
	uint64_t after, left = mli_tls.left;
	assert_true(left > 101);
	/* All of it: not admitted, and given back where 0 is left. */
	assert_false(mli_take(left, &after));
	assert_int_equal(mli_tls.left, 0);
	assert_int_equal(mli_tls.refund, left);
	assert_int_equal(mli_thread_count(&mli_tls) - before, 0);
	assert_true(fake_alloc(1)); /* the slow path folds, and refills */
	assert_int_equal(mli_tls.refund, 0);
	assert_int_equal(mli_thread_count(&mli_tls) - before, 1);
	before = mli_thread_count(&mli_tls);
	left = mli_tls.left;
	assert_true(left > 101);
	assert_true(mli_take(left - 1, &after));
	assert_int_equal(after, 1);
	mli_poke(&mli_tls); /* the handler's cut */
	assert_int_equal(mli_tls.left, 0);
	mli_give_back(left - 101, after);
	assert_int_equal(mli_tls.refund, left - 101);
	assert_int_equal(mli_thread_count(&mli_tls) - before, 100);
	assert_true(fake_alloc(5)); /* left is 0: the slow path folds */
	assert_int_equal(mli_tls.refund, 0);
	assert_int_equal(mli_thread_count(&mli_tls) - before, 105);
}

static void alloc_limit_fires_at_crossing(void **state)
{
	ml_scope s;
	assert_int_equal(api->enter(&s, MLI_SCOPE_ALLOC, 1000, NULL), ML_OK);
	assert_true(fake_alloc(600));
	assert_true(fake_alloc(400)); /* exactly at the limit */
	assert_false(api->is_interrupted());
	assert_false(fake_alloc(1));
	assert_true(api->is_interrupted());
	assert_false(fake_alloc(1)); /* sticky until the task returns */
	uint64_t used = 0;
	assert_int_equal(api->leave(&s, &used), ML_ALLOCATION_LIMIT);
	assert_int_equal(used, 1000);
	assert_false(api->is_interrupted());
	assert_true(fake_alloc(1));
}

static void nested_outer_exhausted_from_inside(void **state)
{
	ml_scope outer, inner;
	assert_int_equal(api->enter(&outer, MLI_SCOPE_ALLOC, 10000, NULL), ML_OK);
	assert_true(fake_alloc(9000));
	assert_int_equal(api->enter(&inner, MLI_SCOPE_ALLOC, 1 << 20, NULL), ML_OK);
	assert_true(fake_alloc(1000));
	assert_false(fake_alloc(1));
	assert_int_equal(api->leave(&inner, NULL), ML_ALLOCATION_LIMIT);
	assert_true(api->is_interrupted()); /* the outer task is interrupted too */
	assert_int_equal(api->leave(&outer, NULL), ML_ALLOCATION_LIMIT);
	assert_false(api->is_interrupted());
}

static void nested_inner_own_limit(void **state)
{
	ml_scope outer, inner;
	assert_int_equal(api->enter(&outer, MLI_SCOPE_ALLOC, 10000, NULL), ML_OK);
	assert_int_equal(api->enter(&inner, MLI_SCOPE_ALLOC, 100, NULL), ML_OK);
	assert_false(fake_alloc(101));
	assert_int_equal(api->leave(&inner, NULL), ML_ALLOCATION_LIMIT);
	assert_false(api->is_interrupted());
	assert_true(fake_alloc(5000));
	assert_int_equal(api->leave(&outer, NULL), ML_OK);
}

static void masking_defers_the_interrupt(void **state)
{
	ml_scope s;
	assert_int_equal(api->enter(&s, MLI_SCOPE_ALLOC, 100, NULL), ML_OK);
	api->mask();
	api->mask();
	assert_true(fake_alloc(500)); /* over the limit, but masked */
	api->unmask();
	assert_true(api->is_blocked());
	assert_true(fake_alloc(10)); /* still masked */
	api->unmask();
	assert_false(api->is_blocked());
	assert_false(fake_alloc(1)); /* the pending interrupt */
	uint64_t used;
	assert_int_equal(api->leave(&s, &used), ML_ALLOCATION_LIMIT);
	assert_int_equal(used, 510); /* masked allocations are counted */
}

static void scopes_left_out_of_order(void **state)
{
	ml_scope a, b;
	assert_int_equal(api->enter(&a, MLI_SCOPE_ALLOC, 100, NULL), ML_OK);
	assert_int_equal(api->enter(&b, MLI_SCOPE_ALLOC, 100, NULL), ML_OK);
	assert_int_equal(api->leave(&a, NULL), ML_INVALID);
	assert_int_equal(api->leave(&b, NULL), ML_OK);
	assert_int_equal(api->leave(&b, NULL), ML_INVALID);
	assert_int_equal(api->leave(&a, NULL), ML_OK);
	assert_int_equal(api->enter(&a, MLI_SCOPE_ALLOC, ML_MAX_ALLOCATION_LIMIT + 1, NULL),
			 ML_INVALID);
	assert_int_equal(api->enter(NULL, MLI_SCOPE_ALLOC, 1, NULL), ML_INVALID);
}

struct setter {
	ml_token *tok;
	volatile int go;
};

static void *set_later(void *p)
{
	struct setter *s = p;
	MLI_ANNOTATE_ATOMIC(&s->go);
	while (!__atomic_load_n(&s->go, __ATOMIC_ACQUIRE))
		;
	api->token_set(s->tok);
	return NULL;
}

static void token_from_another_thread(void **state)
{
	struct setter st = { api->token_create(), 0 };
	assert_non_null(st.tok);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, set_later, &st), 0);
	ml_scope s;
	assert_int_equal(api->enter(&s, MLI_SCOPE_TOKEN, 0, st.tok), ML_OK);
	long i;
	for (i = 0; i < 100000000; i++) {
		if (i == 1000)
			__atomic_store_n(&st.go, 1, __ATOMIC_RELEASE);
		if (!fake_alloc(64))
			break;
		fake_free(64);
	}
	assert_true(i < 100000000);
	assert_int_equal(api->leave(&s, NULL), ML_TOKEN_LIMIT);
	pthread_join(th, NULL);
	api->token_destroy(st.tok);
}

static void global_limit_with_fake_heap(void **state)
{
	int64_t live = mli_heap_exact();
	api->set_global_memory_limit(live + 100000);
	ml_scope s;
	assert_int_equal(api->enter(&s, MLI_SCOPE_GLOBAL, 0, NULL), ML_OK);
	uint64_t got = 0;
	while (fake_alloc(1000))
		got += 1000;
	/* Single thread: exact up to one block. */
	assert_true(got >= 99000 && got <= 100000);
	assert_int_equal(api->leave(&s, NULL), ML_GLOBAL_MEMORY_LIMIT);
	fake_free(got);
	assert_int_equal(api->enter(&s, MLI_SCOPE_GLOBAL, 0, NULL), ML_OK);
	assert_true(fake_alloc(50000));
	assert_int_equal(api->leave(&s, NULL), ML_OK);
	fake_free(50000);
	api->set_global_memory_limit(-1);
	assert_int_equal(api->global_memory_limit(), -1);
}

/* Threads that allocate, free part, and exit: the live heap keeps what
 * they left behind. */
static void *leave_behind(void *p)
{
	for (int i = 0; i < 1000; i++)
		fake_alloc(100);
	fake_free(40000);
	return p;
}

static void dead_threads_counts_kept(void **state)
{
	int64_t before = mli_heap_exact();
	uint64_t total_before = mli_total_allocated();
	pthread_t th[8];
	for (int i = 0; i < 8; i++)
		assert_int_equal(pthread_create(&th[i], NULL, leave_behind, NULL), 0);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(mli_heap_exact() - before, 8 * 60000);
	assert_int_equal(mli_total_allocated() - total_before, 8 * 100000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exact_counts),
		cmocka_unit_test(refund_is_folded),
		cmocka_unit_test(alloc_limit_fires_at_crossing),
		cmocka_unit_test(nested_outer_exhausted_from_inside),
		cmocka_unit_test(nested_inner_own_limit),
		cmocka_unit_test(masking_defers_the_interrupt),
		cmocka_unit_test(scopes_left_out_of_order),
		cmocka_unit_test(token_from_another_thread),
		cmocka_unit_test(global_limit_with_fake_heap),
		cmocka_unit_test(dead_threads_counts_kept),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
