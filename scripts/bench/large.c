/* large.c: large allocations. A window of LIVE blocks of random sizes
 * 1..8 MiB (fixed seed); each of OPS steps frees a random block, allocates
 * a new one and touches one byte per 4 KiB page of it. Prints a checksum.
 *
 *     large OPS [LIVE=4] [SEED=1] */
#include "bench.h"

#define PAGE 4096

int main(int argc, char **argv)
{
	long ops = arg_long(argc, argv, 1, 20000);
	long live = arg_long(argc, argv, 2, 4);
	struct rng r;
	rng_seed(&r, (uint64_t)arg_long(argc, argv, 3, 1));
	unsigned char **blk = calloc((size_t)live, sizeof *blk);
	size_t *len = calloc((size_t)live, sizeof *len);
	if (!blk || !len)
		return 1;
	uint64_t sum = 0;
	for (long k = 0; k < ops + live; k++) {
		long i = k < live ? k : (long)(rng_next(&r) % (uint64_t)live);
		if (blk[i])
			sum += blk[i][len[i] - 1];
		free(blk[i]);
		size_t n = (size_t)rng_range(&r, 1 << 20, 8 << 20);
		unsigned char *p = malloc(n);
		if (!p)
			return 1;
		for (size_t off = 0; off < n; off += PAGE)
			p[off] = (unsigned char)k;
		p[n - 1] = 1;
		blk[i] = p;
		len[i] = n;
	}
	for (long i = 0; i < live; i++)
		free(blk[i]);
	free(blk);
	free(len);
	printf("%llu\n", (unsigned long long)sum);
	return 0;
}
