/* create_sigfork MODE MS: a handler that forks (forkreap.h) on a 2 ms timer
 * while the program
 *   create  creates and joins threads for MS milliseconds: the library's
 *           pthread_create allocates the new thread's start block in the
 *           calling thread, often on jemalloc's slow path (the new thread
 *           frees it), under jemalloc's locks: a fork from the handler
 *           there waited in jemalloc's fork handler for the lock its own
 *           thread held (6 runs of 10 of 3 s hung; a held-out check);
 *   exit    (run with MEMLIMITS_REPORT) allocates a little and calls
 *           exit(); from then on each lock the process takes (the program's
 *           pthread_mutex_trylock, which jemalloc's locks call first) raises
 *           the signal, at most 50 times: the exit report reads jemalloc's
 *           statistics under its ctl_mtx, where a fork from the handler
 *           waited for the lock its own thread held (every run hung; a
 *           held-out check found it at random, 1 run of 16).
 * Prints "done N" (threads, or children); the caller's time limit catches
 * a hang. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forkreap.h"

static volatile sig_atomic_t exiting, in_handler, raised;

static void on_alarm(int sig)
{
	(void)sig;
	in_handler = 1;
	fork_and_reap();
	in_handler = 0;
}

int pthread_mutex_trylock(pthread_mutex_t *m)
{
	static int (*real)(pthread_mutex_t *);
	if (!real)
		real = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_trylock");
	int r = real(m);
	if (r == 0 && exiting && !in_handler && raised < 50) {
		raised++;
		raise(SIGALRM);
	}
	return r;
}

static void now_exiting(void)
{
	exiting = 1;
}

static void *nothing(void *arg)
{
	return arg;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "create";
	double ms = argc > 2 ? atof(argv[2]) : 2000, end = now_ms() + ms;
	long n = 0;
	if (!strcmp(mode, "create")) {
		alarm_every(2000, on_alarm);
		while (now_ms() < end) {
			pthread_t t;
			if (pthread_create(&t, NULL, nothing, NULL) == 0) {
				pthread_join(t, NULL);
				n++;
			}
		}
		alarm_every(0, on_alarm);
	} else if (!strcmp(mode, "exit")) {
		struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = SA_RESTART };
		sigemptyset(&sa.sa_mask);
		sigaction(SIGALRM, &sa, NULL);
		atexit(now_exiting); /* runs before the library's report */
		free(malloc(100));
		printf("done 1\n");
		fflush(stdout);
		exit(0);
	} else {
		fprintf(stderr, "usage: create_sigfork create|exit MS\n");
		return 2;
	}
	printf("done %ld\n", n);
	return 0;
}
