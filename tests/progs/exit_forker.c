/* exit_forker (tests/tree.sh, from a held-out check): 3 threads call exit()
 * at once while another keeps forking children that sleep 200 ms and then
 * exit(0). A child forked while a parent's thread was at the library's exit
 * gate parked at its own exit for ever. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_barrier_t b;

static void *forker(void *a)
{
	(void)a;
	for (;;) {
		pid_t c = fork();
		if (c == 0) {
			usleep(200000);
			exit(0);
		}
		usleep(200);
	}
}

static void *thr(void *a)
{
	(void)a;
	for (int k = 0; k < 20000; k++) {
		char *volatile p = malloc(100 + k % 5000);
		(void)p;
	}
	pthread_barrier_wait(&b);
	exit(1);
}

int main(void)
{
	pthread_t t;
	pthread_barrier_init(&b, 0, 4);
	pthread_create(&t, 0, forker, 0);
	usleep(2000);
	for (int i = 0; i < 3; i++)
		pthread_create(&t, 0, thr, 0);
	pthread_barrier_wait(&b);
	exit(0);
}
