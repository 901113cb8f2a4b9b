/* prof_window: under `ulimit -v` the profiler's range is smaller than its
 * 16 GiB window, and jemalloc's own blocks may land in the same window.
 * Their free must still reach jemalloc (not be taken for a sampled block).
 * Learns the window from one sampled block, then allocates unsampled 1 MiB
 * blocks until some lie in it, frees them all and checks that the live
 * heap went back down. Prints "in_window=N", "live_growth=BYTES",
 * "sampled_ok=0|1". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

static void *sampled_block;

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)data;
	sampled_block = s->block; /* the last one: the program's own */
	return NULL;
}

int main(void)
{
	ml_tracker tr = { on_alloc, NULL, NULL };
	ml_status st = ml_memprof_start(1.0, 4, &tr);
	printf("start=%d\n", (int)st);
	if (st != ML_OK)
		return 1;
	char *s = malloc(100);
	memset(s, 1, 100);
	ml_memprof_stop();
	printf("sampled_ok=%d\n", s && s == sampled_block);
	st = ml_memprof_start(0.0, 4, &tr); /* running, samples nothing */
	uintptr_t window = (uintptr_t)sampled_block >> 34;

	struct ml_stats before, after;
	ml_stats(&before);
	enum { MAX = 600, SIZE = 1 << 20 };
	static char *blk[MAX];
	int n = 0, in_window = 0;
	while (n < MAX && in_window < 8) {
		blk[n] = malloc(SIZE);
		if (!blk[n])
			break;
		memset(blk[n], 2, 4096);
		in_window += ((uintptr_t)blk[n] >> 34) == window;
		n++;
	}
	for (int i = 0; i < n; i++)
		free(blk[i]);
	ml_stats(&after);
	printf("allocated=%d\nin_window=%d\nlive_growth=%lld\n", n, in_window,
	       (long long)after.live_bytes - (long long)before.live_bytes);
	free(s);
	ml_memprof_stop();
	return 0;
}
