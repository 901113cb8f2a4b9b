/* cap_api: run with MEMLIMITS_GLOBAL_MEMORY=64M. The API sets the limit of
 * global-memory tasks, never the environment's cap: lifting it with -1 or
 * raising it leaves the cap in force outside and inside tasks; lowering it
 * interrupts tasks earlier. Exit 0 iff all of that holds; prints what it
 * saw. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

static int failures;
#define CHECK(c)                                                         \
	do {                                                             \
		if (!(c)) {                                              \
			printf("FAILED: %s (line %d)\n", #c, __LINE__);  \
			failures++;                                      \
		}                                                        \
	} while (0)

static void *grab(void *arg)
{
	return malloc((size_t)arg);
}

int main(void)
{
	const int64_t cap = 64 << 20;
	CHECK(ml_global_memory_limit() == cap);
	ml_set_global_memory_limit(-1); /* lifts the API's limit only */
	CHECK(ml_global_memory_limit() == cap);
	void *big = malloc(128 << 20);
	CHECK(big == NULL);
	free(big);
	ml_set_global_memory_limit((int64_t)1 << 40); /* looser: the cap wins */
	CHECK(ml_global_memory_limit() == cap);
	void *r = NULL;
	ml_status st = ml_limit_global_memory(grab, (void *)(size_t)(96 << 20), &r);
	CHECK(st == ML_GLOBAL_MEMORY_LIMIT && r == NULL);
	ml_set_global_memory_limit(16 << 20); /* tighter: tasks stop there */
	CHECK(ml_global_memory_limit() == 16 << 20);
	st = ml_limit_global_memory(grab, (void *)(size_t)(32 << 20), &r);
	CHECK(st == ML_GLOBAL_MEMORY_LIMIT && r == NULL);
	/* Outside a task the cap, not the task limit, applies. */
	void *mid = malloc(32 << 20);
	CHECK(mid != NULL);
	memset(mid, 1, 32 << 20);
	free(mid);
	printf("%s\n", failures ? "cap_api: failed" : "cap_api: ok");
	return failures ? 1 : 0;
}
