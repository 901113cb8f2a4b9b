/* dead_arena: the memory of threads that exited goes back to the system
 * while the program goes on allocating. Run with MALLOC_CONF=
 * dirty_decay_ms:300. Four threads at once (each gets an arena of its
 * own) allocate 8 MiB each in 4 KiB blocks, write them, free them and
 * exit; their arenas are left with no thread and 32 MiB of dirty pages.
 * jemalloc purges such an arena at once; memlimits turns that purge into
 * a decay (preload/jedecay.c) that the allocating threads' slow paths
 * drive. The main thread then allocates and frees small blocks for up to
 * 5 s, and the resident set must fall back to within 8 MiB of what it was
 * before the threads started (pages given back lazily, MADV_FREE, do not
 * count). Exit 0 iff it does; prints how long it took. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)
#define BLOCKS (8 * MiB / 4096)

static pthread_barrier_t all_started;

static void *worker(void *arg)
{
	(void)arg;
	static __thread void *b[BLOCKS];
	pthread_barrier_wait(&all_started); /* all four alive: four arenas */
	for (size_t i = 0; i < BLOCKS; i++)
		if ((b[i] = malloc(4096)) != NULL)
			memset(b[i], 1, 4096);
	for (size_t i = 0; i < BLOCKS; i++)
		free(b[i]);
	return NULL;
}

/* Resident memory the process holds: Rss less LazyFree (pages given back
 * with MADV_FREE, which the kernel takes when it needs them: how jemalloc
 * returns decayed pages under memlimits' muzzy_decay_ms:-1). */
static long rss_kib(void)
{
	long rss = 0, lazy = 0, v;
	char line[256];
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "Rss: %ld kB", &v) == 1)
			rss = v;
		else if (sscanf(line, "LazyFree: %ld kB", &v) == 1)
			lazy = v;
	}
	fclose(f);
	return rss - lazy;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
	long before = rss_kib();
	pthread_t t[4];
	pthread_barrier_init(&all_started, NULL, 4);
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	long after = rss_kib();
	double t0 = now(), t1 = t0;
	long rss = after;
	while (rss > before + 8 * 1024 && (t1 = now()) - t0 < 5) {
		for (int i = 0; i < 20000; i++) {
			void *p = malloc(4096);
			*(volatile char *)p = 1;
			free(p);
		}
		rss = rss_kib();
	}
	printf("resident: %ld KiB before the threads, %ld after them, %ld "
	       "after %.2f s of the main thread's allocation\n",
	       before, after, rss, t1 - t0);
	if (rss > before + 8 * 1024) {
		printf("FAILED: the exited threads' memory stayed resident\n");
		return 1;
	}
	return 0;
}
