/* task_noload: every function of shim/memlimits.h without the preload (run by
 * test_tasks with preload=0). Each must return ML_NOT_LOADED or its neutral
 * value (false, -1, NULL) and must not crash; ml_status_string works without
 * the engine. Prints each failed check; exit 0 iff none failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

static int failures;

#define CHECK(cond)                                                   \
	do {                                                          \
		if (!(cond)) {                                        \
			printf("FAILED line %d: %s\n", __LINE__, #cond); \
			failures++;                                   \
		}                                                     \
	} while (0)

static int ran;

static void *task(void *arg)
{
	(void)arg;
	ran++;
	return NULL;
}

static int acquired, used, released;
static bool blocked_in_acquire = true;
static int resource_storage;

static void *acquire(void *arg)
{
	(void)arg;
	acquired++;
	blocked_in_acquire = ml_is_blocked();
	return &resource_storage;
}

static void *use(void *r, void *arg)
{
	(void)arg;
	used += r == &resource_storage;
	return (void *)0x55;
}

static void release(void *r, void *arg)
{
	(void)arg;
	released += r == &resource_storage;
}

static int freed;
static void counted_free(char *p)
{
	freed++;
	free(p);
}
ML_DEFINE_RELEASE(release_buf, char *, counted_free)

int main(void)
{
	if (ml_loaded()) {
		printf("the engine is loaded: this program checks its absence\n");
		return 1;
	}
	CHECK(ml_start() == ML_NOT_LOADED);
	CHECK(ml_start() == ML_NOT_LOADED);

	/* Status strings. */
	for (int i = ML_OK; i <= ML_INVALID; i++) {
		const char *s = ml_status_string((ml_status)i);
		CHECK(s && *s);
		for (int j = ML_OK; j < i; j++)
			CHECK(strcmp(s, ml_status_string((ml_status)j)) != 0);
	}
	CHECK(strstr(ml_status_string(ML_NOT_LOADED), "not loaded") != NULL);
	CHECK(strcmp(ml_status_string((ml_status)1000), "unknown status") == 0);

	/* Global memory. */
	ml_set_global_memory_limit(1 << 20);
	CHECK(ml_global_memory_limit() == -1);
	void *result = (void *)0x1;
	CHECK(ml_limit_global_memory(task, NULL, &result) == ML_NOT_LOADED);
	CHECK(ml_limit_global_memory(task, NULL, NULL) == ML_NOT_LOADED);

	/* Allocation limits. */
	uint64_t count = 77;
	CHECK(ml_limit_allocations(1000, task, NULL, &result, &count) == ML_NOT_LOADED);
	CHECK(ml_limit_allocations(1000, task, NULL, NULL, NULL) == ML_NOT_LOADED);
	CHECK(ml_limit_allocations(ML_MAX_ALLOCATION_LIMIT + 1, task, NULL, NULL, NULL) ==
	      ML_NOT_LOADED);

	/* Tokens. */
	ml_token *t = ml_token_create();
	CHECK(t == NULL);
	ml_token_set(t);
	ml_token_set(NULL);
	CHECK(!ml_token_is_set(t));
	CHECK(!ml_token_is_set(NULL));
	CHECK(ml_limit_with_token(t, task, NULL, &result) == ML_NOT_LOADED);
	CHECK(ml_limit_with_token(NULL, task, NULL, NULL) == ML_NOT_LOADED);
	ml_token_destroy(t);
	ml_token_destroy(NULL);
	CHECK(ran == 0); /* no task ran */

	/* Scopes. */
	ml_scope s;
	CHECK(ml_enter_allocations(&s, 1000) == ML_NOT_LOADED);
	CHECK(ml_enter_global_memory(&s) == ML_NOT_LOADED);
	CHECK(ml_enter_token(&s, t) == ML_NOT_LOADED);
	CHECK(ml_enter_allocations(NULL, 1000) == ML_NOT_LOADED);
	CHECK(ml_leave(&s, &count) == ML_NOT_LOADED);
	CHECK(ml_leave(NULL, NULL) == ML_NOT_LOADED);

	/* Interrupts and masking. */
	CHECK(!ml_is_interrupted());
	ml_mask();
	CHECK(!ml_is_blocked());
	ml_unmask();
	ml_unmask(); /* unbalanced: still harmless */
	CHECK(!ml_is_blocked());

	/* with_resource still runs the three functions, in order. */
	void *wr = NULL;
	CHECK(ml_with_resource(acquire, use, release, NULL, &wr));
	CHECK(acquired == 1 && used == 1 && released == 1);
	CHECK(!blocked_in_acquire);
	CHECK(wr == (void *)0x55);

	/* The cleanup helpers. */
	{
		ML_MASKED_BLOCK;
		CHECK(!ml_is_blocked());
		__attribute__((cleanup(release_buf))) char *buf = malloc(10);
		CHECK(buf != NULL);
	}
	CHECK(freed == 1);

	/* Polling, trimming, statistics. */
	CHECK(ml_poll() == ML_NOT_LOADED);
	CHECK(ml_trim() == -1);
	struct ml_stats st;
	memset(&st, 0xab, sizeof st);
	CHECK(ml_stats(&st) == ML_NOT_LOADED);
	struct ml_stats untouched;
	memset(&untouched, 0xab, sizeof untouched);
	CHECK(memcmp(&st, &untouched, sizeof st) == 0);

	/* And ordinary allocation still works. */
	void *p = malloc(1 << 20);
	CHECK(p != NULL);
	free(p);

	if (failures) {
		printf("%d checks failed\n", failures);
		return 1;
	}
	printf("all checks passed\n");
	return 0;
}
