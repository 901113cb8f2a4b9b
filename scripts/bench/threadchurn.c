/* threadchurn.c: short-lived threads that free each other's blocks (issue
 * 13, "thread churn with cross-thread frees"). ROUNDS rounds; each starts
 * THREADS threads at once and joins them. A thread makes STEPS steps: it
 * allocates a block (16 B - 1 KiB, mostly small), writes a tag into it, and
 * swaps it into a random slot of a table shared by all threads; the block
 * it gets back, left there by another thread (often one of an earlier
 * round, which has exited), is checked and freed. Every eighth step it also
 * replaces a block in a small private window of its own, freed by itself.
 * So most frees are of blocks another thread allocated, and the threads
 * that allocated them come and go. Sizes and slots come from a seed per
 * (round, thread); which thread's block a swap returns depends on the
 * scheduling. Exits 3 if a block does not hold its tag.
 *
 *     threadchurn ROUNDS [THREADS=8] [STEPS=4000] [SEED=1] */
#include <pthread.h>

#include "bench.h"

#define SLOTS 8192
#define WINDOW 64

struct hdr { /* at the start of every block */
	uint32_t tag;
	uint32_t size;
};

static struct hdr *slot[SLOTS];
static long steps;
static uint64_t seed;
static int bad;

struct job {
	long round, idx;
	uint64_t sum;
};

static size_t pick_size(struct rng *r)
{
	uint64_t x = rng_next(r) % 100;
	if (x < 70)
		return (size_t)rng_range(r, 16, 128);
	if (x < 95)
		return (size_t)rng_range(r, 129, 512);
	return (size_t)rng_range(r, 513, 1024);
}

static struct hdr *make(struct rng *r)
{
	size_t n = pick_size(r);
	struct hdr *h = malloc(n);
	if (!h)
		abort();
	h->size = (uint32_t)n;
	h->tag = (uint32_t)(n * 2654435761u);
	((unsigned char *)h)[n - 1] = (unsigned char)n;
	return h;
}

static uint64_t check_free(struct hdr *h)
{
	if (!h)
		return 0;
	if (h->tag != (uint32_t)(h->size * 2654435761u) ||
	    ((unsigned char *)h)[h->size - 1] != (unsigned char)h->size)
		__atomic_store_n(&bad, 1, __ATOMIC_RELAXED);
	uint64_t s = h->size;
	free(h);
	return s;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	struct rng r;
	rng_seed(&r, seed * 1000003u + (uint64_t)j->round * 131u + (uint64_t)j->idx);
	struct hdr *win[WINDOW] = {0};
	uint64_t sum = 0;
	for (long k = 0; k < steps; k++) {
		struct hdr *h = make(&r);
		size_t i = (size_t)(rng_next(&r) % SLOTS);
		sum += check_free(__atomic_exchange_n(&slot[i], h, __ATOMIC_ACQ_REL));
		if (k % 8 == 0) {
			size_t w = (size_t)(rng_next(&r) % WINDOW);
			sum += check_free(win[w]);
			win[w] = make(&r);
		}
	}
	for (int w = 0; w < WINDOW; w++)
		sum += check_free(win[w]);
	j->sum = sum;
	return NULL;
}

int main(int argc, char **argv)
{
	long rounds = arg_long(argc, argv, 1, 200);
	long nthr = arg_long(argc, argv, 2, 8);
	steps = arg_long(argc, argv, 3, 4000);
	seed = (uint64_t)arg_long(argc, argv, 4, 1);
	pthread_t *t = calloc((size_t)nthr, sizeof *t);
	struct job *jobs = calloc((size_t)nthr, sizeof *jobs);
	if (!t || !jobs)
		return 1;
	uint64_t sum = 0;
	for (long rd = 0; rd < rounds; rd++) {
		for (long i = 0; i < nthr; i++) {
			jobs[i] = (struct job){.round = rd, .idx = i};
			if (pthread_create(&t[i], NULL, worker, &jobs[i]))
				return 1;
		}
		for (long i = 0; i < nthr; i++) {
			pthread_join(t[i], NULL);
			sum += jobs[i].sum;
		}
	}
	for (int i = 0; i < SLOTS; i++)
		sum += check_free(slot[i]);
	free(t);
	free(jobs);
	if (bad) {
		fprintf(stderr, "threadchurn: a block lost its contents\n");
		return 3;
	}
	printf("%llu\n", (unsigned long long)sum);
	return 0;
}
