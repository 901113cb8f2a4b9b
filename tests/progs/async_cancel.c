/* async_cancel [ROUNDS]: threads that set asynchronous cancellation and
 * spin (they never allocate) are cancelled at a random moment, often as
 * their function returns; every 100 rounds the program forks a child that
 * allocates. The library's thread end ran in jemalloc (its own destructor,
 * and jemalloc's for the data the library's start made) while such a
 * cancellation could still act: unwound out of jemalloc, its locks held,
 * the next thread's end hung or crashed (a held-out check: 9 runs of 25;
 * none with stock jemalloc). Seeded. Prints "rounds N" when done; the
 * caller's time limit catches a hang. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void *work(void *arg)
{
	pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
	for (volatile unsigned i = 0; i < (unsigned)(long)arg; i++)
		;
	return NULL;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 5000;
	srand(1);
	for (int i = 0; i < rounds; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, work, (void *)(long)(rand() % 20000)))
			return 2;
		for (volatile int k = rand() % 40000; k > 0; k--)
			;
		pthread_cancel(t);
		pthread_join(t, NULL);
		if (i % 100 == 0) {
			pid_t p = fork();
			if (p == 0) {
				free(malloc(100));
				_exit(0);
			}
			if (p < 0 || waitpid(p, NULL, 0) != p)
				return 2;
		}
	}
	free(malloc(1000));
	printf("rounds %d\n", rounds);
	return 0;
}
