/* thread_sigfork [ROUNDS]: six threads that never allocate are each sent
 * a signal as they start; its handler forks (the child exits at once) and
 * waits for the child. The library's thread start called into jemalloc
 * (freeing its start block), which set the thread's jemalloc state up
 * under jemalloc's arenas lock: a fork from a handler there waited in
 * jemalloc's fork handler for the lock its own thread held (7 of 400 runs
 * hung; a held-out check). Prints "rounds N" when done; the caller's time
 * limit catches a hang. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void handler(int sig)
{
	(void)sig;
	int e = errno;
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	if (p > 0)
		waitpid(p, NULL, 0);
	errno = e;
}

static void *spin(void *arg)
{
	volatile int x = 0;
	for (int i = 0; i < 100000; i++)
		x++;
	return arg;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 100;
	struct sigaction sa = { .sa_handler = handler, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	for (int r = 0; r < rounds; r++) {
		pthread_t t[6];
		for (int i = 0; i < 6; i++) {
			if (pthread_create(&t[i], NULL, spin, NULL))
				return 2;
			pthread_kill(t[i], SIGUSR1);
		}
		for (int i = 0; i < 6; i++)
			pthread_join(t[i], NULL);
	}
	printf("rounds %d\n", rounds);
	return 0;
}
