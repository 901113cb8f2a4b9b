/* soft_later: a pressure callback registered just over the memory while
 * another thread holds a grant; that thread then asks for one block of
 * 900,000 bytes. Prints "fired_after_block N": the callback's runs when the
 * block was returned (1: before it returned, as the header says). Grants of
 * 1 MiB (tried once) admitted the block on the fast path, and the callback
 * ran only at the thread's next allocation (a held-out check). The
 * callback allocates 2 MiB itself: the memory before it (the block is not
 * made yet) was below 90% of the threshold, so it re-armed and crossed
 * again, and the callback ran for ever. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

static pthread_barrier_t b1, b2;
/* Through a volatile pointer: free(malloc(n)) may be compiled away. */
static void *(*volatile alloc)(size_t) = malloc;
static volatile int calls, fired_after_block = -1;

static void note(int64_t mem, int64_t th, void *arg)
{
	(void)mem;
	(void)th;
	(void)arg;
	calls++;
	free(alloc(2 << 20));
}

static void *holds_a_grant(void *arg)
{
	(void)arg;
	void *q[100];
	for (int i = 0; i < 100; i++)
		q[i] = malloc(1024);
	for (int i = 0; i < 100; i++)
		free(q[i]);
	pthread_barrier_wait(&b1);
	pthread_barrier_wait(&b2);
	void *p = alloc(900000);
	fired_after_block = calls;
	free(p);
	return NULL;
}

int main(void)
{
	if (ml_start() != ML_OK)
		return 2;
	pthread_barrier_init(&b1, NULL, 2);
	pthread_barrier_init(&b2, NULL, 2);
	pthread_t th;
	if (pthread_create(&th, NULL, holds_a_grant, NULL))
		return 1;
	pthread_barrier_wait(&b1);
	struct ml_stats s;
	ml_stats(&s);
	/* Past 90% of it (before the block) by a fifth of the memory. */
	int64_t mem = s.live_bytes + s.mapped_bytes;
	int64_t over = mem / 5 > 100 * 1024 ? mem / 5 : 100 * 1024;
	if (over > 800 * 1024)
		return 3; /* the block must cross it */
	if (ml_on_memory_pressure(mem + over, note, NULL) != ML_OK)
		return 1;
	pthread_barrier_wait(&b2);
	pthread_join(th, NULL);
	printf("fired_after_block %d\ncalls %d\n", fired_after_block, calls);
	return 0;
}
