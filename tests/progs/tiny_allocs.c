/* tiny_allocs: run with MEMLIMITS_GLOBAL_MEMORY=10M. THREADS threads
 * (argument, default 4) each malloc(1) until refused; with a second
 * argument "big", each first takes a block of half the limit over THREADS
 * and keeps it. A byte is a 16-byte
 * block: grants counted in requested bytes let a thread take 56 KiB of
 * requests, 896 KiB of blocks, between two looks at the limit, and a new
 * thread's start-up grace of 64 KiB of requests was 1 MiB of blocks (4
 * threads ended 1.1 MiB over the limit). The peak of the measure must stay
 * within the limit plus 64 KiB per thread. Exit 0 iff it does. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

#define LIMIT ((int64_t)10 << 20)

static int big_first;
static pthread_barrier_t start;

static void *hog(void *arg)
{
	long n = 0;
	/* A big block first, kept: the thread's last ratio of blocks to
	 * requests is then about 1, and with room left its next grant was 56
	 * KiB of requests, 896 KiB of malloc(1)'s blocks (16 threads ended
	 * 6-9.5 MB over a 150M limit: a held-out check). */
	void *keep = big_first ? malloc((size_t)LIMIT / 2 / (size_t)big_first) : NULL;
	if (big_first) /* all the big blocks made before any small one */
		pthread_barrier_wait(&start);
	while (n < 5000000 && malloc(1))
		n++;
	*(long *)arg = n;
	free(keep);
	return NULL;
}

int main(int argc, char **argv)
{
	int k = argc > 1 ? atoi(argv[1]) : 4;
	big_first = argc > 2 && argv[2][0] == 'b' ? k : 0;
	if (big_first)
		pthread_barrier_init(&start, NULL, (unsigned)k);
	pthread_t t[64];
	long got[64] = { 0 };
	if (k < 1 || k > 64)
		return 2;
	/* Threads started once the memory is at the limit are refused
	 * (EAGAIN): those that started count. */
	int started = 0;
	for (int i = 0; i < k; i++)
		if (pthread_create(&t[started], NULL, hog, &got[i]) == 0)
			started++;
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	struct ml_stats s;
	ml_stats(&s);
	long over = (long)(s.peak_bytes - LIMIT);
	printf("%d threads: peak %lld bytes, %ld over the limit (bound %d)\n", k,
	       (long long)s.peak_bytes, over, k * 65536);
	if (over > (long)k * 65536) {
		printf("FAILED: the limit did not hold\n");
		return 1;
	}
	return 0;
}
