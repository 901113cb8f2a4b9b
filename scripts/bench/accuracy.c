/* accuracy.c: how far over MEMLIMITS_GLOBAL_MEMORY the heap gets. THREADS
 * threads start together and allocate 4 KiB blocks as fast as they can,
 * keeping them all, until malloc returns NULL; then the program prints
 *
 *     threads limit peak_bytes live_bytes blocks_bytes
 *
 * limit from ml_global_memory_limit(), peak and live from ml_stats()
 * (peak: the highest heap the engine observed; live: the heap now, and since
 * nothing was freed, the highest it ever was), blocks_bytes the usable bytes
 * of the blocks the threads got. Run under the preload with the limit set.
 *
 *     accuracy THREADS */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <sys/mman.h>

#include "../../shim/memlimits.h"
#include "bench.h"
#include "uncounted.h"

#define BLOCK 4096
#define MAXBLOCKS (1L << 22) /* 16 GiB of blocks per thread */

static int nthreads;
static int ready;
static int go;
struct worker {
	pthread_t tid;
	/* Memfd mappings: the bookkeeping is neither on the heap nor in the
	 * global measure (which counts anonymous writable mappings, 32 MiB of
	 * this per thread, at their virtual size). */
	void **blocks;
	long n;
	size_t bytes;
};

static void *run(void *arg)
{
	struct worker *w = arg;
	__atomic_add_fetch(&ready, 1, __ATOMIC_ACQ_REL);
	while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
		__builtin_ia32_pause();
	while (w->n < MAXBLOCKS) {
		void *p = malloc(BLOCK);
		if (!p)
			break;
		w->blocks[w->n++] = p;
	}
	for (long i = 0; i < w->n; i++)
		w->bytes += malloc_usable_size(w->blocks[i]);
	return NULL;
}

int main(int argc, char **argv)
{
	nthreads = (int)arg_long(argc, argv, 1, 1);
	if (!ml_loaded() || ml_global_memory_limit() < 0) {
		fprintf(stderr, "accuracy: run under the preload with "
				"MEMLIMITS_GLOBAL_MEMORY set\n");
		return 2;
	}
	struct worker *ws = uncounted_shared(sizeof *ws * (size_t)nthreads);
	if (ws == MAP_FAILED)
		return 1;
	for (int i = 0; i < nthreads; i++) {
		ws[i].blocks = uncounted_shared(sizeof(void *) * MAXBLOCKS);
		if (ws[i].blocks == MAP_FAILED ||
		    pthread_create(&ws[i].tid, NULL, run, &ws[i]))
			return 1;
	}
	while (__atomic_load_n(&ready, __ATOMIC_ACQUIRE) < nthreads)
		__builtin_ia32_pause();
	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	size_t bytes = 0;
	for (int i = 0; i < nthreads; i++) {
		pthread_join(ws[i].tid, NULL);
		bytes += ws[i].bytes;
	}
	struct ml_stats st;
	if (ml_stats(&st) != ML_OK)
		return 1;
	printf("%d %lld %lld %lld %zu\n", nthreads,
	       (long long)ml_global_memory_limit(), (long long)st.peak_bytes,
	       (long long)st.live_bytes, bytes);
	return 0;
}
