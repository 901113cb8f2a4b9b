/* far_lane: a thread far from MEMLIMITS_GLOBAL_MEMORY refills its grant
 * without looking at the measure (memory.c, FAR_REFILLS); the room can go
 * meanwhile. Thread A allocates 1 KiB blocks (an exact size class), far
 * from the limit, and stops in the middle of its plain refills; thread B
 * then fills the limit with 8 KiB blocks until refused (under
 * MLI_PEAK_NOTE: a big block's refusal would open the collector's room); A goes on until
 * refused. Everything is freed and it starts again; 40 rounds. Prints
 * "worst_over": the most the heap went over the limit, in bytes (the
 * README's bound: 64 KiB a thread, two threads here). Without the room's
 * check at each plain refill (mli_mem_far_refill), A took up to 8 grants
 * of 56 KiB past the limit. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

#define ROUNDS 40
#define SMALL 1024
#define MAX_SMALL 200000
#define MAX_BIG 20000

static pthread_barrier_t paused, filled, done;
static void *small[MAX_SMALL], *big[MAX_BIG];
static int nsmall, nbig;

static void *thread_a(void *arg)
{
	long round = (long)arg;
	/* Into the lane's plain refills: a different point of them in each
	 * round (a grant is 56 KiB of requests). */
	int first = 100 + (int)(round * 37 % 400);
	nsmall = 0;
	for (int i = 0; i < first; i++)
		if ((small[nsmall] = malloc(SMALL)) != NULL)
			nsmall++;
	pthread_barrier_wait(&paused);
	pthread_barrier_wait(&filled);
	void *p;
	while (nsmall < MAX_SMALL && (p = malloc(SMALL)) != NULL)
		small[nsmall++] = p;
	pthread_barrier_wait(&done);
	return NULL;
}

static void *thread_b(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&paused);
	void *p;
	nbig = 0;
	while (nbig < MAX_BIG && (p = malloc(8192)) != NULL)
		big[nbig++] = p;
	pthread_barrier_wait(&filled);
	pthread_barrier_wait(&done);
	return NULL;
}

int main(void)
{
	long long limit = ml_global_memory_limit(), worst = -(1LL << 40);
	if (limit <= 0) {
		fprintf(stderr, "far_lane: needs MEMLIMITS_GLOBAL_MEMORY\n");
		return 2;
	}
	for (long r = 0; r < ROUNDS; r++) {
		pthread_barrier_init(&paused, NULL, 2);
		pthread_barrier_init(&filled, NULL, 2);
		pthread_barrier_init(&done, NULL, 3);
		pthread_t a, b;
		if (pthread_create(&a, NULL, thread_a, (void *)r) ||
		    pthread_create(&b, NULL, thread_b, NULL))
			return 1;
		pthread_barrier_wait(&done);
		struct ml_stats s;
		ml_stats(&s);
		if (s.live_bytes - limit > worst)
			worst = s.live_bytes - limit;
		pthread_join(a, NULL);
		pthread_join(b, NULL);
		for (int i = 0; i < nsmall; i++)
			free(small[i]);
		for (int i = 0; i < nbig; i++)
			free(big[i]);
		pthread_barrier_destroy(&paused);
		pthread_barrier_destroy(&filled);
		pthread_barrier_destroy(&done);
		if (nbig == 0 || nsmall < 100) {
			fprintf(stderr, "far_lane: round %ld: %d big, %d small blocks\n",
				r, nbig, nsmall);
			return 1;
		}
	}
	printf("worst_over %lld\n", worst);
	return 0;
}
