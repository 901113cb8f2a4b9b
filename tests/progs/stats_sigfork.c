/* stats_sigfork [CALLS]: main calls ml_stats in a loop beside 200 idle
 * threads (each call walks the registry of threads under its lock), while
 * a 10 ms timer's handler forks (the child exits at once). The walk held
 * the registry's lock with signals open: the fork's prepare handler, on
 * the same thread, spun for ever on it (as did a thread's exit, which
 * takes the lock to leave the registry: a held-out check). Prints
 * "calls N" when done; the caller's time limit catches a hang. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "forkreap.h"

#include "shim/memlimits.h"

#define IDLE 200

static pthread_barrier_t gate;

static void handler(int sig)
{
	(void)sig;
	fork_and_reap();
}

static void *idle(void *arg)
{
	pthread_barrier_wait(&gate);
	return arg;
}

int main(int argc, char **argv)
{
	int calls = argc > 1 ? atoi(argv[1]) : 3000;
	pthread_t t[IDLE];
	pthread_barrier_init(&gate, NULL, IDLE + 1);
	/* The idle threads block the timer's signal: only main forks. */
	sigset_t alrm;
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &alrm, NULL);
	for (int i = 0; i < IDLE; i++)
		if (pthread_create(&t[i], NULL, idle, NULL))
			return 2;
	pthread_sigmask(SIG_UNBLOCK, &alrm, NULL);
	alarm_every(10000, handler);
	for (int i = 0; i < calls; i++) {
		struct ml_stats s;
		if (ml_stats(&s) != ML_OK)
			return 2;
	}
	alarm_every(0, NULL);
	pthread_barrier_wait(&gate);
	for (int i = 0; i < IDLE; i++)
		pthread_join(t[i], NULL);
	printf("calls %d\n", calls);
	return 0;
}
