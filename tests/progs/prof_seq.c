/* prof_seq RATE COUNT: single-threaded; allocates COUNT blocks of
 * pseudo-random sizes (a fixed LCG: the same sizes in every run), frees
 * about half of them as it goes, and prints "index nsamples size" for each
 * sampled block, in order, then "total K". The callback stores into a static
 * array: it allocates nothing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

#define MAXREC 100000
static struct {
	long index;
	uint64_t nsamples;
	size_t size;
} rec[MAXREC];
static size_t nrec;
/* volatile: glibc declares malloc "leaf", so a plain store around the
 * call could be dropped. */
static volatile long cur = -1;

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)data;
	if (nrec < MAXREC)
		rec[nrec++] = (typeof(rec[0])){ cur, s->nsamples, s->size };
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	double rate = strtod(argv[1], NULL);
	long count = strtol(argv[2], NULL, 10);
	void **keep = calloc((size_t)count, sizeof(void *));
	if (!keep)
		return 3;
	ml_tracker tr = { on_alloc, NULL, NULL };
	ml_status st = ml_memprof_start(rate, 4, &tr);
	if (st != ML_OK) {
		printf("start %d\n", (int)st);
		return 1;
	}
	uint64_t x = 12345;
	for (long i = 0; i < count; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		size_t n = 1 + (size_t)((x >> 33) % 4000);
		cur = i;
		void *p = malloc(n);
		cur = -1;
		if (!p)
			return 4;
		if ((x >> 20) & 1)
			free(p);
		else
			keep[i] = p;
	}
	ml_memprof_stop();
	for (long i = 0; i < count; i++)
		free(keep[i]);
	free(keep);
	for (size_t i = 0; i < nrec; i++)
		printf("%ld %llu %zu\n", rec[i].index,
		       (unsigned long long)rec[i].nsamples, rec[i].size);
	printf("total %zu\n", nrec);
	return 0;
}
