/* aligned_small: run with MEMLIMITS_GLOBAL_MEMORY=50M. Small requests at a
 * large alignment are blocks much larger than the request: 1 byte at 8 KiB
 * alignment is a 16 KiB block, 1 byte at 4 KiB a 4 KiB one. Charged the
 * byte asked for, 40,000 of them never reached the engine's slow path and
 * took 625 MiB under the 50M limit (held-out survey). For posix_memalign,
 * aligned_alloc and jemalloc's mallocx: allocate until refused (at most
 * 40,000); the refusal must come, and the peak of the measure must stay
 * within the limit plus the per-thread slack. Exit 0 iff all hold. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

#define N 40000
#define LIMIT ((int64_t)50 << 20)
#define SLACK ((int64_t)64 << 10)

static void *held[N];

int main(void)
{
	void *(*mallocx)(size_t, int) =
		(void *(*)(size_t, int))dlsym(RTLD_DEFAULT, "mallocx");
	int failures = 0;
	for (int form = 0; form < 3; form++) {
		int k = 0;
		for (; k < N; k++) {
			void *p = NULL;
			if (form == 0 && posix_memalign(&p, 8192, 1) != 0)
				p = NULL;
			if (form == 1)
				p = aligned_alloc(4096, 1);
			if (form == 2)
				p = mallocx ? mallocx(1, 13) : NULL; /* lg 13: 8 KiB */
			if (!p)
				break;
			held[k] = p;
		}
		struct ml_stats s;
		ml_stats(&s);
		printf("form %d: %d blocks before the refusal, peak %lld KiB\n", form,
		       k, (long long)(s.peak_bytes >> 10));
		if (k == N || s.peak_bytes > LIMIT + SLACK) {
			printf("FAILED: the limit did not hold\n");
			failures++;
		}
		while (k > 0)
			free(held[--k]);
	}
	return failures != 0;
}
