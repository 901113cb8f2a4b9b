/* bench.h: what the benchmark's workload programs share: a fixed-seed PRNG
 * (so that every allocator sees the same sequence of requests), a clock, and
 * argument parsing. Header-only; each workload is one .c file. */
#ifndef BENCH_H
#define BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* xorshift64*: fast, deterministic, good enough for picking sizes. */
struct rng {
	uint64_t s;
};
static inline void rng_seed(struct rng *r, uint64_t seed)
{
	r->s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
	if (!r->s)
		r->s = 1;
}
static inline uint64_t rng_next(struct rng *r)
{
	uint64_t x = r->s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545F4914F6CDD1Dull;
}
/* Uniform in [lo, hi]. */
static inline uint64_t rng_range(struct rng *r, uint64_t lo, uint64_t hi)
{
	return lo + (rng_next(r) >> 11) % (hi - lo + 1);
}

static inline double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* argv[i] as a positive count, or dflt if absent. */
static inline long arg_long(int argc, char **argv, int i, long dflt)
{
	if (i >= argc)
		return dflt;
	char *end;
	long v = strtol(argv[i], &end, 10);
	if (*end || v <= 0) {
		fprintf(stderr, "%s: argument %d must be a positive number, not '%s'\n",
			argv[0], i, argv[i]);
		exit(2);
	}
	return v;
}

/* Keeps a value alive so the compiler cannot drop the work behind it. */
#define KEEP(x) __asm__ volatile("" : : "r"(x) : "memory")

#endif
