/* pool_caches THREADSxBLOCKS: a pool of THREADS threads that take turns;
 * each makes BLOCKS blocks of 1-65 KiB (seeded sizes), writes them, frees
 * them all and waits for the end. Then main takes 1 MiB blocks, written,
 * until one is refused (at most 4096). Prints "parked_kib K" (resident
 * memory with every thread waiting), "main_mib M" (what main got) and
 * "end_kib K" (resident memory at the end). test_meters, pool_caches. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int nblocks;
static pthread_mutex_t turn = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int done, over;

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static void *worker(void *arg)
{
	unsigned s = (unsigned)(long)arg * 7919u + 1;
	pthread_mutex_lock(&turn);
	char **v = malloc((size_t)nblocks * sizeof *v);
	for (int i = 0; v && i < nblocks; i++) {
		s = s * 1103515245u + 12345u;
		size_t n = 1024 + (s >> 8) % (64 << 10);
		if ((v[i] = malloc(n)))
			memset(v[i], 1, n);
	}
	for (int i = 0; v && i < nblocks; i++)
		free(v[i]);
	free(v);
	pthread_mutex_unlock(&turn);
	pthread_mutex_lock(&lock);
	done++;
	pthread_cond_broadcast(&cond);
	while (!over)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	return NULL;
}

int main(int argc, char **argv)
{
	int n;
	if (argc != 2 || sscanf(argv[1], "%dx%d", &n, &nblocks) != 2 || n < 1)
		return 2;
	pthread_t *t = calloc((size_t)n, sizeof *t);
	int made = 0;
	while (made < n && pthread_create(&t[made], NULL, worker, (void *)(long)made) == 0)
		made++;
	pthread_mutex_lock(&lock);
	while (done < made)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	printf("threads %d\nparked_kib %ld\n", made, rss_kib());
	int got = 0;
	for (char *p; got < 4096 && (p = malloc(1 << 20)); got++)
		memset(p, 1, 1 << 20);
	printf("main_mib %d\nend_kib %ld\n", got, rss_kib());
	pthread_mutex_lock(&lock);
	over = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	for (int i = 0; i < made; i++)
		pthread_join(t[i], NULL);
	return 0;
}
