/* start_room: pthread_create's look at the memory limits (run under
 * MEMLIMITS_GLOBAL_MEMORY) must leave nothing in the measure: a thread
 * creates another, then both wait while main reads the heap before and
 * after. The look admits 64 KiB of room, and a reservation of it (for big
 * blocks) stayed counted. Prints "grew BYTES". */
#include <pthread.h>
#include <stdio.h>

#include "shim/memlimits.h"

static pthread_barrier_t go, made, done;

static void *idle(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&made);
	pthread_barrier_wait(&done);
	return NULL;
}

static void *maker(void *arg)
{
	(void)arg;
	pthread_t u;
	pthread_barrier_wait(&go); /* main has read the heap */
	if (pthread_create(&u, NULL, idle, NULL))
		return NULL;
	pthread_barrier_wait(&made);
	pthread_barrier_wait(&done);
	pthread_join(u, NULL);
	return NULL;
}

int main(void)
{
	pthread_barrier_init(&go, NULL, 2);
	pthread_barrier_init(&made, NULL, 3);
	pthread_barrier_init(&done, NULL, 3);
	pthread_t t;
	if (pthread_create(&t, NULL, maker, NULL))
		return 1;
	struct ml_stats a, b;
	ml_stats(&a);
	pthread_barrier_wait(&go);   /* maker creates u */
	pthread_barrier_wait(&made); /* u is running */
	ml_stats(&b);
	pthread_barrier_wait(&done);
	pthread_join(t, NULL);
	printf("grew %lld\n", (long long)(b.live_bytes - a.live_bytes));
	return 0;
}
