/* prof_mem: sampled blocks work as memory. At rate 1 every allocation is
 * sampled, and the tracker records each block it saw, so each check first
 * confirms that the block under test is a sampled one. Prints one line per
 * failed check ("FAIL ..."), then "checks N", "failures F", "sampled S". */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

static int checks, failures, sampled_ok, sampled_expected;
static void *volatile last_block; /* volatile: malloc is declared leaf */
static size_t last_size;

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)data;
	last_block = s->block;
	last_size = s->size;
	return NULL;
}

static void check(int ok, const char *what, size_t n)
{
	checks++;
	if (!ok) {
		failures++;
		printf("FAIL %s (size %zu)\n", what, n);
	}
}

/* p came from the allocation just made: was it reported as sampled? */
static void was_sampled(void *p, size_t n, const char *what)
{
	int ok = p && last_block == p && last_size == n;
	sampled_ok += ok;
	sampled_expected++;
	check(ok, what, n);
	last_block = NULL;
}

static int all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static const size_t sizes[] = { 1, 16, 100, 4000, 4096, 5000, 70000, 1 << 20 };
#define NS (sizeof sizes / sizeof sizes[0])

int main(void)
{
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	printf("begin\n");
	ml_tracker tr = { on_alloc, NULL, NULL };
	ml_status st = ml_memprof_start(1.0, 4, &tr);
	if (st != ML_OK) {
		printf("start %d\n", (int)st);
		return 1;
	}
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < NS; i++) {
			size_t n = sizes[i];
			/* Dirty a block, free it, then calloc the same size: a
			 * recycled slot must come back zeroed. */
			unsigned char *d = malloc(n);
			was_sampled(d, n, "malloc sampled");
			if (!d)
				continue;
			check(malloc_usable_size(d) >= n, "malloc_usable_size >= n", n);
			memset(d, 0xA5, malloc_usable_size(d));
			free(d);
			unsigned char *z = calloc(1, n);
			was_sampled(z, n, "calloc sampled");
			if (!z)
				continue;
			check(all_zero(z, n), "calloc zeroed", n);
			check(malloc_usable_size(z) >= n, "calloc usable >= n", n);
			/* realloc keeps the contents, growing and shrinking */
			for (size_t k = 0; k < n; k++)
				z[k] = (unsigned char)(k * 7 + 3);
			size_t usable_z = malloc_usable_size(z);
			last_block = NULL;
			unsigned char *g = realloc(z, n * 3 + 1);
			if (n * 3 + 1 > usable_z) /* beyond the block: a new one */
				was_sampled(g, n * 3 + 1, "realloc (grow) sampled");
			else /* within its usable size it stays, as in jemalloc */
				check(g == z && !last_block, "realloc within usable stays", n);
			if (!g) {
				free(z);
				continue;
			}
			int same = 1;
			for (size_t k = 0; k < n; k++)
				same &= g[k] == (unsigned char)(k * 7 + 3);
			check(same, "realloc grow keeps contents", n);
			check(malloc_usable_size(g) >= n * 3 + 1, "realloc usable", n);
			memset(g + n, 0x5A, 2 * n + 1);
			size_t half = n / 2 + 1;
			unsigned char *h = realloc(g, half);
			if (!h) {
				free(g);
				check(0, "realloc shrink", n);
				continue;
			}
			same = 1;
			for (size_t k = 0; k < half && k < n; k++)
				same &= h[k] == (unsigned char)(k * 7 + 3);
			check(same, "realloc shrink keeps contents", n);
			check(malloc_usable_size(h) >= half, "shrunk usable", n);
			free(h);
			/* aligned forms */
			static const size_t aligns[] = { 64, 4096 };
			for (int a = 0; a < 2; a++) {
				void *p = NULL;
				int rc = posix_memalign(&p, aligns[a], n);
				check(rc == 0, "posix_memalign returns 0", n);
				was_sampled(p, n, "posix_memalign sampled");
				check(p && (uintptr_t)p % aligns[a] == 0,
				      aligns[a] == 64 ? "posix_memalign 64 aligned"
						      : "posix_memalign 4096 aligned", n);
				if (p) {
					check(malloc_usable_size(p) >= n, "aligned usable", n);
					memset(p, 1, n);
				}
				free(p);
				p = aligned_alloc(aligns[a], n);
				was_sampled(p, n, "aligned_alloc sampled");
				check(p && (uintptr_t)p % aligns[a] == 0,
				      "aligned_alloc aligned", n);
				if (p)
					memset(p, 2, n);
				free(p);
				p = memalign(aligns[a], n);
				was_sampled(p, n, "memalign sampled");
				check(p && (uintptr_t)p % aligns[a] == 0, "memalign aligned", n);
				free(p);
			}
			void *v = valloc(n);
			was_sampled(v, n, "valloc sampled");
			check(v && (uintptr_t)v % 4096 == 0, "valloc aligned", n);
			free(v);
		}
	}
	/* calloc on a recycled slot is zero beyond what the slot's last block
	 * used (the region zeroes only that): each pair shares a slot size. */
	static const size_t pairs[][2] = { { 4096, 5000 }, { 5000, 4096 },
					   { 100000, 110000 },
					   { 3 << 20, (3 << 20) + 500000 } };
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		unsigned char *d = malloc(pairs[i][0]);
		was_sampled(d, pairs[i][0], "malloc sampled");
		if (d) {
			memset(d, 0xA5, malloc_usable_size(d));
			free(d);
		}
		unsigned char *z = calloc(1, pairs[i][1]);
		was_sampled(z, pairs[i][1], "calloc sampled");
		check(z == d, "calloc reuses the freed slot", pairs[i][1]);
		check(z && all_zero(z, pairs[i][1]), "calloc on a reused slot zeroed",
		      pairs[i][1]);
		free(z);
	}
	/* More freed than the 64 MiB the region keeps as is: the rest is given
	 * back, and comes back zeroed too. */
	enum { BIG = 24, BIG_SIZE = 5 << 20 };
	static unsigned char *big[BIG];
	for (int i = 0; i < BIG; i++) {
		big[i] = malloc(BIG_SIZE);
		if (big[i])
			memset(big[i], 0xA5, BIG_SIZE);
	}
	for (int i = 0; i < BIG; i++)
		free(big[i]);
	int zeroed = 1;
	for (int i = 0; i < BIG; i++) {
		big[i] = calloc(1, BIG_SIZE + 4096);
		zeroed &= big[i] && all_zero(big[i], BIG_SIZE + 4096);
	}
	for (int i = 0; i < BIG; i++)
		free(big[i]);
	check(zeroed, "calloc after 120 MiB of freed slots zeroed", BIG_SIZE);
	/* Many live sampled blocks at once, all distinct and writable. */
	enum { MANY = 2000 };
	static unsigned char *many[MANY];
	for (int i = 0; i < MANY; i++) {
		many[i] = malloc(200);
		if (many[i])
			memset(many[i], i & 0xff, 200);
	}
	int intact = 1;
	for (int i = 0; i < MANY; i++) {
		intact &= many[i] && many[i][0] == (i & 0xff) && many[i][199] == (i & 0xff);
		free(many[i]);
	}
	check(intact, "2000 live sampled blocks keep their contents", 200);
	ml_memprof_stop();
	printf("checks %d\nfailures %d\nsampled %d\nsampled_expected %d\n", checks,
	       failures, sampled_ok, sampled_expected);
	return 0;
}
