/* late_tiny: 4 threads in ml_limit_global_memory tasks make malloc(1)
 * blocks (16 bytes each, kept); another thread sets the global limit to 1
 * byte. Prints "most_after_bytes": the most blocks one thread got from
 * allocations begun after the set returned, in bytes of blocks. Their
 * grants are of requests: up to 94 KiB of blocks went on that old grant
 * before the activity callback looked at the limits' change (memory.c,
 * look). The README's bound: 64 KiB a thread. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "shim/memlimits.h"

#define THREADS 4
static int set_done, go;
static long long after[THREADS];

static void *task(void *arg)
{
	long i = (long)arg;
	for (long k = 0; k < (4L << 20); k++) {
		int seen = __atomic_load_n(&set_done, __ATOMIC_ACQUIRE);
		if (!malloc(1)) /* kept: the heap grows */
			break;
		after[i] += seen;
	}
	return NULL;
}

static void *thread(void *arg)
{
	while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
		;
	void *r;
	ml_limit_global_memory(task, arg, &r);
	return NULL;
}

int main(void)
{
	ml_start();
	pthread_t th[THREADS];
	for (long i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, thread, (void *)i);
	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	ml_set_global_memory_limit(1);
	__atomic_store_n(&set_done, 1, __ATOMIC_RELEASE);
	long long most = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		if (after[i] > most)
			most = after[i];
	}
	printf("most_after_bytes=%lld\n", most * 16);
	return 0;
}
