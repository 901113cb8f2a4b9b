/* leakexit.c: threads that leave blocks behind and exit (issue 13,
 * "leak-and-exit threads"). ROUNDS rounds; each starts THREADS threads at
 * once and joins them. A thread allocates BLOCKS blocks (16 B - 2 KiB,
 * mostly small) in a window of 256, freeing a random earlier one at each
 * step, so most of its blocks die young; of the blocks still in its window
 * at the end it frees half, hands the other half to the main thread, and
 * drops one pointer in 512 of all it allocated without freeing it (a leak,
 * so that the heap grows slowly over the run). The main thread frees what
 * a round handed over KEEP = 4 rounds later, so blocks of exited threads
 * stay live across several thread lifetimes and are freed by another
 * thread. Sizes come from a seed per (round, thread). Exits 3 if a block
 * does not hold its tag.
 *
 *     leakexit ROUNDS [THREADS=4] [BLOCKS=3000] [SEED=1] */
#include <pthread.h>
#include <string.h>

#include "bench.h"

#define WINDOW 256
#define KEEP_ROUNDS 4
#define LEAK_EVERY 512

static long blocks;
static uint64_t seed;

struct job {
	long round, idx;
	unsigned char *handed[WINDOW]; /* given to main, NULL-padded */
	uint64_t sum;
	int bad;
};

static unsigned char *make(struct rng *r)
{
	uint64_t x = rng_next(r) % 100;
	size_t n = x < 75 ? (size_t)rng_range(r, 16, 128)
		 : x < 95 ? (size_t)rng_range(r, 129, 512)
			  : (size_t)rng_range(r, 513, 2048);
	unsigned char *p = malloc(n);
	if (!p)
		abort();
	uint32_t v = (uint32_t)n;
	memcpy(p, &v, sizeof v);
	p[n - 1] = (unsigned char)(n * 7);
	return p;
}

/* The block's size if its tag is intact, 0 if not. */
static uint32_t check(const unsigned char *p)
{
	uint32_t n;
	memcpy(&n, p, sizeof n);
	return n >= 16 && n <= 2048 && p[n - 1] == (unsigned char)(n * 7) ? n : 0;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	struct rng r;
	rng_seed(&r, seed * 1000003u + (uint64_t)j->round * 131u + (uint64_t)j->idx);
	unsigned char *win[WINDOW] = {0};
	uint64_t sum = 0;
	for (long k = 0; k < blocks; k++) {
		size_t i = (size_t)(rng_next(&r) % WINDOW);
		if (win[i]) {
			uint32_t n = check(win[i]);
			j->bad |= n == 0;
			sum += n;
			if (k % LEAK_EVERY != 0)
				free(win[i]);
			/* else: leaked, the pointer is dropped */
		}
		win[i] = make(&r);
	}
	int h = 0;
	for (int i = 0; i < WINDOW; i++) {
		if (!win[i])
			continue;
		if (i % 2) {
			j->handed[h++] = win[i];
		} else {
			uint32_t n = check(win[i]);
			j->bad |= n == 0;
			sum += n;
			free(win[i]);
		}
	}
	j->sum = sum;
	return NULL;
}

int main(int argc, char **argv)
{
	long rounds = arg_long(argc, argv, 1, 300);
	long nthr = arg_long(argc, argv, 2, 4);
	blocks = arg_long(argc, argv, 3, 3000);
	seed = (uint64_t)arg_long(argc, argv, 4, 1);
	pthread_t *t = calloc((size_t)nthr, sizeof *t);
	/* KEEP_ROUNDS + 1 generations of jobs: the handed blocks of a round
	 * stay in its jobs until main frees them, KEEP_ROUNDS rounds later; the
	 * last KEEP_ROUNDS + 1 iterations only free. */
	struct job *jobs = calloc((size_t)nthr * (KEEP_ROUNDS + 1), sizeof *jobs);
	if (!t || !jobs)
		return 1;
	uint64_t sum = 0;
	int bad = 0;
	for (long rd = 0; rd <= rounds + KEEP_ROUNDS; rd++) {
		struct job *gen = jobs + (size_t)nthr * (size_t)(rd % (KEEP_ROUNDS + 1));
		/* These slots held round rd - KEEP_ROUNDS - 1, which ended
		 * KEEP_ROUNDS rounds ago: free what it handed over. */
		for (long i = 0; i < nthr; i++)
			for (int k = 0; k < WINDOW && gen[i].handed[k]; k++) {
				uint32_t n = check(gen[i].handed[k]);
				bad |= n == 0;
				sum += n;
				free(gen[i].handed[k]);
			}
		if (rd >= rounds) { /* the tail: only freeing */
			memset(gen, 0, (size_t)nthr * sizeof *gen);
			continue;
		}
		for (long i = 0; i < nthr; i++) {
			memset(&gen[i], 0, sizeof gen[i]);
			gen[i].round = rd;
			gen[i].idx = i;
			if (pthread_create(&t[i], NULL, worker, &gen[i]))
				return 1;
		}
		for (long i = 0; i < nthr; i++) {
			pthread_join(t[i], NULL);
			sum += gen[i].sum;
			bad |= gen[i].bad;
		}
	}
	free(t);
	free(jobs);
	if (bad) {
		fprintf(stderr, "leakexit: a block lost its contents\n");
		return 3;
	}
	printf("%llu\n", (unsigned long long)sum);
	return 0;
}
