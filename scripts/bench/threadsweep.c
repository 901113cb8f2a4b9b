/* threadsweep.c: the thread-count sweep of issue 10. IDLE threads exist and
 * stay blocked while BUSY threads do malloc(SIZE)/free pairs as fast as they
 * can for MILLIS milliseconds. An allocator whose slow path visits every
 * thread it knows slows down with IDLE; one whose threads share something
 * slows down with BUSY.
 *
 * Each idle thread (64 KiB stack, so that 8192 fit) allocates a small block
 * before it blocks, so that the allocator has registered it (memlimits
 * registers a thread at its first allocation, jemalloc gives it a thread
 * cache), keeps it while it waits on a condition variable, and frees it
 * when released. The busy threads start together at a barrier once every
 * idle thread is waiting; each runs until the main thread raises a flag
 * (read once per 64 pairs, so the check costs nothing measurable), and
 * counts its pairs. Creating and ending the threads is not timed.
 *
 * Prints "NS_PER_PAIR PAIRS SECONDS": SECONDS is the busy threads' wall
 * time (earliest start to latest stop), PAIRS their total malloc+free
 * pairs, NS_PER_PAIR = SECONDS / PAIRS in nanoseconds (the inverse of the
 * busy threads' combined throughput).
 *
 *     threadsweep IDLE BUSY MILLIS [SIZE=4096]
 * IDLE may be 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "bench.h"

#define IDLE_STACK (64 * 1024)
#define CHECK_EVERY 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;  /* idle threads wait */
static pthread_cond_t ready_cv = PTHREAD_COND_INITIALIZER; /* main waits */
static long n_ready, n_idle;
static int released;

static pthread_barrier_t start;
static int stop;
static size_t size;

struct busy {
	double t0, t1;
	long pairs;
};

static void *idle_main(void *arg)
{
	(void)arg;
	void *p = malloc(64);
	if (!p)
		abort();
	KEEP(p);
	pthread_mutex_lock(&mu);
	/* Wake main now and then, not 8192 times. */
	if (++n_ready % 64 == 0 || n_ready == n_idle)
		pthread_cond_signal(&ready_cv);
	while (!released)
		pthread_cond_wait(&idle_cv, &mu);
	pthread_mutex_unlock(&mu);
	free(p);
	return NULL;
}

static void *busy_main(void *arg)
{
	struct busy *b = arg;
	pthread_barrier_wait(&start);
	b->t0 = now_s();
	long n = 0;
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		for (int i = 0; i < CHECK_EVERY; i++) {
			void *p = malloc(size);
			if (!p)
				abort();
			KEEP(p);
			free(p);
		}
		n += CHECK_EVERY;
	}
	b->t1 = now_s();
	b->pairs = n;
	return NULL;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "threadsweep: %s: %s\n", what, strerror(err));
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: threadsweep IDLE BUSY MILLIS [SIZE=4096]\n");
		return 2;
	}
	/* IDLE may be 0, which arg_long refuses. */
	char *end;
	long idle = strtol(argv[1], &end, 10);
	if (*end || end == argv[1] || idle < 0) {
		fprintf(stderr, "threadsweep: IDLE must be a number >= 0, not '%s'\n", argv[1]);
		return 2;
	}
	long nbusy = arg_long(argc, argv, 2, 1);
	long millis = arg_long(argc, argv, 3, 1000);
	size = (size_t)arg_long(argc, argv, 4, 4096);

	pthread_t *it = calloc((size_t)idle + 1, sizeof *it);
	pthread_t *bt = calloc((size_t)nbusy, sizeof *bt);
	struct busy *bs = calloc((size_t)nbusy, sizeof *bs);
	if (!it || !bt || !bs)
		die("calloc", ENOMEM);

	n_idle = idle;
	pthread_attr_t small;
	pthread_attr_init(&small);
	int e = pthread_attr_setstacksize(&small, IDLE_STACK);
	if (e)
		die("pthread_attr_setstacksize", e);
	for (long i = 0; i < idle; i++)
		if ((e = pthread_create(&it[i], &small, idle_main, NULL)))
			die("pthread_create (idle)", e);
	pthread_mutex_lock(&mu);
	while (n_ready < idle)
		pthread_cond_wait(&ready_cv, &mu);
	pthread_mutex_unlock(&mu);

	if ((e = pthread_barrier_init(&start, NULL, (unsigned)nbusy + 1)))
		die("pthread_barrier_init", e);
	for (long i = 0; i < nbusy; i++)
		if ((e = pthread_create(&bt[i], NULL, busy_main, &bs[i])))
			die("pthread_create (busy)", e);
	pthread_barrier_wait(&start);
	struct timespec d = {millis / 1000, (millis % 1000) * 1000000L};
	while (nanosleep(&d, &d) != 0 && errno == EINTR)
		;
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	double t0 = 0, t1 = 0;
	long pairs = 0;
	for (long i = 0; i < nbusy; i++) {
		pthread_join(bt[i], NULL);
		if (i == 0 || bs[i].t0 < t0)
			t0 = bs[i].t0;
		if (bs[i].t1 > t1)
			t1 = bs[i].t1;
		pairs += bs[i].pairs;
	}

	pthread_mutex_lock(&mu);
	released = 1;
	pthread_cond_broadcast(&idle_cv);
	pthread_mutex_unlock(&mu);
	for (long i = 0; i < idle; i++)
		pthread_join(it[i], NULL);
	if (pairs <= 0) {
		fprintf(stderr, "threadsweep: no pair done in %ld ms\n", millis);
		return 1;
	}
	printf("%.2f %ld %.4f\n", (t1 - t0) * 1e9 / (double)pairs, pairs, t1 - t0);
	return 0;
}
