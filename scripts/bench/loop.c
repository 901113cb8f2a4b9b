/* loop.c: the fast-path micro benchmark: N iterations of malloc(size) and
 * free, optionally inside a task ("alloc": ml_limit_allocations with a limit
 * never reached; "token": ml_limit_with_token with a token never set). Run
 * under callgrind, preloaded with jemalloc or memlimits; the difference
 * between two values of N is the per-iteration cost. */
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

static long n;
static size_t size;

static void *churn(void *arg)
{
	(void)arg;
	for (long i = 0; i < n; i++) {
		void *p = malloc(size);
		__asm__ volatile("" : : "r"(p) : "memory"); /* keep the pair */
		free(p);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	n = argc > 1 ? atol(argv[1]) : 1000000;
	size = argc > 2 ? (size_t)atol(argv[2]) : 64;
	const char *mode = argc > 3 ? argv[3] : "none";
	if (strcmp(mode, "none") == 0) {
		churn(NULL);
		return 0;
	}
	ml_start();
	if (strcmp(mode, "alloc") == 0)
		return ml_limit_allocations(ML_MAX_ALLOCATION_LIMIT, churn, NULL,
					    NULL, NULL) != ML_OK;
	if (strcmp(mode, "token") == 0) {
		ml_token *t = ml_token_create();
		return ml_limit_with_token(t, churn, NULL, NULL) != ML_OK;
	}
	return 2;
}
