/* handler_maps: a signal handler that makes only async-signal-safe calls
 * of the mmap family (ftruncate of a memfd, or mmap and munmap), on a 300
 * us timer, while its thread mallocs and frees big blocks (inside
 * jemalloc, holding its locks) and another thread maps and unmaps. Under a
 * global limit the mapper, holding the mapped-memory account's lock, read
 * jemalloc's statistics and waited for the lock the interrupted thread
 * held, whose handler waited for the account's lock: a deadlock in 10 runs
 * of 10 (a held-out check). Runs 2 seconds; prints "ok". */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int memfd, use_mmap;
static volatile long hits;

static void handler(int sig)
{
	(void)sig;
	if (use_mmap) {
		void *q = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (q != MAP_FAILED)
			munmap(q, 1 << 16);
	} else if (ftruncate(memfd, (hits & 1) ? 0 : 1 << 20) != 0) {
		_exit(3);
	}
	hits++;
}

static void *mapper(void *arg)
{
	(void)arg;
	for (;;) {
		void *q = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (q != MAP_FAILED)
			munmap(q, 1 << 16);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	use_mmap = argc > 1 && !strcmp(argv[1], "mmap");
	memfd = memfd_create("handler_maps", 0);
	if (memfd < 0)
		return 2;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &s, NULL); /* the mapper never gets it */
	pthread_t t;
	if (pthread_create(&t, NULL, mapper, NULL))
		return 2;
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, 300 }, { 0, 300 } };
	setitimer(ITIMER_REAL, &it, NULL);
	srand(1);
	time_t end = time(NULL) + 2;
	while (time(NULL) < end) {
		void *p = malloc((size_t)rand() % (8 << 20) + 1);
		free(p);
	}
	struct itimerval zero = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &zero, NULL);
	printf("ok (%ld handler calls)\n", hits);
	return 0;
}
