/* zero_blocks: zero-byte requests under MEMLIMITS_GLOBAL_MEMORY. Each takes
 * a block (16 bytes of jemalloc's), and they were never refused: the fast
 * path admitted n while `left >= n`, which 0 always is, so no limit saw them
 * (4,000,000 malloc(0) held 61 MiB under an 8 MiB cap; a held-out check).
 * Every zero-byte form in turn allocates until refused (or MAX_BLOCKS),
 * keeping its blocks; then 4 threads at once. Prints "worst_over": the most
 * the process's memory (ml_stats' peak_bytes or live_bytes, the limit's
 * measure) went over the limit, in bytes, "threads_over_each": the same
 * after the threads, by thread, and "unrefused": the runs that reached
 * their most blocks. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

#define MAX_BLOCKS (1 << 20) /* 16 MiB of blocks: 4 times the test's limit */

static void *blocks[MAX_BLOCKS * 2]; /* the threads' share MAX_BLOCKS * 2 */

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

/* THREADS threads at once make malloc(0) blocks until refused: a thread
 * whose grant only a limit near had cut went up to 328 KiB past the slack
 * (zero-byte requests never use a grant up; the activity callback's look
 * sends such a thread back, memory.c zero_look). */
#define THREADS 4
#define PER_THREAD (MAX_BLOCKS / 2) /* each alone twice the test's limit (4M) */

static pthread_barrier_t ready;

static void *zero_thread(void *arg)
{
	void **mine = arg;
	int n = 0;
	pthread_barrier_wait(&ready); /* all made before any allocates: a
				       * thread at the limit fails (EAGAIN) */
	void *p;
	while (n < PER_THREAD && (p = malloc(0)) != NULL)
		mine[n++] = p;
	return (void *)(intptr_t)n;
}

static int64_t over(int64_t limit)
{
	struct ml_stats s;
	if (ml_stats(&s) != ML_OK)
		exit(2);
	int64_t m = s.peak_bytes > s.live_bytes ? s.peak_bytes : s.live_bytes;
	return m - limit;
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
		if (over(limit) > worst)
			worst = over(limit);
		for (int i = 0; i < n; i++)
			free(blocks[i]);
	}
	/* Small stacks: a thread's stack is memory the limit counts, and an
	 * 8 MiB one does not fit an 8 MiB limit. */
	pthread_t th[THREADS];
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 128 << 10);
	pthread_barrier_init(&ready, NULL, THREADS);
	for (int i = 0; i < THREADS; i++)
		if (pthread_create(&th[i], &attr, zero_thread, blocks + i * PER_THREAD)) {
			struct ml_stats st;
			ml_stats(&st);
			fprintf(stderr, "zero_blocks: pthread_create failed (live %lld, mapped %lld)\n",
				(long long)st.live_bytes, (long long)st.mapped_bytes);
			return 2;
		}
	int made[THREADS];
	for (int i = 0; i < THREADS; i++) {
		void *r;
		pthread_join(th[i], &r);
		made[i] = (int)(intptr_t)r;
		unrefused += made[i] == PER_THREAD;
	}
	int64_t threads_over = over(limit);
	for (int i = 0; i < THREADS; i++)
		for (int k = 0; k < made[i]; k++)
			free(blocks[i * PER_THREAD + k]);
	printf("worst_over=%lld\nthreads_over_each=%lld\nunrefused=%d\n", (long long)worst,
	       (long long)(threads_over / THREADS), unrefused);
	return 0;
}
