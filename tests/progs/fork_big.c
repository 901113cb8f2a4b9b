/* fork_big N MIB [HOW]: N processes of one tree (run under memlimit) ask
 * for a block of MIB MiB at the same moment (all wake on one pipe's end of
 * file) and hold it a while. Prints "got K" (how many were given theirs).
 * With _Fork, the children are made by glibc's _Fork (no atfork handlers)
 * instead of fork; with syscall, by syscall(SYS_fork); with clone3, by
 * syscall(SYS_clone3); with clone, by glibc's clone() (the child runs on a
 * stack of its own); with __clone, by glibc's other public name of it. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>

pid_t _Fork(void);
int __clone(int (*fn)(void *), void *stack, int flags, void *arg, ...);

/* A child by glibc's clone(): runs child() on a stack of its own. */
static int child(void *arg);

struct clone3_args { /* struct clone_args of linux/sched.h, version 0 */
	unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal,
		stack, stack_size, tls;
};

static pid_t make_child(const char *how, void *arg)
{
	if (!strcmp(how, "_Fork"))
		return _Fork();
	if (!strcmp(how, "syscall"))
		return (pid_t)syscall(SYS_fork);
	if (!strcmp(how, "clone3")) {
		struct clone3_args a = { .exit_signal = SIGCHLD };
		return (pid_t)syscall(SYS_clone3, &a, sizeof a);
	}
	if (!strcmp(how, "clone") || !strcmp(how, "__clone")) {
		static char stacks[64][64 << 10];
		static int used;
		char *top = stacks[used++ % 64] + sizeof stacks[0];
		pid_t p = how[0] == '_' ? __clone(child, top, SIGCHLD, arg)
					: clone(child, top, SIGCHLD, arg);
		return p ? p : -1;
	}
	return fork();
}

struct job {
	int go_r, go_w, res_w;
	size_t size;
};

static int child(void *arg)
{
	struct job *j = arg;
	close(j->go_w);
	char c;
	if (read(j->go_r, &c, 1) < 0)
		_exit(2);
	void *p = malloc(j->size);
	if (p)
		memset(p, 1, 4096);
	c = p ? '1' : '0';
	if (write(j->res_w, &c, 1) != 1)
		_exit(2);
	usleep(300000);
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int n = atoi(argv[1]);
	size_t size = (size_t)atol(argv[2]) << 20;
	int go[2], res[2];
	if (pipe(go) || pipe(res))
		return 1;
	const char *how = argc > 3 ? argv[3] : "fork";
	struct job j = { go[0], go[1], res[1], size };
	for (int i = 0; i < n; i++)
		if (make_child(how, &j) == 0)
			child(&j);
	usleep(200000); /* all waiting */
	close(go[0]);
	close(go[1]); /* end of file: all wake */
	int got = 0;
	for (int i = 0; i < n; i++) {
		char c = '0';
		if (read(res[0], &c, 1) == 1)
			got += c == '1';
	}
	while (wait(NULL) > 0)
		;
	printf("got %d\n", got);
	return 0;
}
