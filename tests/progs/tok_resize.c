/* tok_resize N: N tasks that each set their own token, then resize a block
 * of 200,000 bytes without growing it: realloc to 100 bytes, then xallocx
 * to 100,000 (jemalloc's, the library's, looked up); each task must end
 * interrupted. Prints "ok_tasks K" (tasks that returned ML_OK: 0 expected).
 * Under the profiling build with MEMLIMITS_SAMPLE_INTERVAL=1 every block is
 * the profiler's, whose shrink in place did not look at the token (a
 * held-out check). Then N tasks that make a block, set their token and
 * free the block: none is interrupted (no allocation failed), where the
 * profiler's callback's end inside free interrupted them (a held-out
 * check); prints "free_interrupted K" (0 expected). test_prof,
 * token_then_sampled_resize. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

static ml_token *tok;
static void *blk;
static size_t (*xallocx_fn)(void *, size_t, size_t, int);
static int use_x;

static void *task(void *arg)
{
	(void)arg;
	ml_token_set(tok);
	if (use_x)
		xallocx_fn(blk, 100000, 0, 0);
	else
		blk = realloc(blk, 100);
	return NULL;
}

static void *volatile sink; /* the compiler may not drop the block */

static void *task_free(void *arg)
{
	(void)arg;
	char *p = malloc(1000);
	sink = p;
	ml_token_set(tok);
	free(p);
	return ml_is_interrupted() ? (void *)1 : NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 20, ok = 0;
	xallocx_fn = (size_t (*)(void *, size_t, size_t, int))dlsym(RTLD_DEFAULT, "xallocx");
	if (!xallocx_fn || ml_start() != ML_OK)
		return 2;
	for (int i = 0; i < 2 * n; i++) {
		use_x = i % 2;
		blk = malloc(200000);
		if (!blk)
			return 3;
		memset(blk, 1, 200000);
		tok = ml_token_create();
		ok += ml_limit_with_token(tok, task, NULL, NULL) == ML_OK;
		free(blk);
		ml_token_destroy(tok);
	}
	printf("ok_tasks %d\n", ok);
	int interrupted = 0;
	for (int i = 0; i < n; i++) {
		tok = ml_token_create();
		void *r = NULL;
		interrupted += ml_limit_with_token(tok, task_free, NULL, &r) != ML_OK || r;
		ml_token_destroy(tok);
	}
	printf("free_interrupted %d\n", interrupted);
	return 0;
}
