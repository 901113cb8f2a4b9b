/* prof_limits on|off LIMIT [norealloc]: a fixed allocation pattern (malloc,
 * calloc, realloc up and down (unless norealloc), aligned allocations,
 * frees; sizes from a fixed LCG)
 * run under ml_limit_allocations(LIMIT). With "on" the profiler runs at rate
 * 1e-3 with callbacks that allocate and track every sample. Prints the
 * task's status, its allocated_bytes, the index of the first allocation that
 * failed, the thread's allocated bytes (ml_stats) over the task, and a
 * second run of the pattern under no limit (its ml_stats count). The output
 * must not depend on the profiler; "tracked" and "callbacks" lines go to
 * stderr. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

#define OPS 60000
#define RING 512

static long first_fail = -1;
static int no_realloc;
static int cb_allocs, tracked, deallocs;

static uint64_t lcg(uint64_t *x)
{
	*x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
	return *x >> 33;
}

static void *pattern(void *arg)
{
	(void)arg;
	static void *ring[RING];
	memset(ring, 0, sizeof ring);
	uint64_t x = 7;
	first_fail = -1;
	for (long i = 0; i < OPS; i++) {
		int k = (int)(lcg(&x) % RING);
		size_t n = 1 + lcg(&x) % 3000;
		void *p = NULL;
		switch (lcg(&x) % 6) {
		case 0:
		case 1:
			free(ring[k]);
			ring[k] = NULL;
			p = malloc(n);
			break;
		case 2:
			free(ring[k]);
			ring[k] = NULL;
			p = calloc(1, n);
			break;
		case 3: /* grow or shrink in place or by moving */
			if (!ring[k] || no_realloc) {
				free(ring[k]);
				ring[k] = NULL;
				p = malloc(n);
				break;
			}
			p = realloc(ring[k], n);
			if (p)
				ring[k] = NULL;
			break;
		case 4:
			free(ring[k]);
			ring[k] = NULL;
			if (posix_memalign(&p, 64, n))
				p = NULL;
			break;
		default:
			free(ring[k]);
			ring[k] = NULL;
			continue;
		}
		if (!p) {
			if (first_fail < 0)
				first_fail = i;
			break;
		}
		memset(p, (int)i, n < 64 ? n : 64);
		ring[k] = p;
	}
	for (int k = 0; k < RING; k++) {
		free(ring[k]);
		ring[k] = NULL;
	}
	return NULL;
}

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)data;
	/* Allocate in the callback: neither counted nor refused. */
	void *a = malloc(s->size + 100);
	void *b = calloc(4, 1000);
	if (a && b)
		cb_allocs++;
	free(a);
	free(b);
	tracked++;
	return malloc(32); /* the cookie, freed by on_dealloc */
}

static void on_dealloc(void *cookie, void *data)
{
	(void)data;
	deallocs++;
	void *c = realloc(cookie, 4000);
	free(c ? c : cookie);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int on = strcmp(argv[1], "on") == 0;
	uint64_t limit = strtoull(argv[2], NULL, 10);
	no_realloc = argc > 3 && strcmp(argv[3], "norealloc") == 0;
	setvbuf(stdout, NULL, _IOFBF, 4096);
	printf("mode-independent output:\n");
	fflush(stdout);
	if (ml_start() != ML_OK) {
		printf("cannot start the engine\n");
		return 1;
	}
	ml_tracker tr = { on_alloc, on_dealloc, NULL };
	if (on && ml_memprof_start(1e-3, 16, &tr) != ML_OK) {
		printf("cannot start the profiler\n");
		return 1;
	}
	struct ml_stats a, b, c;
	uint64_t used = 0;
	ml_stats(&a);
	ml_status st = ml_limit_allocations(limit, pattern, NULL, NULL, &used);
	ml_stats(&b);
	long ff = first_fail;
	pattern(NULL); /* no limit */
	ml_stats(&c);
	if (on)
		ml_memprof_stop();
	printf("status %d\nallocated_bytes %llu\nfirst_failing_op %ld\n", (int)st,
	       (unsigned long long)used, ff);
	printf("thread_allocated_in_task %llu\n",
	       (unsigned long long)(b.thread_allocated - a.thread_allocated));
	printf("thread_allocated_unlimited %llu\n",
	       (unsigned long long)(c.thread_allocated - b.thread_allocated));
	printf("unlimited_first_fail %ld\n", first_fail);
	fprintf(stderr, "tracked %d\ncallback_allocs %d\ndeallocs %d\n", tracked,
		cb_allocs, deallocs);
	return 0;
}
