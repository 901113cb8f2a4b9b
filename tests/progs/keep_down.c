/* keep_down: run with MEMLIMITS_GLOBAL_MEMORY=30M. Under a memory limit
 * the free memory jemalloc keeps resident for reuse is bounded to a
 * quarter of the limit (core/memory.c, mli_mem_keep_down): 12 blocks of 2
 * MiB (above the thread cache's sizes) are written and freed, which leaves
 * 24 MiB of dirty pages that jemalloc would keep for seconds; the next
 * slow paths of the thread (allocations of 64 KiB) must give them back.
 * Measured by mallinfo2's keepcost (the dirty and muzzy bytes). Exit 0 iff
 * what is kept falls to 8 MiB or less; prints both figures. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB ((size_t)1 << 20)

int main(void)
{
	void *b[12];
	for (int i = 0; i < 12; i++)
		if ((b[i] = malloc(2 * MiB)) != NULL)
			memset(b[i], 1, 2 * MiB);
	for (int i = 0; i < 12; i++)
		free(b[i]);
	size_t kept = mallinfo2().keepcost;
	for (int i = 0; i < 100; i++) {
		void *p = malloc(64 << 10);
		*(volatile char *)p = 1;
		free(p);
	}
	size_t after = mallinfo2().keepcost;
	printf("kept after the frees: %zu KiB; after 100 slow paths: %zu KiB\n",
	       kept >> 10, after >> 10);
	if (kept < 16 * MiB)
		printf("FAILED: the frees left less than expected to keep\n");
	if (after > 8 * MiB)
		printf("FAILED: jemalloc keeps more than a quarter of the limit\n");
	return kept < 16 * MiB || after > 8 * MiB;
}
