/* handler_slip [US [MS [huge]]]: for MS milliseconds (default 1000) the main
 * thread allocates and frees small blocks while a timer interrupts it every
 * US microseconds (default 30) with a signal whose handler allocates 256
 * bytes and frees its previous block. Run under the profiling build: the
 * profiler runs at rate 1, so that the main thread's blocks come from the
 * profiler's range and its handler does not re-enter jemalloc while the
 * main thread is inside (README: no malloc is async-signal-safe).
 *
 * A handler that lands between the fast path's subtraction that wrapped the
 * thread's grant and the slow path's undoing of it finds the grant huge and
 * takes the fast path itself; the next refill counted more than the grant.
 * The meters that kept what was left of their own bound by subtracting it
 * wrapped: the sampler never sampled the thread again (its blocks then came
 * from jemalloc, and the handler re-entered it: a SIGSEGV), and the process
 * budget never refused it again.
 *
 * Prints "got BYTES" (all the bytes malloc gave, the handler's included),
 * "refused N" (refusals, each of which gives 100 KiB of grace), "main N"
 * (the main loop's allocations that succeeded) and "sampled M" (those of
 * them the tracker saw: every one, at rate 1). With "huge", the main loop
 * also asks for blocks over PTRDIFF_MAX, which the slow path refuses before
 * any refill: a handler's allocation there left the grant wrapped for good
 * (sampled 9 to 19 of 400,000). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim/memlimits.h"
#include "tests/progs/hostile.h"

static atomic_ulong got, refused, sampled;
static volatile sig_atomic_t in_handler;
static void *volatile handler_block;

static void on_signal(int sig)
{
	(void)sig;
	int saved = errno;
	in_handler = 1;
	void *p = malloc(256);
	if (p)
		got += 256;
	else
		refused++;
	void *old = handler_block;
	handler_block = p;
	free(old);
	in_handler = 0;
	errno = saved;
}

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)s;
	(void)data;
	if (!in_handler)
		sampled++;
	return NULL;
}

static long elapsed_ms(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 +
	       (now.tv_nsec - t0->tv_nsec) / 1000000;
}

int main(int argc, char **argv)
{
	say_crashes();
	alarm(30);
	long us = argc > 1 ? atol(argv[1]) : 30, ms = argc > 2 ? atol(argv[2]) : 1000;
	bool huge = argc > 3 && strcmp(argv[3], "huge") == 0;
	ml_tracker tr = { on_alloc, NULL, NULL };
	if (ml_memprof_start(1.0, 1, &tr) != ML_OK) {
		fprintf(stderr, "FAIL: ml_memprof_start\n");
		return 1;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	struct sigevent ev;
	memset(&ev, 0, sizeof ev);
	ev.sigev_notify = SIGEV_THREAD_ID;
	ev.sigev_signo = SIGUSR1;
	ev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
	timer_t timer;
	if (timer_create(CLOCK_MONOTONIC, &ev, &timer) != 0) {
		fprintf(stderr, "FAIL: timer_create: %s\n", strerror(errno));
		return 1;
	}
	struct itimerspec its = { { 0, us * 1000 }, { 0, us * 1000 } };
	timer_settime(timer, 0, &its, NULL);
	unsigned long main_allocs = 0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		for (int k = 0; k < 1000; k++) {
			for (int h = 0; huge && h < 20; h++) {
				/* volatile: gcc drops a malloc freed unused,
				 * and warns of the size it can see */
				volatile size_t too_big = (size_t)PTRDIFF_MAX + 1;
				void *volatile q = malloc(too_big);
				free(q);
			}
			void *p = malloc(64 + k % 256);
			if (p) {
				got += 64 + k % 256;
				main_allocs++;
			} else
				refused++;
			free(p);
		}
	} while (elapsed_ms(&t0) < ms);
	struct itimerspec off = { { 0, 0 }, { 0, 0 } };
	timer_settime(timer, 0, &off, NULL);
	ml_memprof_stop();
	printf("got %lu\nrefused %lu\nmain %lu\nsampled %lu\n",
	       (unsigned long)got, (unsigned long)refused, main_allocs,
	       (unsigned long)sampled);
	return 0;
}
