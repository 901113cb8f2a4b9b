/* prof_sites: the profile's own tables are not part of the heap the limits
 * see. Under MEMLIMITS_PROFILE with MEMLIMITS_SAMPLE_INTERVAL=1 (every
 * allocation sampled), allocates and frees one block from each of 4096
 * distinct call stacks (paths through two mutually recursive functions),
 * which fills the profile with 4096 sites (about 5 MB of table), then prints
 * the live heap's growth: "live_growth=BYTES". */
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

#define NOINLINE __attribute__((noinline))
static NOINLINE void left(unsigned path, int d);
static NOINLINE void right(unsigned path, int d);

static void *volatile keep; /* so that the compiler keeps malloc/free */

static NOINLINE void leaf(void)
{
	keep = malloc(64);
	free(keep);
	__asm__ volatile("" ::: "memory");
}

static NOINLINE void left(unsigned path, int d)
{
	if (!d)
		leaf();
	else if (path & 1)
		right(path >> 1, d - 1);
	else
		left(path >> 1, d - 1);
	__asm__ volatile("" ::: "memory");
}

static NOINLINE void right(unsigned path, int d)
{
	if (!d)
		leaf();
	else if (path & 1)
		right(path >> 1, d - 1);
	else
		left(path >> 1, d - 1);
	__asm__ volatile("" ::: "memory");
}

int main(void)
{
	struct ml_stats before, after;
	keep = malloc(64);
	free(keep);
	ml_stats(&before);
	for (unsigned path = 0; path < 4096; path++)
		left(path, 12);
	ml_stats(&after);
	printf("live_growth=%lld\n",
	       (long long)after.live_bytes - (long long)before.live_bytes);
	printf("allocator_growth=%lld\n",
	       (long long)after.allocator_bytes - (long long)before.allocator_bytes);
	return 0;
}
