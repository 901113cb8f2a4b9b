/* use_c.c: calls every function and macro of memlimits.h, so that
 * tests/headers.sh can compile the header as strict C99 and C11, included
 * before and after <dlfcn.h> (ML_DLFCN_FIRST). Run, it checks the neutral
 * values without the preload and the working engine with it, and prints
 * "loaded: ok" or "not loaded: ok"; exit 0 iff every check held. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef ML_DLFCN_FIRST
#include <dlfcn.h>
#include "shim/memlimits.h"
#else
#include "shim/memlimits.h"
#include <dlfcn.h>
#endif

static int failures;
#define CHECK(c)                                                       \
	do {                                                           \
		if (!(c)) {                                            \
			printf("%s:%d: check failed: %s\n", __FILE__,  \
			       __LINE__, #c);                          \
			failures++;                                    \
		}                                                      \
	} while (0)

static void *task(void *arg)
{
	free(malloc(16));
	return arg;
}

static void *acquire(void *arg)
{
	return arg;
}

static void *use(void *resource, void *arg)
{
	(void)arg;
	return resource;
}

static void release(void *resource, void *arg)
{
	(void)resource;
	(void)arg;
}

static void free_block(void *p)
{
	free(p);
}
ML_DEFINE_RELEASE(release_block, void *, free_block)

static void *track(const ml_sample *s, void *data)
{
	(void)s;
	return data;
}

static void untrack(void *cookie, void *data)
{
	(void)cookie;
	(void)data;
}

int main(void)
{
	int x = 1;
	void *result = NULL;
	uint64_t used = 0;
	bool loaded = ml_loaded();
	ml_status want = loaded ? ML_OK : ML_NOT_LOADED;
	ml_status st = ml_start();
	CHECK(loaded ? (st == ML_OK || st == ML_INVALID) : st == ML_NOT_LOADED);
	CHECK(ml_status_string(ML_TOKEN_LIMIT) != NULL);

	ml_set_global_memory_limit(-1);
	CHECK(ml_global_memory_limit() == -1);
	CHECK(ml_limit_global_memory(task, &x, &result) == want);
	CHECK(ml_limit_allocations(ML_MAX_ALLOCATION_LIMIT, task, &x, &result,
				   &used) == want);
	CHECK(!loaded || (result == &x && used == 16));

	ml_token *t = ml_token_create();
	CHECK(loaded == (t != NULL));
	CHECK(!ml_token_is_set(t));
	CHECK(ml_limit_with_token(t, task, &x, NULL) == (loaded ? ML_OK : ML_NOT_LOADED));
	ml_token_set(t);
	CHECK(ml_token_is_set(t) == loaded);

	ml_scope g, a, k;
	CHECK(ml_enter_global_memory(&g) == want);
	CHECK(ml_enter_allocations(&a, 1 << 20) == want);
	CHECK(ml_enter_token(&k, t) == want);
	/* The token was set before: the scope is interrupted at once. */
	CHECK(ml_is_interrupted() == loaded);
	CHECK(ml_poll() == (loaded ? ML_TOKEN_LIMIT : ML_NOT_LOADED));
	if (loaded) {
		CHECK(ml_leave(&k, NULL) == ML_TOKEN_LIMIT);
		CHECK(ml_leave(&a, &used) == ML_OK);
		CHECK(ml_leave(&g, NULL) == ML_OK);
	} else {
		CHECK(ml_leave(&k, NULL) == ML_NOT_LOADED);
	}
	ml_token_destroy(t);

	ml_mask();
	CHECK(ml_is_blocked() == loaded);
	ml_unmask();
	CHECK(!ml_is_blocked());
	CHECK(ml_with_resource(acquire, use, release, &x, &result));
	CHECK(result == &x);
	{
		ML_MASKED_BLOCK;
		CHECK(ml_is_blocked() == loaded);
		__attribute__((cleanup(release_block))) void *p = malloc(8);
		CHECK(p != NULL);
	}
	CHECK(!ml_is_blocked());

	CHECK(ml_trim() == (loaded ? 0 : -1));
	struct ml_stats s;
	CHECK(ml_stats(&s) == want);
	/* The default library has no profiler: ML_NOT_STARTED. */
	ml_tracker tr = { track, untrack, NULL };
	st = ml_memprof_start(0.001, 8, &tr);
	CHECK(loaded ? st == ML_NOT_STARTED || st == ML_OK : st == ML_NOT_LOADED);
	if (st == ML_OK)
		CHECK(ml_memprof_stop() == ML_OK);
	else
		CHECK(ml_memprof_stop() == (loaded ? ML_INVALID : ML_NOT_LOADED));

	printf("%s: %s\n", loaded ? "loaded" : "not loaded", failures ? "FAILED" : "ok");
	return failures != 0;
}
