/* big_at_once: threads that allocate a big block at the same moment under
 * MEMLIMITS_GLOBAL_MEMORY (run with a limit of 20M). 8 threads wait at a
 * barrier, then each asks for 8 MiB, by malloc, calloc, aligned_alloc or a
 * realloc from 64 bytes (one way a round, in turn); main then reads the
 * heap with every block held, and the blocks are freed. Each decision read
 * a shared sum in which the other threads' blocks, admitted at the same
 * moment, were not yet: 4 to 7 of the 8 blocks were had (56 MiB).
 * Prints "rounds", "worst_over" (bytes the heap was over the limit at
 * worst), "fewest" and "most" blocks had in a round; exits 0. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

#define THREADS 8
#define BLOCK ((size_t)8 << 20)
#define ROUNDS 40

static pthread_barrier_t go, held, done;
static void *blocks[THREADS];
static int way;

static void *take(size_t i)
{
	switch (way) {
	case 0:
		return malloc(BLOCK);
	case 1:
		return calloc(1, BLOCK);
	case 2:
		return aligned_alloc(4096, BLOCK);
	default: {
		void *p = malloc(64);
		void *q = p ? realloc(p, BLOCK) : NULL;
		if (!q)
			free(p);
		return q;
	}
	}
	(void)i;
}

static void *run(void *arg)
{
	size_t i = (size_t)arg;
	for (int r = 0; r < ROUNDS; r++) {
		pthread_barrier_wait(&go);
		blocks[i] = take(i);
		if (blocks[i])
			memset(blocks[i], 1, 4096);
		pthread_barrier_wait(&held);
		pthread_barrier_wait(&done);
		free(blocks[i]);
		blocks[i] = NULL;
	}
	return NULL;
}

int main(void)
{
	pthread_t th[THREADS];
	pthread_barrier_init(&go, NULL, THREADS + 1);
	pthread_barrier_init(&held, NULL, THREADS + 1);
	pthread_barrier_init(&done, NULL, THREADS + 1);
	for (size_t i = 0; i < THREADS; i++)
		if (pthread_create(&th[i], NULL, run, (void *)i))
			return 1;
	int64_t limit = ml_global_memory_limit(), worst = INT64_MIN;
	int verbose = getenv("BIG_VERBOSE") != NULL;
	int fewest = THREADS, most = 0;
	for (int r = 0; r < ROUNDS; r++) {
		way = r % 4;
		pthread_barrier_wait(&go);
		pthread_barrier_wait(&held);
		struct ml_stats s;
		ml_stats(&s);
		int had = 0;
		for (int i = 0; i < THREADS; i++)
			had += blocks[i] != NULL;
		if (verbose)
			printf("round %d way %d had %d live %lld\n", r, way, had, (long long)s.live_bytes);
		if (s.live_bytes - limit > worst)
			worst = s.live_bytes - limit;
		fewest = had < fewest ? had : fewest;
		most = had > most ? had : most;
		pthread_barrier_wait(&done);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	printf("rounds %d\nworst_over %lld\nfewest %d\nmost %d\n", ROUNDS,
	       (long long)worst, fewest, most);
	return 0;
}
