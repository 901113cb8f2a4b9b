/* randstress.c: random allocation stress, THREADS threads (issue 13, "random
 * alloc/free stress"; 2 threads by default). Each thread owns a table of
 * SLOTS blocks and makes STEPS random steps from its own seed. A step picks
 * a slot: nine times in ten among the first tenth of the table (blocks that
 * die young), else anywhere (blocks that live long); frees what the slot
 * holds, after checking it, and allocates a new block there, by malloc
 * (85%), calloc (10%) or by realloc of the old one (5%). Sizes follow a
 * program-like distribution: 55% 8-64 B, 30% 65-256 B, 11% 257 B - 4 KiB,
 * 3.5% 4-64 KiB, 0.5% 64 KiB - 1 MiB. The first 8 bytes, the last one and
 * one in every 4 KiB page of every block are written (a calloc'ed block is
 * checked to be zero first, in three places). Exits 3 if a block does not
 * hold what was written into it.
 *
 *     randstress STEPS [THREADS=2] [SLOTS=30000] [SEED=1] */
#include <pthread.h>
#include <string.h>

#include "bench.h"

static long steps, slots;
static uint64_t seed;

struct job {
	long idx;
	uint64_t sum;
	int bad;
};

static size_t pick_size(struct rng *r)
{
	uint64_t x = rng_next(r) % 1000;
	if (x < 550)
		return (size_t)rng_range(r, 8, 64);
	if (x < 850)
		return (size_t)rng_range(r, 65, 256);
	if (x < 960)
		return (size_t)rng_range(r, 257, 4096);
	if (x < 995)
		return (size_t)rng_range(r, 4097, 65536);
	return (size_t)rng_range(r, 65537, 1 << 20);
}

static uint64_t mark(size_t n)
{
	return (uint64_t)n * 0x9E3779B97F4A7C15ull;
}

/* The first (up to) 8 bytes hold mark(n); a block longer than 8 bytes also
 * ends with a byte derived from n; one byte in every 4 KiB page in between
 * is written, as a program would use the block (so that peak RSS counts
 * the pages of live blocks). */
static void put(unsigned char *p, size_t n)
{
	uint64_t m = mark(n);
	for (size_t off = 4096; off + 1 < n; off += 4096)
		p[off] = (unsigned char)off;
	memcpy(p, &m, n < 8 ? n : 8);
	if (n > 8)
		p[n - 1] = (unsigned char)(n * 13 + 1);
}

static int ok(const unsigned char *p, size_t n)
{
	uint64_t m = mark(n);
	return memcmp(p, &m, n < 8 ? n : 8) == 0 &&
	       (n <= 8 || p[n - 1] == (unsigned char)(n * 13 + 1));
}

static void *worker(void *arg)
{
	struct job *j = arg;
	struct rng r;
	rng_seed(&r, seed * 1000003u + (uint64_t)j->idx);
	unsigned char **blk = calloc((size_t)slots, sizeof *blk);
	size_t *len = calloc((size_t)slots, sizeof *len);
	if (!blk || !len)
		abort();
	long young = slots / 10 > 0 ? slots / 10 : 1;
	uint64_t sum = 0;
	for (long k = 0; k < steps; k++) {
		uint64_t x = rng_next(&r);
		long i = x % 10 ? (long)((x >> 8) % (uint64_t)young)
				: (long)((x >> 8) % (uint64_t)slots);
		size_t n = pick_size(&r);
		uint64_t how = rng_next(&r) % 100;
		unsigned char *p;
		if (blk[i]) {
			j->bad |= !ok(blk[i], len[i]);
			sum += len[i];
		}
		if (how < 5 && blk[i]) {
			p = realloc(blk[i], n);
			if (!p)
				abort();
			/* The kept prefix moved with the block. */
			size_t keep = n < len[i] ? n : len[i];
			uint64_t m = mark(len[i]);
			j->bad |= memcmp(p, &m, keep < 8 ? keep : 8) != 0;
		} else {
			free(blk[i]);
			if (how < 15) {
				p = calloc(1, n);
				if (!p)
					abort();
				j->bad |= p[0] != 0 || p[n - 1] != 0 || p[n / 2] != 0;
			} else {
				p = malloc(n);
				if (!p)
					abort();
			}
		}
		put(p, n);
		blk[i] = p;
		len[i] = n;
	}
	for (long i = 0; i < slots; i++) {
		if (blk[i]) {
			j->bad |= !ok(blk[i], len[i]);
			sum += len[i];
		}
		free(blk[i]);
	}
	free(blk);
	free(len);
	j->sum = sum;
	return NULL;
}

int main(int argc, char **argv)
{
	steps = arg_long(argc, argv, 1, 5000000);
	long nthr = arg_long(argc, argv, 2, 2);
	slots = arg_long(argc, argv, 3, 30000);
	seed = (uint64_t)arg_long(argc, argv, 4, 1);
	pthread_t *t = calloc((size_t)nthr, sizeof *t);
	struct job *jobs = calloc((size_t)nthr, sizeof *jobs);
	if (!t || !jobs)
		return 1;
	for (long i = 0; i < nthr; i++) {
		jobs[i].idx = i;
		if (pthread_create(&t[i], NULL, worker, &jobs[i]))
			return 1;
	}
	uint64_t sum = 0;
	int bad = 0;
	for (long i = 0; i < nthr; i++) {
		pthread_join(t[i], NULL);
		sum += jobs[i].sum;
		bad |= jobs[i].bad;
	}
	free(t);
	free(jobs);
	if (bad) {
		fprintf(stderr, "randstress: a block lost its contents\n");
		return 3;
	}
	printf("%llu\n", (unsigned long long)sum);
	return 0;
}
