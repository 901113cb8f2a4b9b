/* peak_work KIND: workloads whose peak memory is known, for the report's
 * and ml_stats' peak (issue 12: the peak must include every admitted
 * block). Prints "expect=<bytes> stats_peak=<ml_stats peak_bytes>".
 *   big       malloc 100 MiB, touch it, free it
 *   many      8192 blocks of 10000 bytes held at once, then freed
 *   consumer  a producer thread allocates 256 MiB in 4 KiB blocks that a
 *             consumer thread frees as they come, at most 1024 in flight:
 *             the peak stays near 4 MiB however much passes through
 *   calloc    calloc 64 MiB (jemalloc may map it zeroed), free it
 *   thread-first  three threads in turn malloc 30 MiB as the process's
 *             first block, and free it
 *   resizers  8 threads each make a block of 100,000 bytes, realloc it to
 *             100,000-400,000 (seeded) and free it, 50,000 times: at most
 *             8 blocks of 400 KB held at once */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

#define RING 1024
static void *ring[RING];
static volatile long head, tail; /* produced, consumed */
static long total;

static void *producer(void *arg)
{
	for (long i = 0; i < total; i++) {
		while (head - __atomic_load_n(&tail, __ATOMIC_ACQUIRE) >= RING)
			;
		void *p = malloc(4096);
		if (!p)
			abort();
		memset(p, 1, 64);
		ring[i % RING] = p;
		__atomic_store_n(&head, i + 1, __ATOMIC_RELEASE);
	}
	return arg;
}

static void *consumer(void *arg)
{
	for (long i = 0; i < total; i++) {
		while (__atomic_load_n(&head, __ATOMIC_ACQUIRE) <= i)
			;
		free(ring[i % RING]);
		__atomic_store_n(&tail, i + 1, __ATOMIC_RELEASE);
	}
	return arg;
}

#define FIRST ((size_t)30 << 20)

static void *first_block(void *arg)
{
	char *volatile p = malloc(FIRST);
	if (!p)
		abort();
	p[0] = 1;
	free(p);
	return arg;
}

static void *(*volatile resize)(void *, size_t) = realloc;

static void *resizer(void *arg)
{
	unsigned seed = (unsigned)(long)arg + 1;
	for (long i = 0; i < 50000; i++) {
		void *q = malloc(100000);
		void *r = q ? resize(q, 100000 + (size_t)(rand_r(&seed) % 300000)) : NULL;
		free(r ? r : q);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *kind = argc > 1 ? argv[1] : "";
	long long expect = 0;
	if (!strcmp(kind, "big")) {
		size_t n = (size_t)100 << 20;
		char *volatile p = malloc(n);
		if (!p)
			return 2;
		memset(p, 1, n);
		free(p);
		expect = (long long)n;
	} else if (!strcmp(kind, "many")) {
		enum { N = 8192 };
		static void *b[N];
		for (int i = 0; i < N; i++)
			if (!(b[i] = malloc(10000)))
				return 2;
		for (int i = 0; i < N; i++)
			free(b[i]);
		expect = (long long)N * 10000;
	} else if (!strcmp(kind, "consumer")) {
		total = (256 << 20) / 4096;
		pthread_t a, b;
		pthread_create(&b, NULL, consumer, NULL);
		pthread_create(&a, NULL, producer, NULL);
		pthread_join(a, NULL);
		pthread_join(b, NULL);
		expect = (long long)RING * 4096;
	} else if (!strcmp(kind, "calloc")) {
		size_t n = (size_t)64 << 20;
		char *volatile p = calloc(1, n);
		if (!p)
			return 2;
		p[n - 1] = 1;
		free(p);
		expect = (long long)n;
	} else if (!strcmp(kind, "thread-first")) {
		/* Nothing allocated before: each thread's first block is its
		 * first figure, and a thread whose live bytes are negative
		 * (it frees its start's block, which the parent allocated)
		 * had its estimate taken again after its block was reserved:
		 * the peak counted the block twice (a held-out check). */
		for (int i = 0; i < 3; i++) {
			pthread_t t;
			pthread_create(&t, NULL, first_block, NULL);
			pthread_join(t, NULL);
		}
		expect = (long long)FIRST;
	} else if (!strcmp(kind, "resizers")) {
		pthread_t t[8];
		for (long i = 0; i < 8; i++)
			pthread_create(&t[i], NULL, resizer, (void *)i);
		for (int i = 0; i < 8; i++)
			pthread_join(t[i], NULL);
		expect = 8 * 400000;
	} else {
		fprintf(stderr, "usage: peak_work big|many|consumer|calloc|thread-first|resizers\n");
		return 1;
	}
	struct ml_stats s;
	if (ml_stats(&s) != ML_OK)
		return 3;
	printf("expect=%lld stats_peak=%lld\n", expect, (long long)s.peak_bytes);
	return 0;
}
