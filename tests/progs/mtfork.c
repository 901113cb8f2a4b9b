/* mtfork HOW [ROUNDS]: four threads map and unmap memory in a loop while
 * the main thread makes children with _Fork, syscall(SYS_fork) or
 * clone(SIGCHLD) ("_Fork", "sys", "clone"), which run no atfork handler.
 * Each child maps 60 MiB under the 100M limit, which fits, then 40 MiB
 * more, which does not, and exits 0 if both went so (its account is then
 * neither lost nor doubled).
 * A child made while a thread of the parent held the mapped-memory
 * account's lock inherited it held, with no thread left to release it:
 * its mmap waited for ever (29 of 30 children hung; a held-out check).
 * A child still alive after 5 seconds counts as hung and is killed, and
 * no more are made.
 * Prints "hung N", "refused N" and "rounds N". */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "waitkill.h"

static volatile int stop;

static void *churn(void *arg)
{
	size_t n = (size_t)(64 + 32 * (long)arg) << 10;
	while (!stop) {
		char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			continue;
		p[0] = 1;
		mprotect(p, n / 2, PROT_NONE);
		munmap(p, n);
	}
	return NULL;
}

static int child(void *arg)
{
	(void)arg;
	size_t MiB = (size_t)1 << 20;
	char *p = mmap(NULL, 60 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		_exit(1);
	p[0] = 1;
	char *q = mmap(NULL, 40 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	_exit(q != MAP_FAILED ? 3 : munmap(p, 60 * MiB) != 0);
}

static char stack[1 << 16];

static pid_t make(const char *how)
{
	if (!strcmp(how, "clone"))
		return clone(child, stack + sizeof stack, SIGCHLD, NULL);
	return !strcmp(how, "_Fork") ? _Fork() : (pid_t)syscall(SYS_fork);
}

int main(int argc, char **argv)
{
	const char *how = argc > 1 ? argv[1] : "_Fork";
	int rounds = argc > 2 ? atoi(argv[2]) : 30, hung = 0, refused = 0;
	pthread_t th[4];
	for (long i = 0; i < 4; i++)
		if (pthread_create(&th[i], NULL, churn, (void *)i))
			return 2;
	for (int r = 0; r < rounds; r++) {
		pid_t c = make(how);
		if (c == 0)
			child(NULL);
		if (c < 0)
			return 2;
		int st = wait_or_kill(c, 5000);
		if (st == -1) {
			hung++;
			break;
		}
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			refused++;
	}
	stop = 1;
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	printf("hung %d\nrefused %d\nrounds %d\n", hung, refused, rounds);
	return 0;
}
