/* realloc_seen: run with MEMLIMITS_GLOBAL_MEMORY=64M. A realloc's growth
 * under the global limit, as the other threads and the peak see it:
 *  - a thread grows a block by realloc from 1 MiB to 40 MiB and then
 *    allocates nothing; another thread's malloc of 30 MiB must be refused
 *    (40 + 30 > 64: the growth is in the measure other threads read, not
 *    only in the grower's unpublished counters);
 *  - a block doubled by realloc next to 20 MiB held elsewhere, until the
 *    limit refuses a doubling: the peak of the measure stays within the
 *    limit plus the per-thread slack (64 KiB). jemalloc reports a realloc's
 *    new block before its old one; that moment is not memory the limit
 *    admitted, and counting it put the peak of lua5.4 12 MiB over.
 * Exit 0 iff both hold; prints what it saw. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

#define MiB ((size_t)1 << 20)

static pthread_barrier_t grown, checked;

static void *grower(void *arg)
{
	(void)arg;
	char *p = malloc(MiB);
	if (p) {
		memset(p, 1, MiB);
		char *q = realloc(p, 40 * MiB);
		if (q)
			p = q;
	}
	pthread_barrier_wait(&grown);
	pthread_barrier_wait(&checked); /* holds the block until checked */
	free(p);
	return NULL;
}

int main(void)
{
	int failures = 0;
	pthread_t th;
	pthread_barrier_init(&grown, NULL, 2);
	pthread_barrier_init(&checked, NULL, 2);
	pthread_create(&th, NULL, grower, NULL);
	pthread_barrier_wait(&grown);
	void *other = malloc(30 * MiB);
	printf("after another thread's realloc to 40 MiB, malloc(30 MiB) %s\n",
	       other ? "was admitted" : "was refused");
	if (other) {
		printf("FAILED: the realloc's growth was not in the measure\n");
		failures++;
		free(other);
	}
	pthread_barrier_wait(&checked);
	pthread_join(th, NULL);

	struct ml_stats s;
	ml_stats(&s);
	int64_t base_peak = s.peak_bytes;
	char *held = malloc(20 * MiB);
	size_t size = MiB;
	char *p = malloc(size);
	while (held && p) {
		char *q = realloc(p, 2 * size);
		if (!q)
			break;
		p = q;
		size *= 2;
	}
	ml_stats(&s);
	int64_t limit = ml_global_memory_limit();
	printf("doubling next to 20 MiB: stopped at %zu MiB; peak %lld KiB, "
	       "limit %lld KiB (peak before: %lld KiB)\n", size / MiB,
	       (long long)(s.peak_bytes >> 10), (long long)(limit >> 10),
	       (long long)(base_peak >> 10));
	if (s.peak_bytes > limit + (64 << 10)) {
		printf("FAILED: the peak is over the limit by more than 64 KiB\n");
		failures++;
	}
	if (size < 16 * MiB) {
		printf("FAILED: the doubling stopped early\n");
		failures++;
	}
	free(p);
	free(held);
	return failures != 0;
}
