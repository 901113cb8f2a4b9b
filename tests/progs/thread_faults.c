/* thread_faults: page faults a short-lived thread costs, after a warm-up.
 *
 *     thread_faults seq [THREADS=300]
 *         threads one after another; each allocates one block of each
 *         size class from 16 bytes to 14 KiB (its cache bins fill, writing
 *         its whole cache-bin array) and frees them. jemalloc allocates a
 *         thread's cache-bin array zeroed from the extent the previous
 *         thread's left, and zeroes a recycled extent by MADV_DONTNEED:
 *         stock jemalloc refaulted it, 12 faults a thread; glibc 0
 *         (preload/jezero.c).
 *     thread_faults handoff [ROUNDS=100]
 *         rounds of 4 threads at once; each allocates 1,000 blocks of 64 B
 *         - 1 KiB, writes them and hands them to the main thread, which
 *         frees them two rounds later. An arena left with no thread was
 *         purged whole by jemalloc at the thread's exit, and the next
 *         round's threads faulted its pages in again: 47 faults a thread
 *         with stock jemalloc, 7 with glibc (preload/jedecay.c).
 *
 * Prints "faults per thread: F"; exit 0 (the caller judges the figure). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define PER 1000
#define WIDTH 4

static void *classes(void *arg)
{
	(void)arg;
	void *p[64];
	int k = 0;
	for (size_t s = 16; s <= 14336 && k < 64; s += s / 4 > 16 ? s / 4 : 16)
		p[k++] = malloc(s);
	while (k)
		free(p[--k]);
	return NULL;
}

static void *handoff(void *arg)
{
	void **out = arg;
	uint64_t x = (uintptr_t)arg | 1;
	for (int i = 0; i < PER; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		size_t n = 64 + (x >> 33) % 961;
		out[i] = malloc(n);
		if (out[i])
			memset(out[i], 1, n);
	}
	return NULL;
}

static long faults(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return u.ru_minflt;
}

static void start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	if (pthread_create(t, NULL, fn, arg) != 0) {
		perror("pthread_create");
		exit(1);
	}
}

static void seq_round(void)
{
	pthread_t t;
	start(&t, classes, NULL);
	pthread_join(t, NULL);
}

static void *held[3][WIDTH][PER];

static void handoff_round(int r)
{
	pthread_t t[WIDTH];
	void *(*mine)[PER] = held[r % 3];
	for (int i = 0; i < WIDTH; i++)
		start(&t[i], handoff, mine[i]);
	for (int i = 0; i < WIDTH; i++)
		pthread_join(t[i], NULL);
	void *(*old)[PER] = held[(r + 1) % 3]; /* two rounds old */
	for (int i = 0; i < WIDTH; i++)
		for (int j = 0; j < PER; j++) {
			free(old[i][j]);
			old[i][j] = NULL;
		}
}

int main(int argc, char **argv)
{
	int ho = argc > 1 && strcmp(argv[1], "handoff") == 0;
	int n = argc > 2 ? atoi(argv[2]) : ho ? 100 : 300;
	for (int i = 0; i < 20; i++)
		ho ? handoff_round(i) : seq_round();
	long f0 = faults();
	for (int i = 0; i < n; i++)
		ho ? handoff_round(20 + i) : seq_round();
	printf("faults per thread: %.2f\n",
	       (double)(faults() - f0) / (n * (ho ? WIDTH : 1)));
	return 0;
}
