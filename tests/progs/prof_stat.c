/* prof_stat RATE BYTES_PER_CLASS: a known allocation pattern under
 * ml_memprof_start(RATE). Five call sites, one noinline function per size
 * class (16, 100, 1000, 10000, 100000 bytes), each allocating about
 * BYTES_PER_CLASS bytes in blocks of its size; every other block is kept
 * until the end, the others are freed at once. The tracker attributes each
 * sample to a site by the first frame of its call stack (the nearest site
 * function at or below the return address) and checks that the size agrees.
 * Prints, per site:
 *   site SIZE allocs N samples S sampled_blocks K est E
 * where S is the sum of nsamples and E = sum over sampled blocks of
 * size / (1 - (1 - RATE)^size), the unbiased estimate of the bytes allocated,
 * then "mismatch M" (samples whose first frame and size disagree),
 * "nostack D" (samples of a site's size with no usable stack) and
 * "start STATUS". */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

int main(int argc, char **argv);

#define NSITE 5
static const size_t sizes[NSITE] = { 16, 100, 1000, 10000, 100000 };

#define SITE(N)                                                              \
	__attribute__((noinline, noclone)) static void *site_##N(void)      \
	{                                                                    \
		char *p = malloc(N);                                         \
		if (p)                                                       \
			p[0] = 1; /* not a tail call: the frame stays */     \
		__asm__ volatile("" ::: "memory");                           \
		return p;                                                    \
	}
SITE(16)
SITE(100)
SITE(1000)
SITE(10000)
SITE(100000)

static void *(*const site_fn[NSITE])(void) = { site_16, site_100, site_1000,
					       site_10000, site_100000 };

static double rate;
static uint64_t samples[NSITE], sampled[NSITE], allocs[NSITE];
static double est[NSITE];
static uint64_t mismatch, nostack;

/* The site whose function starts nearest at or below addr, or -1 if addr is
 * below all of them or further than 4 KiB past the nearest. */
static int site_of(const void *addr)
{
	uintptr_t a = (uintptr_t)addr, best = 0;
	int which = -1;
	for (int i = 0; i < NSITE; i++) {
		uintptr_t f = (uintptr_t)site_fn[i];
		if (f <= a && f >= best) {
			best = f;
			which = i;
		}
	}
	/* main also lies somewhere: a return address in it is not a site. */
	uintptr_t m = (uintptr_t)main;
	if (which >= 0 && m > best && m <= a)
		return -1;
	if (which >= 0 && a - best > 4096)
		return -1;
	return which;
}

static int site_of_size(size_t n)
{
	for (int i = 0; i < NSITE; i++)
		if (sizes[i] == n)
			return i;
	return -1;
}

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)data;
	int by_size = site_of_size(s->size);
	int by_stack = s->depth ? site_of(s->callstack[0]) : -1;
	if (by_size < 0 && by_stack < 0)
		return NULL; /* not one of ours (stdio, the loader, ...) */
	if (by_stack < 0) {
		nostack++;
		return NULL;
	}
	if (by_size != by_stack) {
		mismatch++;
		return NULL;
	}
	samples[by_stack] += s->nsamples;
	sampled[by_stack]++;
	est[by_stack] += (double)s->size / -expm1((double)s->size * log1p(-rate));
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	rate = strtod(argv[1], NULL);
	size_t per_class = strtoull(argv[2], NULL, 10);
	void **keep[NSITE];
	size_t n[NSITE];
	for (int i = 0; i < NSITE; i++) {
		n[i] = per_class / sizes[i];
		keep[i] = calloc(n[i] / 2 + 1, sizeof(void *));
		if (!keep[i])
			return 3;
	}
	ml_tracker tr = { on_alloc, NULL, NULL };
	ml_status st = ml_memprof_start(rate, 4, &tr);
	if (st == ML_OK) {
		/* Interleave the sites so that no one of them sees only the start
		 * of the sampling process. */
		size_t done[NSITE] = { 0 };
		int more = 1;
		while (more) {
			more = 0;
			for (int i = 0; i < NSITE; i++) {
				size_t batch = n[i] / 64 + 1;
				for (size_t k = 0; k < batch && done[i] < n[i]; k++) {
					void *p = site_fn[i]();
					if (!p)
						return 4;
					allocs[i]++;
					if (done[i] % 2)
						free(p);
					else
						keep[i][done[i] / 2] = p;
					done[i]++;
				}
				if (done[i] < n[i])
					more = 1;
			}
		}
		ml_memprof_stop();
	}
	for (int i = 0; i < NSITE; i++) {
		for (size_t k = 0; k < (n[i] + 1) / 2; k++)
			free(keep[i][k]);
		free(keep[i]);
	}
	for (int i = 0; i < NSITE; i++)
		printf("site %zu allocs %llu samples %llu sampled_blocks %llu est %.1f\n",
		       sizes[i], (unsigned long long)allocs[i],
		       (unsigned long long)samples[i],
		       (unsigned long long)sampled[i], est[i]);
	printf("mismatch %llu\nnostack %llu\nstart %d\n",
	       (unsigned long long)mismatch, (unsigned long long)nostack, (int)st);
	return 0;
}
