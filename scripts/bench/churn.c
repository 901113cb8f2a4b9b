/* churn.c: single-thread small-object churn. A window of SLOTS live objects;
 * each of OPS steps frees a random slot and refills it with a new object of
 * a random size in 16..512 bytes (fixed seed), writing its first and last
 * byte. Prints a checksum.
 *
 *     churn OPS [SLOTS=10000] [SEED=1] */
#include "bench.h"

int main(int argc, char **argv)
{
	long ops = arg_long(argc, argv, 1, 20000000);
	long slots = arg_long(argc, argv, 2, 10000);
	struct rng r;
	rng_seed(&r, (uint64_t)arg_long(argc, argv, 3, 1));
	unsigned char **slot = calloc((size_t)slots, sizeof *slot);
	size_t *len = calloc((size_t)slots, sizeof *len);
	if (!slot || !len)
		return 1;
	uint64_t sum = 0;
	for (long i = 0; i < slots; i++) {
		len[i] = rng_range(&r, 16, 512);
		slot[i] = malloc(len[i]);
		if (!slot[i])
			return 1;
		slot[i][0] = (unsigned char)i;
		slot[i][len[i] - 1] = 1;
	}
	for (long k = 0; k < ops; k++) {
		uint64_t x = rng_next(&r);
		long i = (long)((x >> 20) % (uint64_t)slots);
		size_t n = 16 + (size_t)(x & 511) % 497; /* 16..512 */
		sum += slot[i][0] + slot[i][len[i] - 1];
		free(slot[i]);
		unsigned char *p = malloc(n);
		if (!p)
			return 1;
		p[0] = (unsigned char)k;
		p[n - 1] = 1;
		slot[i] = p;
		len[i] = n;
	}
	for (long i = 0; i < slots; i++)
		free(slot[i]);
	free(slot);
	free(len);
	printf("%llu\n", (unsigned long long)sum);
	return 0;
}
