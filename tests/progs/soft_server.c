/* soft_server: a server-like loop that keeps a cache of responses (64 KiB
 * each) and drops it when memory pressure says so, under a hard limit it
 * must never reach. Registers ml_on_memory_pressure at THRESHOLD (argv[1],
 * MiB), serves REQUESTS (argv[2]) requests, each allocating a response and
 * caching it. Prints "served=N refused=R drops=D max_cache=M" and exits 0 iff
 * nothing was refused and the callback ran. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

#define MAX_CACHE 65536
static void *cache[MAX_CACHE];
static int ncache, max_cache, drops, in_callback;
static long long last_memory, last_threshold;

static void drop_cache(int64_t memory, int64_t threshold, void *arg)
{
	(void)arg;
	in_callback = 1;
	drops++;
	last_memory = memory;
	last_threshold = threshold;
	/* It may allocate (a log line, here) and free. */
	char *line = malloc(200);
	if (line)
		snprintf(line, 200, "dropping %d cached responses", ncache);
	free(line);
	for (int i = 0; i < ncache; i++)
		free(cache[i]);
	ncache = 0;
	in_callback = 0;
}

int main(int argc, char **argv)
{
	long threshold = argc > 1 ? atol(argv[1]) : 64;
	long requests = argc > 2 ? atol(argv[2]) : 20000;
	if (ml_on_memory_pressure((int64_t)threshold << 20, drop_cache, NULL) != ML_OK) {
		puts("could not register");
		return 2;
	}
	long served = 0, refused = 0;
	for (long r = 0; r < requests; r++) {
		char *resp = malloc(64 << 10);
		if (!resp) {
			refused++;
			continue;
		}
		memset(resp, (int)r, 4096);
		served++;
		if (ncache < MAX_CACHE)
			cache[ncache++] = resp;
		else
			free(resp);
		if (ncache > max_cache)
			max_cache = ncache;
	}
	printf("served=%ld refused=%ld drops=%d max_cache=%d last_memory=%lld "
	       "threshold=%lld\n", served, refused, drops, max_cache, last_memory,
	       last_threshold);
	return refused == 0 && drops > 0 ? 0 : 1;
}
