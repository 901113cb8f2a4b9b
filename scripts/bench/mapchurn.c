/* mapchurn.c: the mmap family itself, as runtimes use it. A window of LIVE
 * private anonymous mappings of 1 MiB; each of OPS steps unmaps a random
 * one and maps a new one, alternately written at once (an arena: one byte
 * per 4 KiB page) or reserved PROT_NONE and committed with mprotect (V8's
 * pages) and half of it decommitted with PROT_NONE before its unmap.
 * Prints a checksum.
 *
 *     mapchurn OPS [LIVE=64] [SEED=1] */
#include <sys/mman.h>

#include "bench.h"

#define PAGE 4096
#define MB ((size_t)1 << 20)

int main(int argc, char **argv)
{
	long ops = arg_long(argc, argv, 1, 100000);
	long live = arg_long(argc, argv, 2, 64);
	struct rng r;
	rng_seed(&r, (uint64_t)arg_long(argc, argv, 3, 1));
	unsigned char **m = calloc((size_t)live, sizeof *m);
	if (!m)
		return 1;
	uint64_t sum = 0;
	for (long k = 0; k < ops + live; k++) {
		long i = k < live ? k : (long)(rng_next(&r) % (uint64_t)live);
		if (m[i]) {
			sum += m[i][MB - 1];
			munmap(m[i], MB);
		}
		unsigned char *p;
		if (k % 2) {
			p = mmap(NULL, MB, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED)
				return 1;
		} else {
			p = mmap(NULL, MB, PROT_NONE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			if (p == MAP_FAILED ||
			    mprotect(p, MB, PROT_READ | PROT_WRITE) != 0)
				return 1;
		}
		for (size_t off = 0; off < MB; off += PAGE)
			p[off] = (unsigned char)(k + off);
		if (k % 2 == 0 && mprotect(p, MB / 2, PROT_NONE) != 0)
			return 1;
		if (k % 2 == 0)
			p[MB - 1] = (unsigned char)k;
		m[i] = p;
	}
	printf("%llu\n", (unsigned long long)sum);
	return 0;
}
