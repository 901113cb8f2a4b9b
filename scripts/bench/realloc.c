/* realloc.c: realloc growth. NBUF buffers grow in turn by small random steps
 * (16..4096 bytes, fixed seed), each step written like an append, until a
 * buffer reaches its random target size (1..4 MiB); then it is freed and
 * starts again from nothing. STEPS reallocs in all. Prints a checksum.
 *
 *     realloc STEPS [NBUF=8] [SEED=1] */
#include <string.h>

#include "bench.h"

int main(int argc, char **argv)
{
	long steps = arg_long(argc, argv, 1, 2000000);
	long nbuf = arg_long(argc, argv, 2, 8);
	struct rng r;
	rng_seed(&r, (uint64_t)arg_long(argc, argv, 3, 1));
	unsigned char **buf = calloc((size_t)nbuf, sizeof *buf);
	size_t *len = calloc((size_t)nbuf, sizeof *len);
	size_t *target = calloc((size_t)nbuf, sizeof *target);
	if (!buf || !len || !target)
		return 1;
	for (long i = 0; i < nbuf; i++)
		target[i] = (size_t)rng_range(&r, 1 << 20, 4 << 20);
	uint64_t sum = 0;
	for (long k = 0; k < steps; k++) {
		long i = k % nbuf;
		size_t step = (size_t)rng_range(&r, 16, 4096);
		unsigned char *p = realloc(buf[i], len[i] + step);
		if (!p)
			return 1;
		memset(p + len[i], (int)(k & 0xff), step);
		buf[i] = p;
		len[i] += step;
		if (len[i] >= target[i]) {
			sum += p[len[i] / 2] + len[i];
			free(p);
			buf[i] = NULL;
			len[i] = 0;
			target[i] = (size_t)rng_range(&r, 1 << 20, 4 << 20);
		}
	}
	for (long i = 0; i < nbuf; i++)
		free(buf[i]);
	free(buf);
	free(len);
	free(target);
	printf("%llu\n", (unsigned long long)sum);
	return 0;
}
