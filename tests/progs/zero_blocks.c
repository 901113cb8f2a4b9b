/* zero_blocks: zero-byte requests under MEMLIMITS_GLOBAL_MEMORY. Each takes
 * a block (16 bytes of jemalloc's), and they were never refused: the fast
 * path admitted n while `left >= n`, which 0 always is, so no limit saw them
 * (4,000,000 malloc(0) held 61 MiB under an 8 MiB cap; a held-out check).
 * Every zero-byte form in turn allocates until refused (or MAX_BLOCKS),
 * keeping its blocks. Prints "worst_over": the most the process's memory
 * (ml_stats' peak_bytes or live_bytes, the limit's measure) went over the limit, in
 * bytes, and "unrefused": the forms that reached MAX_BLOCKS. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

#define MAX_BLOCKS (1 << 20) /* 16 MiB of blocks: twice the test's limit */

static void *blocks[MAX_BLOCKS];

static void *zero(int form)
{
	void *p = NULL;
	switch (form) {
	case 0: return malloc(0);
	case 1: return calloc(0, 16);
	case 2: return calloc(16, 0);
	case 3: return realloc(NULL, 0);
	case 4: return reallocarray(NULL, 0, 16);
	case 5: return aligned_alloc(64, 0);
	case 6: return memalign(4096, 0);
	case 7: return posix_memalign(&p, 16, 0) ? NULL : p;
	}
	return NULL;
}

int main(void)
{
	ml_start();
	int64_t limit = ml_global_memory_limit();
	if (limit < 0) {
		fprintf(stderr, "zero_blocks: MEMLIMITS_GLOBAL_MEMORY is not set\n");
		return 2;
	}
	int unrefused = 0;
	int64_t worst = 0;
	for (int form = 0; form < 8; form++) {
		int n = 0;
		void *p;
		while (n < MAX_BLOCKS && (p = zero(form)) != NULL)
			blocks[n++] = p;
		unrefused += n == MAX_BLOCKS;
		struct ml_stats s;
		if (ml_stats(&s) != ML_OK)
			return 2;
		int64_t m = s.peak_bytes > s.live_bytes ? s.peak_bytes : s.live_bytes;
		if (m - limit > worst)
			worst = m - limit;
		for (int i = 0; i < n; i++)
			free(blocks[i]);
	}
	printf("worst_over=%lld\nunrefused=%d\n", (long long)worst, unrefused);
	return 0;
}
