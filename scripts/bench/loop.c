/* loop.c: the fast-path micro benchmark: N iterations of malloc(size) and
 * free. Run under callgrind, preloaded with jemalloc or memlimits; the
 * difference between two values of N is the per-iteration cost. */
#include <stdlib.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	size_t size = argc > 2 ? (size_t)atol(argv[2]) : 64;
	for (long i = 0; i < n; i++) {
		void *p = malloc(size);
		__asm__ volatile("" : : "r"(p) : "memory"); /* keep the pair */
		free(p);
	}
	return 0;
}
