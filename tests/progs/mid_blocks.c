/* mid_blocks: 16 threads, released at once, each allocate 50,000-byte
 * blocks (16 to 64 KiB: over the grant's check, under the activity
 * callback's quantum) until refused, under MEMLIMITS_GLOBAL_MEMORY; then
 * all is freed; 100 rounds. Prints "worst_per_thread": the most the blocks
 * held plus the heap before took the limit over, in bytes a thread (the
 * README's bound: 64 KiB). A held-out check found 104 KiB: such a block
 * came on top of the thread's grant, unpublished. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

#define T 16
#define SIZE 50000
#define MAX 4000
#define ROUNDS 100

static pthread_barrier_t start, hold, freed;
static long long held[T];
static void *blocks[T][MAX];
static int count[T];

static void *run(void *arg)
{
	long i = (long)arg;
	for (int r = 0; r < ROUNDS; r++) {
		pthread_barrier_wait(&start);
		void *p;
		held[i] = 0;
		count[i] = 0;
		while (count[i] < MAX && (p = malloc(SIZE)) != NULL) {
			blocks[i][count[i]++] = p;
			held[i] += (long long)malloc_usable_size(p);
		}
		pthread_barrier_wait(&hold);
		pthread_barrier_wait(&hold);
		for (int k = 0; k < count[i]; k++)
			free(blocks[i][k]);
		pthread_barrier_wait(&freed);
	}
	return NULL;
}

int main(void)
{
	pthread_barrier_init(&start, NULL, T + 1);
	pthread_barrier_init(&hold, NULL, T + 1);
	pthread_barrier_init(&freed, NULL, T + 1);
	pthread_t th[T];
	for (long i = 0; i < T; i++)
		if (pthread_create(&th[i], NULL, run, (void *)i))
			return 1;
	long long limit = ml_global_memory_limit(), worst = -(1LL << 40);
	for (int r = 0; r < ROUNDS; r++) {
		struct ml_stats s;
		ml_stats(&s); /* the heap before: main's and the threads' own */
		pthread_barrier_wait(&start);
		pthread_barrier_wait(&hold);
		long long h = s.live_bytes;
		for (int i = 0; i < T; i++)
			h += held[i];
		if ((h - limit) / T > worst)
			worst = (h - limit) / T;
		pthread_barrier_wait(&hold);
		pthread_barrier_wait(&freed);
	}
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	printf("worst_per_thread %lld\n", worst);
	return 0;
}
