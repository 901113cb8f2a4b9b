/* prof_huge RATE BLOCKS: under ml_memprof_start(RATE), BLOCKS blocks of 64
 * MiB (allocated and freed, never touched), then malloc(1 << 62), which
 * must fail at once (the sampler once counted a huge request's samples one
 * draw at a time: days at the default rate). Prints
 *   samples S (the sum of nsamples over the 64 MiB blocks)
 *   huge NULL|ADDRESS
 *   start STATUS */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

#define BIG ((size_t)64 << 20)

static uint64_t samples;

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)data;
	if (s->size == BIG)
		samples += s->nsamples;
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	double rate = strtod(argv[1], NULL);
	int blocks = atoi(argv[2]);
	ml_tracker tr = { on_alloc, NULL, NULL };
	ml_status st = ml_memprof_start(rate, 4, &tr);
	void *huge = NULL;
	if (st == ML_OK) {
		for (int i = 0; i < blocks; i++) {
			void *volatile p = malloc(BIG);
			if (!p)
				return 3;
			free(p);
		}
		huge = malloc((size_t)1 << 62);
		ml_memprof_stop();
	}
	printf("samples %llu\nhuge %s\nstart %d\n", (unsigned long long)samples,
	       huge ? "ADDRESS" : "NULL", (int)st);
	return 0;
}
