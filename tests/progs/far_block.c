/* far_block: a thread that took its grant far from MEMLIMITS_GLOBAL_MEMORY
 * waits while another fills the room until refused, then asks for one
 * block of 900,000 bytes (malloc, calloc, an aligned form, realloc, or C
 * operator new by `new`'s name is not here: C only). The fast path admits
 * any request under what is left of the thread's grant, so the grant bounds
 * what one block can take past the limit: 1 MiB grants far from the limit
 * (tried once) let every such block through, 890 KiB over (a held-out
 * check). 5 rounds; prints "granted N" (blocks of A that were granted) and
 * "worst_over B" (the most the heap went over the limit, in bytes). */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

#define MAX_FILL 200000
#define ROUNDS 5
#define BLOCK 900000

static pthread_barrier_t paused, filled;
static void *fill[MAX_FILL];
static int nfill;
static const char *kind = "malloc";

static void *one_block(void)
{
	void *p = NULL;
	if (!strcmp(kind, "calloc"))
		p = calloc(1, BLOCK);
	else if (!strcmp(kind, "memalign"))
		p = memalign(64, BLOCK);
	else if (!strcmp(kind, "realloc")) {
		void *q = malloc(16);
		p = realloc(q, BLOCK);
		if (!p)
			free(q);
	} else
		p = malloc(BLOCK);
	return p;
}

static void *thread_a(void *arg)
{
	void **got = arg;
	void *q[100];
	for (int i = 0; i < 100; i++) /* a grant, far from the limit */
		q[i] = malloc(1024);
	for (int i = 0; i < 100; i++)
		free(q[i]);
	pthread_barrier_wait(&paused);
	pthread_barrier_wait(&filled);
	*got = one_block();
	return NULL;
}

static void *thread_b(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&paused);
	void *p;
	nfill = 0;
	while (nfill < MAX_FILL && (p = malloc(8192)) != NULL)
		fill[nfill++] = p;
	pthread_barrier_wait(&filled);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		kind = argv[1];
	long long limit = ml_global_memory_limit(), worst = -(1LL << 40);
	if (limit <= 0) {
		fprintf(stderr, "far_block: needs MEMLIMITS_GLOBAL_MEMORY\n");
		return 2;
	}
	int granted = 0;
	for (int r = 0; r < ROUNDS; r++) {
		pthread_barrier_init(&paused, NULL, 2);
		pthread_barrier_init(&filled, NULL, 2);
		void *got = NULL;
		pthread_t a, b;
		if (pthread_create(&a, NULL, thread_a, &got) ||
		    pthread_create(&b, NULL, thread_b, NULL))
			return 1;
		pthread_join(a, NULL);
		pthread_join(b, NULL);
		struct ml_stats s;
		ml_stats(&s);
		if (s.live_bytes - limit > worst)
			worst = s.live_bytes - limit;
		granted += got != NULL;
		free(got);
		for (int i = 0; i < nfill; i++)
			free(fill[i]);
		pthread_barrier_destroy(&paused);
		pthread_barrier_destroy(&filled);
		if (nfill == 0)
			return 1;
	}
	printf("granted %d\nworst_over %lld\n", granted, worst);
	return 0;
}
