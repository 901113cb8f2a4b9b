/* collector_room: run with MEMLIMITS_GLOBAL_MEMORY=16M. Once a big block
 * (16 KiB or more) has been refused, small blocks may go over the limit by
 * its 1/32 (512 KiB here), room for a runtime's collector; once the memory
 * is that much under the limit again, the limit holds for them as before
 * (within the per-thread slack). Prints the live heap at each refusal;
 * exits 0 iff: the small blocks got past the limit after the big refusal,
 * by no more than the room, and not past it (beyond the slack) after the
 * frees. */
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

#define LIMIT ((int64_t)16 << 20)
#define ROOM ((int64_t)512 << 10)
#define SLACK ((int64_t)64 << 10)
#define N 100000

static void *big[64], *small[N];

static int64_t live(void)
{
	struct ml_stats s;
	ml_stats(&s);
	return s.live_bytes;
}

static int fill_small(void)
{
	int k = 0;
	while (k < N && (small[k] = malloc(512)) != NULL)
		k++;
	return k;
}

int main(void)
{
	int nb = 0;
	while (nb < 64 && (big[nb] = malloc(1 << 20)) != NULL)
		nb++;
	int ks = fill_small();
	int64_t after_big = live();
	printf("big blocks %d, then small ones to %lld KiB (limit %lld KiB)\n", nb,
	       (long long)(after_big >> 10), (long long)(LIMIT >> 10));
	while (ks > 0)
		free(small[--ks]);
	while (nb > 0)
		free(big[--nb]);
	live();
	void *p = malloc(1000); /* a slow path sees the memory low */
	free(p);
	ks = fill_small();
	int64_t small_only = live();
	printf("small blocks alone to %lld KiB\n", (long long)(small_only >> 10));
	int ok = after_big > LIMIT + SLACK && after_big <= LIMIT + ROOM + SLACK &&
		 small_only <= LIMIT + SLACK;
	while (ks > 0)
		free(small[--ks]);
	return !ok;
}
