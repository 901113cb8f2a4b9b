/* sigfork HOW [ROUNDS]: a thread maps and unmaps in a loop and signals the
 * main thread, which maps and unmaps too; the signal's handler makes a
 * child with _Fork, fork or syscall(SYS_fork) ("_Fork", "fork", "sys"),
 * which returns from the handler, maps ten times and exits 0. A handler
 * that interrupted the main thread while it waited for the mapped-memory
 * account's lock (another thread holding it) gave its child the lock held
 * by a thread the child does not have: 160 of 200 _Fork children hung, 15
 * of 30 fork children (a held-out check). A child alive after 5 s counts
 * as hung and is killed, and no more are made. Prints "hung N" and
 * "children N". */
#define _GNU_SOURCE
#include <pthread.h>
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

static const char *how;
static volatile sig_atomic_t in_child, made;
static volatile pid_t child;
static pthread_t main_thread;
static volatile int stop;
/* The rounds are over: a child forked then (the handler interrupting main
 * past its loop) went on to join a thread it does not have, and hung with
 * the output pipe open (once in a CI run). */
static volatile sig_atomic_t done;

static void churn_once(void)
{
	char *p = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		p[0] = 1;
		munmap(p, 64 << 10);
	}
}

static void on_signal(int sig)
{
	(void)sig;
	if (in_child || child || done)
		return; /* one child at a time, and none after the rounds */
	pid_t c = !strcmp(how, "fork") ? fork()
		  : !strcmp(how, "sys") ? (pid_t)syscall(SYS_fork) : _Fork();
	if (c == 0) {
		in_child = 1;
		return;
	}
	if (c > 0)
		child = c;
}

static void *signaller(void *arg)
{
	(void)arg;
	for (long i = 0; !stop; i++) {
		churn_once();
		if (i % 50 == 0)
			pthread_kill(main_thread, SIGUSR1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	how = argc > 1 ? argv[1] : "_Fork";
	int rounds = argc > 2 ? atoi(argv[2]) : 100, hung = 0, children = 0;
	main_thread = pthread_self();
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	pthread_t th;
	if (pthread_create(&th, NULL, signaller, NULL))
		return 2;
	for (;;) {
		if (children >= rounds)
			done = 1;
		churn_once();
		if (in_child) {
			for (int i = 0; i < 10; i++)
				churn_once();
			_exit(0);
		}
		if (done)
			break;
		pid_t c = child;
		if (!c)
			continue;
		children++;
		if (wait_or_kill(c, 5000) == -1) {
			hung++;
			done = 1;
			continue; /* (a child forked just before leaves above) */
		}
		child = 0;
	}
	stop = 1;
	pthread_join(th, NULL);
	printf("hung %d\nchildren %d\n", hung, children);
	return 0;
}
