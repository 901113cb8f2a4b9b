/* thread_sigfork [ROUNDS [late]]: six threads that never allocate are each
 * sent a signal as they start; its handler forks (the child exits at once)
 * and waits for the child. The library's thread start called into jemalloc
 * (freeing its start block), which set the thread's jemalloc state up under
 * jemalloc's arenas lock: a fork from a handler there waited in jemalloc's
 * fork handler for the lock its own thread held (7 of 400 runs hung; a
 * held-out check).
 *
 * With "late" the signal comes at the threads' end, at the worst moment: the
 * program's pthread_mutex_trylock (which jemalloc's locks call first, and a
 * program's definition interposes) raises it in a thread whose function has
 * returned, each time such a thread takes a lock outside the handler. Stock
 * jemalloc takes none there for a thread that never allocated; the library's
 * start had made it a thread cache, which jemalloc's key destructor freed
 * under the arenas' locks (CI hung there once in 1,200 rounds).
 *
 * Prints "rounds N" when done; the caller's time limit catches a hang. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forkreap.h"

static int late;
static __thread volatile sig_atomic_t done, in_handler;

int pthread_mutex_trylock(pthread_mutex_t *m)
{
	static int (*real)(pthread_mutex_t *);
	if (!real)
		real = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_trylock");
	int r = real(m);
	if (r == 0 && late && done && !in_handler)
		raise(SIGUSR1);
	return r;
}

static void handler(int sig)
{
	(void)sig;
	in_handler = 1;
	fork_and_reap();
	in_handler = 0;
}

static void *spin(void *arg)
{
	volatile int x = 0;
	for (int i = 0; i < 100000; i++)
		x++;
	done = 1;
	return arg;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 100;
	late = argc > 2 && strcmp(argv[2], "late") == 0;
	struct sigaction sa = { .sa_handler = handler, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	for (int r = 0; r < rounds; r++) {
		pthread_t t[6];
		for (int i = 0; i < 6; i++) {
			if (pthread_create(&t[i], NULL, spin, NULL))
				return 2;
			if (!late)
				pthread_kill(t[i], SIGUSR1);
		}
		for (int i = 0; i < 6; i++)
			pthread_join(t[i], NULL);
	}
	printf("rounds %d\n", rounds);
	return 0;
}
