/* cow_fork, for tests/tree.sh:
 * - cow_fork MIB N [HOW]: makes a block of MIB MiB and writes it, then
 *   forks N children that each write over their copy of it (copy on write:
 *   MIB MiB each, allocating nothing) and wait until all are forked. HOW:
 *   fork (default), __fork, clone3 (the system call), forkpty, or handler
 *   (fork from a SIGALRM handler, while this thread maps 150 MiB, refused
 *   under 200M: the handler lands in the library's admissions; not in
 *   malloc, where a fork
 *   waits for ever for jemalloc's locks, as with any malloc).
 *   Prints "forked K" (the children made; a refused fork is skipped).
 * - cow_fork loop MIB: makes and writes MIB MiB, then forks children that
 *   exit at once, for ever (to be killed).
 * - cow_fork fill: mallocs and writes 1 MiB blocks until one is refused;
 *   prints "got K" (MiB). */
#define _GNU_SOURCE
#include <pty.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

pid_t __fork(void);

static char *block;
static size_t size;
static int go[2];
static const char *how = "fork";

struct clone3_args { /* struct clone_args of linux/sched.h, version 0 */
	unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal,
		stack, stack_size, tls;
};

static void child(void)
{
	close(go[1]);
	memset(block, 2, size);
	char c;
	_exit(read(go[0], &c, 1) < 0); /* the parent's end of file */
}

static pid_t make(void)
{
	if (!strcmp(how, "__fork"))
		return __fork();
	if (!strcmp(how, "clone3")) {
		struct clone3_args a = { .exit_signal = SIGCHLD };
		return (pid_t)syscall(SYS_clone3, &a, sizeof a);
	}
	if (!strcmp(how, "forkpty")) {
		int master;
		pid_t pid = forkpty(&master, NULL, NULL, NULL);
		return pid;
	}
	return fork();
}

static volatile sig_atomic_t forked, tried, n;

static void on_alarm(int sig)
{
	(void)sig;
	if (tried >= n)
		return;
	tried++;
	pid_t pid = fork();
	if (pid == 0)
		child();
	forked += pid > 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "fill")) {
		int got = 0;
		for (char *p; (p = malloc(1 << 20)) != NULL; got++)
			memset(p, 1, 1 << 20);
		printf("got %d\n", got);
		return 0;
	}
	bool loop = argc > 2 && !strcmp(argv[1], "loop");
	if (argc < 3)
		return 2;
	size = strtoul(argv[loop ? 2 : 1], NULL, 10) << 20;
	block = malloc(size);
	if (!block || pipe(go) != 0)
		return 1;
	memset(block, 1, size);
	if (loop)
		for (;;) {
			pid_t pid = fork();
			if (pid == 0)
				_exit(block[3]);
			if (pid > 0)
				waitpid(pid, NULL, 0);
		}
	n = atoi(argv[2]);
	if (argc > 3)
		how = argv[3];
	if (!strcmp(how, "handler")) {
		signal(SIGALRM, on_alarm);
		struct itimerval it = { { 0, 20000 }, { 0, 20000 } };
		setitimer(ITIMER_REAL, &it, NULL);
		while (tried < n) {
			/* Refused under the tests' limit: the refusal's
			 * exact look is long, and the handler lands there. */
			size_t len = (size_t)150 << 20;
			void *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (m != MAP_FAILED)
				munmap(m, len);
		}
		struct itimerval off = { { 0, 0 }, { 0, 0 } };
		setitimer(ITIMER_REAL, &off, NULL);
	} else
		for (int i = 0; i < n; i++) {
			pid_t pid = make();
			if (pid == 0)
				child();
			forked += pid > 0;
		}
	close(go[1]);
	while (wait(NULL) > 0)
		;
	printf("forked %d\n", (int)forked);
	return 0;
}
