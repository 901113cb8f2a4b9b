/* prog_threads_hog N: N threads each malloc 4096-byte blocks (touched, kept
 * in a list threaded through the blocks) until malloc returns NULL. main
 * joins them and prints
 *     peak=<ml_stats peak_bytes> allocated=<bytes the threads got> blocks=<n>
 * then frees every block (from main, not the allocating thread), mallocs
 * 1 MiB and prints "recovered" if that worked ("not recovered", exit 2,
 * otherwise). A thread stops after 1 GiB (so it cannot run away without a
 * limit). Exit 1 on bad usage or if ml_stats fails. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

#define BLOCK 4096
#define MAX_BLOCKS_PER_THREAD ((1u << 30) / BLOCK)

struct worker {
	pthread_t tid;
	void *list;          /* first word of each block points to the next */
	unsigned long blocks;
};

static void *hog(void *arg)
{
	struct worker *w = arg;
	while (w->blocks < MAX_BLOCKS_PER_THREAD) {
		void **p = malloc(BLOCK);
		if (!p)
			break;
		memset(p, 0xa5, BLOCK);
		*p = w->list;
		w->list = p;
		w->blocks++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 4;
	if (n < 1 || n > 64) {
		fprintf(stderr, "usage: prog_threads_hog N (1..64)\n");
		return 1;
	}
	/* Allocate stdout's buffer now, while there is room. */
	printf("threads=%d\n", n);
	fflush(stdout);
	struct worker w[64];
	memset(w, 0, sizeof w);
	for (int i = 0; i < n; i++)
		if (pthread_create(&w[i].tid, NULL, hog, &w[i]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			return 1;
		}
	unsigned long blocks = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(w[i].tid, NULL);
		blocks += w[i].blocks;
	}
	struct ml_stats st;
	if (ml_stats(&st) != ML_OK) {
		fprintf(stderr, "ml_stats failed\n");
		return 1;
	}
	printf("peak=%lld allocated=%llu blocks=%lu\n", (long long)st.peak_bytes,
	       (unsigned long long)blocks * BLOCK, blocks);
	for (int i = 0; i < n; i++)
		while (w[i].list) {
			void *next = *(void **)w[i].list;
			free(w[i].list);
			w[i].list = next;
		}
	char *p = malloc(1 << 20);
	if (!p) {
		printf("not recovered\n");
		return 2;
	}
	memset(p, 1, 1 << 20);
	free(p);
	printf("recovered\n");
	return 0;
}
