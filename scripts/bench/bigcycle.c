/* bigcycle.c: large-block cycles (issue 13, "large blocks"). Each of
 * CYCLES cycles allocates BATCH blocks of 64 KiB - 8 MiB, writes every 4 KiB
 * page of each, checks them, and frees them all (in a shuffled order):
 * what an allocator does with the freed pages between two cycles (keeps
 * them, returns them and faults them in again, or unmaps them) decides
 * the page faults and the time. Block sizes are log-uniform (each power of
 * two from 64 KiB to 4 MiB equally likely as the lower bound, uniform
 * within it), from a fixed seed, so every allocator sees the same requests.
 * Exits 3 if a block does not hold what was written into it.
 *
 *     bigcycle CYCLES [BATCH=8] [SEED=1] */
#include "bench.h"

#define PAGE 4096

int main(int argc, char **argv)
{
	long cycles = arg_long(argc, argv, 1, 300);
	long batch = arg_long(argc, argv, 2, 8);
	struct rng r;
	rng_seed(&r, (uint64_t)arg_long(argc, argv, 3, 1));
	unsigned char **blk = calloc((size_t)batch, sizeof *blk);
	size_t *len = calloc((size_t)batch, sizeof *len);
	long *order = calloc((size_t)batch, sizeof *order);
	if (!blk || !len || !order)
		return 1;
	uint64_t sum = 0;
	for (long c = 0; c < cycles; c++) {
		for (long i = 0; i < batch; i++) {
			unsigned e = (unsigned)rng_range(&r, 16, 22); /* 64 KiB .. 4 MiB */
			size_t n = (size_t)rng_range(&r, (uint64_t)1 << e,
						     ((uint64_t)2 << e) - 1);
			unsigned char *p = malloc(n);
			if (!p)
				return 1;
			for (size_t off = 0; off < n - 1; off += PAGE)
				p[off] = (unsigned char)(c + i + off / PAGE);
			p[n - 1] = (unsigned char)c;
			blk[i] = p;
			len[i] = n;
			order[i] = i;
		}
		for (long i = batch - 1; i > 0; i--) { /* Fisher-Yates */
			long j = (long)(rng_next(&r) % (uint64_t)(i + 1));
			long t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		for (long k = 0; k < batch; k++) {
			long i = order[k];
			unsigned char *p = blk[i];
			int bad = p[len[i] - 1] != (unsigned char)c;
			for (size_t off = 0; off < len[i] - 1; off += PAGE * 64)
				bad |= p[off] != (unsigned char)(c + i + off / PAGE);
			if (bad) {
				fprintf(stderr, "bigcycle: a block lost its contents\n");
				return 3;
			}
			sum += p[0];
			free(p);
		}
	}
	free(blk);
	free(len);
	free(order);
	printf("%llu\n", (unsigned long long)sum);
	return 0;
}
