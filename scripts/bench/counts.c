/* counts.c: exactness of allocation counts. Each case runs a deterministic
 * mix of allocations (fixed seed) under ml_limit_allocations with the
 * largest limit, adding up itself the requested bytes the documentation
 * says are counted (malloc/calloc sizes; an aligned request above 16 bytes
 * of alignment, its block's usable size; a realloc, what the usable size
 * grew by, at most the size asked for), and prints one line per case
 *
 *     CASE known_bytes reported_bytes status
 *
 * The task allocates nothing else (no stdio inside it). Run under the
 * preload.
 *
 *     counts [STEPS=200000] */
#define _GNU_SOURCE
#include <malloc.h>
#include <string.h>

#include "../../shim/memlimits.h"
#include "bench.h"

#define SLOTS 512

struct job {
	long steps;
	int mix; /* 0: malloc only, 1: the whole family */
	uint64_t known;
	int failed;
};

static void *task(void *arg)
{
	struct job *j = arg;
	struct rng r;
	rng_seed(&r, 7 + (uint64_t)j->mix);
	void *slot[SLOTS] = { 0 };
	uint64_t known = 0;
	for (long k = 0; k < j->steps; k++) {
		uint64_t x = rng_next(&r);
		int i = (int)((x >> 8) % SLOTS);
		size_t n = (x >> 24) % 8 == 0 ? (size_t)rng_range(&r, 4096, 300000)
					       : (size_t)rng_range(&r, 0, 600);
		int op = j->mix ? (int)(x % 8) : 0;
		void *p = NULL;
		switch (op) {
		case 0: case 1: case 2:
			free(slot[i]);
			slot[i] = NULL;
			p = malloc(n);
			known += n;
			break;
		case 3: {
			size_t a = (size_t)rng_range(&r, 0, 40), b = (size_t)rng_range(&r, 1, 64);
			free(slot[i]);
			slot[i] = NULL;
			p = calloc(a, b);
			known += a * b;
			break;
		}
		case 4: case 5: /* grow or shrink the old block */
			if (slot[i] && n == 0) { /* frees it: nothing counted */
				p = realloc(slot[i], 0);
				slot[i] = NULL;
				continue;
			}
			size_t had = slot[i] ? malloc_usable_size(slot[i]) : 0;
			p = realloc(slot[i], n);
			if (!slot[i]) /* realloc(NULL, n) is malloc(n) */
				known += n;
			else if (p && malloc_usable_size(p) > had) {
				size_t g = malloc_usable_size(p) - had;
				known += g < n ? g : n;
			}
			break;
		case 6: {
			size_t al = (size_t)16 << (x >> 40) % 8; /* 16..2048 */
			free(slot[i]);
			slot[i] = NULL;
			size_t want = (n + al - 1) / al * al;
			p = aligned_alloc(al, want);
			known += al > 16 && p && malloc_usable_size(p) > want
					 ? malloc_usable_size(p) : want;
			break;
		}
		case 7: {
			size_t al = (size_t)8 << (x >> 40) % 10; /* 8..4096 */
			free(slot[i]);
			slot[i] = NULL;
			if (posix_memalign(&p, al, n) != 0)
				p = NULL;
			known += al > 16 && p && malloc_usable_size(p) > n
					 ? malloc_usable_size(p) : n;
			break;
		}
		}
		if (!p && n) {
			j->failed = 1;
			break;
		}
		slot[i] = p;
		if (p && n)
			memset(p, 1, n < 64 ? n : 64);
	}
	for (int i = 0; i < SLOTS; i++)
		free(slot[i]);
	j->known = known;
	return NULL;
}

int main(int argc, char **argv)
{
	long steps = arg_long(argc, argv, 1, 200000);
	static const char *const names[] = { "malloc", "family" };
	int bad = 0;
	ml_status st = ml_start();
	if (st != ML_OK) {
		fprintf(stderr, "counts: ml_start: %s\n", ml_status_string(st));
		return 2;
	}
	for (int mix = 0; mix < 2; mix++) {
		struct job j = { steps, mix, 0, 0 };
		uint64_t got = 0;
		ml_status s = ml_limit_allocations(ML_MAX_ALLOCATION_LIMIT, task, &j,
						   NULL, &got);
		printf("%s %llu %llu %s\n", names[mix], (unsigned long long)j.known,
		       (unsigned long long)got,
		       j.failed ? "allocation-failed" : ml_status_string(s));
		bad |= s != ML_OK || j.failed || got != j.known;
	}
	return bad;
}
