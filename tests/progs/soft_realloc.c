/* soft_realloc: a pressure callback at 10 MiB; a buffer grows by realloc
 * to 12 MiB (a crossing), shrinks by realloc to 7 MiB (below 90%: re-armed)
 * and grows back to 12 MiB by realloc (a second crossing). Prints
 * "callbacks N" (2). With no limit a realloc's growth had no bound on its
 * room once every threshold was crossed, so it never came where
 * thresholds re-arm: 1 (a held-out check). */
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

static int calls;
static void *(*volatile vr)(void *, size_t) = realloc;

static void note(int64_t mem, int64_t th, void *arg)
{
	(void)mem;
	(void)th;
	(void)arg;
	calls++;
}

int main(void)
{
	if (ml_start() != ML_OK)
		return 2;
	const size_t M = 1 << 20;
	if (ml_on_memory_pressure(10 * (int64_t)M, note, NULL) != ML_OK)
		return 2;
	char *p = vr(NULL, 12 * M);
	p = vr(p, 7 * M);
	p = vr(p, 12 * M);
	if (!p)
		return 1;
	printf("callbacks %d\n", calls);
	free(p);
	return 0;
}
