/* token.c: token cancellation latency. A worker thread runs, TRIALS times,
 * a task under ml_limit_with_token that allocates and frees 64-byte blocks
 * in a loop until an allocation fails. The main thread waits until the task
 * is running, lets it run for a random 0..200 us, reads CLOCK_MONOTONIC and
 * sets the token; the worker reads the clock as soon as ml_limit_with_token
 * returns. Latency = return time - set time. With two CPUs or more, the
 * main thread and the worker are pinned to different CPUs, so that setting
 * the token never waits for the task's CPU. Prints
 *
 *     trials median_us p99_us max_us bad preempted median_us' p99_us' pinned
 *
 * where bad counts trials whose status was not ML_TOKEN_LIMIT, preempted
 * the trials in which the worker thread was involuntarily descheduled
 * (getrusage RUSAGE_THREAD: a busy machine, not the engine), and the last
 * two figures leave those trials out. Run under the preload.
 *
 *     token [TRIALS=1000] */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#include "../../shim/memlimits.h"
#include "bench.h"

static ml_token *tok;
static int gen, running, done; /* handshakes, atomics */
static double t_ret;
static ml_status status;
static long trials;
static long ivcsw0;   /* worker's involuntary switches at the task's start */
static char *preempted; /* per trial */

static long ivcsw(void)
{
	struct rusage ru;
	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_nivcsw;
}

static void *task(void *arg)
{
	(void)arg;
	ivcsw0 = ivcsw();
	__atomic_store_n(&running, 1, __ATOMIC_RELEASE);
	for (;;) {
		void *p = malloc(64);
		if (!p)
			return NULL;
		KEEP(p);
		free(p);
	}
}

static void *worker(void *arg)
{
	(void)arg;
	for (int g = 1; g <= trials; g++) {
		while (__atomic_load_n(&gen, __ATOMIC_ACQUIRE) != g)
			sched_yield();
		ml_status s = ml_limit_with_token(tok, task, NULL, NULL);
		t_ret = now_s();
		preempted[g - 1] = ivcsw() != ivcsw0;
		status = s;
		__atomic_store_n(&done, g, __ATOMIC_RELEASE);
	}
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Index of the 99th percentile in a sorted array of n (nearest rank). */
static long pct99(long n)
{
	long i = (long)((double)n * 0.99 + 0.999999) - 1;
	return i < 0 ? 0 : i;
}

int main(int argc, char **argv)
{
	trials = arg_long(argc, argv, 1, 1000);
	ml_status st = ml_start();
	if (st != ML_OK) {
		fprintf(stderr, "token: ml_start: %s\n", ml_status_string(st));
		return 2;
	}
	double *lat = malloc(sizeof *lat * (size_t)trials);
	double *calm = malloc(sizeof *calm * (size_t)trials);
	preempted = calloc((size_t)trials, 1);
	if (!lat || !calm || !preempted)
		return 1;
	struct rng r;
	rng_seed(&r, 3);
	/* Two CPUs of the allowed set: main on the first, worker on the second. */
	cpu_set_t allowed, one;
	int cpus[2], ncpu = 0, pinned = 0;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	if (sched_getaffinity(0, sizeof allowed, &allowed) == 0)
		for (int c = 0; c < CPU_SETSIZE && ncpu < 2; c++)
			if (CPU_ISSET(c, &allowed))
				cpus[ncpu++] = c;
	if (ncpu == 2) {
		CPU_ZERO(&one);
		CPU_SET(cpus[1], &one);
		pinned = pthread_attr_setaffinity_np(&attr, sizeof one, &one) == 0;
		CPU_ZERO(&one);
		CPU_SET(cpus[0], &one);
		pinned &= sched_setaffinity(0, sizeof one, &one) == 0;
	}
	pthread_t w;
	if (pthread_create(&w, pinned ? &attr : NULL, worker, NULL))
		return 1;
	pthread_attr_destroy(&attr);
	long bad = 0;
	for (int g = 1; g <= trials; g++) {
		tok = ml_token_create();
		if (!tok)
			return 1;
		__atomic_store_n(&running, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&gen, g, __ATOMIC_RELEASE);
		while (!__atomic_load_n(&running, __ATOMIC_ACQUIRE))
			__builtin_ia32_pause();
		double until = now_s() + (double)rng_range(&r, 0, 200) / 1e6;
		while (now_s() < until)
			__builtin_ia32_pause();
		double t_set = now_s();
		ml_token_set(tok);
		while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) != g)
			sched_yield();
		lat[g - 1] = (t_ret - t_set) * 1e6;
		bad += status != ML_TOKEN_LIMIT;
		ml_token_destroy(tok);
	}
	pthread_join(w, NULL);
	long ncalm = 0;
	for (long i = 0; i < trials; i++)
		if (!preempted[i])
			calm[ncalm++] = lat[i];
	qsort(lat, (size_t)trials, sizeof *lat, cmp);
	qsort(calm, (size_t)ncalm, sizeof *calm, cmp);
	printf("%ld %.2f %.2f %.2f %ld %ld ", trials, lat[(trials - 1) / 2],
	       lat[pct99(trials)], lat[trials - 1], bad, trials - ncalm);
	if (ncalm)
		printf("%.2f %.2f", calm[(ncalm - 1) / 2], calm[pct99(ncalm)]);
	else
		printf("nan nan");
	printf(" %s\n", pinned ? "yes" : "no");
	free(lat);
	free(calm);
	free(preempted);
	return 0;
}
