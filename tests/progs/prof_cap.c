/* prof_cap: the profiler's sampled blocks under MEMLIMITS_GLOBAL_MEMORY
 * (run with the profiling build and a limit; prints "name value" lines).
 *
 *   prof_cap grow RATE NBUF: one thread grows NBUF buffers in turn by
 *     realloc (1000 to 5700 bytes a step) until each is refused, with the
 *     profiler at RATE. Prints the limit, the largest sum of the buffers'
 *     usable sizes, and whether a refusal came. At rate 1 every block is
 *     the profiler's, none jemalloc's.
 *   prof_cap move RATE MB: thread A grows a buffer by 64 KiB steps to MB
 *     MiB, three times, while thread B allocates and frees 1 KiB blocks;
 *     the buffer is sampled early and moves at each doubling of its
 *     size. Prints A's and B's failures and the measure's peak.
 *   prof_cap tracker RATE MB: the tracker keeps MB MiB (written) at each
 *     sample, while the program allocates and frees 1000-byte blocks, up to
 *     64 samples or the first refusal in the tracker. Prints the limit,
 *     the tracker's refusals, the heap's peak and its size at the end.
 *     Also with memory-pressure callbacks (pressure THRESHOLD), which
 *     keep the same there: MEMLIMITS_* caps hold for them too. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)data;
	return s->block;
}

static int grow(int nbuf)
{
	char **b = calloc((size_t)nbuf, sizeof *b);
	size_t *n = calloc((size_t)nbuf, sizeof *n);
	char *dead = calloc((size_t)nbuf, 1);
	if (!b || !n || !dead)
		return 1;
	size_t total = 0, most = 0;
	int live = nbuf, refused = 0;
	while (live)
		for (int i = 0; i < nbuf; i++) {
			if (dead[i])
				continue;
			size_t was = b[i] ? malloc_usable_size(b[i]) : 0;
			size_t step = 1000 + (size_t)(i % 128) * 37;
			char *q = realloc(b[i], n[i] + step);
			if (!q) {
				refused = 1;
				dead[i] = 1;
				live--;
				continue;
			}
			memset(q + n[i], 1, step);
			total += malloc_usable_size(q) - was;
			if (total > most)
				most = total;
			b[i] = q;
			n[i] += step;
		}
	printf("limit %ld\nusable_total %zu\nrefused %d\n",
	       (long)ml_global_memory_limit(), most, refused);
	for (int i = 0; i < nbuf; i++)
		free(b[i]);
	return 0;
}

static size_t keep_bytes;
static void *kept[64];
static int nkept, tracker_refused;

static void keep(void)
{
	if (nkept >= 64 || tracker_refused)
		return;
	int i = nkept++; /* a pressure callback may run inside this malloc */
	void *p = malloc(keep_bytes);
	if (!p) {
		nkept--;
		tracker_refused++;
		return;
	}
	memset(p, 1, keep_bytes);
	kept[i] = p;
}

static void *tracker_alloc(const ml_sample *s, void *data)
{
	(void)s;
	(void)data;
	keep();
	return NULL;
}

static void on_pressure(int64_t mem, int64_t threshold, void *arg)
{
	(void)mem;
	(void)threshold;
	(void)arg;
	keep();
}

static int tracker(void)
{
	for (long i = 0; i < 10000000 && nkept < 64 && !tracker_refused; i++) {
		void *volatile p = malloc(1000);
		free(p);
	}
	struct ml_stats s;
	ml_stats(&s);
	printf("limit %ld\nkept %d\ntracker_refused %d\npeak %ld\nlive %ld\n",
	       (long)ml_global_memory_limit(), nkept, tracker_refused,
	       (long)s.peak_bytes, (long)s.live_bytes);
	return 0;
}

static size_t move_bytes;
static volatile int done;
static long a_failures, b_failures;

static void *grower(void *arg)
{
	(void)arg;
	for (int rep = 0; rep < 3; rep++) {
		char *p = NULL;
		size_t n = 0;
		while (n < move_bytes) {
			char *q = realloc(p, n + 65536);
			if (!q) {
				a_failures++;
				break;
			}
			memset(q + n, 1, 65536);
			p = q;
			n += 65536;
		}
		free(p);
	}
	done = 1;
	return NULL;
}

static void *smalls(void *arg)
{
	(void)arg;
	while (!done) {
		void *p = malloc(1024);
		if (!p)
			b_failures++;
		free(p);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	ml_tracker tr = { on_alloc, NULL, NULL };
	if (strcmp(argv[1], "tracker") == 0)
		tr.alloc = tracker_alloc;
	keep_bytes = (size_t)atol(argv[3]) << 20;
	if (strcmp(argv[1], "pressure") == 0) {
		/* A threshold every MiB up to 16 MiB: each crossing keeps 2 MiB
		 * more, which crosses the next. */
		keep_bytes = 2 << 20;
		for (int mb = 1; mb <= 16; mb++)
			ml_on_memory_pressure((int64_t)mb << 20, on_pressure, NULL);
		for (int i = 0; i < 64 && !tracker_refused; i++)
			keep();
		return tracker();
	}
	if (ml_memprof_start(atof(argv[2]), 8, &tr) != ML_OK) {
		printf("start failed\n");
		return 1;
	}
	if (strcmp(argv[1], "grow") == 0)
		return grow(atoi(argv[3]));
	if (strcmp(argv[1], "tracker") == 0)
		return tracker();
	move_bytes = (size_t)atol(argv[3]) << 20;
	pthread_t a, b;
	pthread_create(&b, NULL, smalls, NULL);
	pthread_create(&a, NULL, grower, NULL);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	struct ml_stats s;
	ml_stats(&s);
	printf("limit %ld\na_failures %ld\nb_failures %ld\npeak %ld\n",
	       (long)ml_global_memory_limit(), a_failures, b_failures,
	       (long)s.peak_bytes);
	return 0;
}
