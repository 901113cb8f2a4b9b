/* tree_forks MODE: forks that a process tree must count exactly (tests/tree.sh).
 *   nested   2000 forks of children that _exit at once, while a timer's
 *            handler (every 200 us) makes 300 more by _Fork, inside them;
 *            prints "live N": the tree's count of processes, 1 expected
 *   pthexit  the main thread ends by pthread_exit; another thread, 0.5 s
 *            later, runs /bin/true and prints "true STATUS" (0 expected:
 *            the process was taken for dead and its tree's segment gone)
 *   killed   50 times: a child SIGKILLed at once, then one that _exits;
 *            prints "live N": 1 expected (the killed ones' slots were
 *            never freed while the root lived, and past 4096 a forked
 *            child ran uncounted)
 *   unshare  20 children that each unshare a pid namespace and fork a
 *            grandchild there, then exit; prints the tree's segment, which
 *            must be gone once the tree ended (their slots were never
 *            released) */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

pid_t _Fork(void);

/* The segment's `live` (core/tree.c: struct seg, at byte 48). */
static unsigned live(void)
{
	const char *p = getenv("MEMLIMITS_TREE");
	int fd = p ? open(p, O_RDONLY) : -1;
	uint32_t v = 9999;
	if (fd >= 0) {
		if (pread(fd, &v, 4, 48) != 4)
			v = 9999;
		close(fd);
	}
	return v;
}

static volatile int nested;

static void on_alarm(int sig)
{
	(void)sig;
	int e = errno;
	if (nested < 300) {
		nested++;
		if (_Fork() == 0)
			_exit(0);
	}
	errno = e;
}

static void *later(void *arg)
{
	(void)arg;
	usleep(500000);
	pid_t p = fork();
	if (p == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	int st = 0;
	waitpid(p, &st, 0);
	printf("true %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	fflush(stdout);
	exit(0);
}

static int unshared(void)
{
	for (int i = 0; i < 20; i++) {
		pid_t c = fork();
		if (c == 0) {
			if (unshare(CLONE_NEWPID) != 0)
				_exit(3);
			pid_t g = fork();
			if (g == 0)
				_exit(0);
			waitpid(g, NULL, 0);
			_exit(0);
		}
		int st = 0;
		waitpid(c, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			printf("unshare failed\n");
			return 0;
		}
	}
	printf("%s\n", getenv("MEMLIMITS_TREE"));
	return 0;
}

static int killed(void)
{
	for (int i = 0; i < 50; i++) {
		pid_t p = fork();
		if (p == 0)
			raise(SIGKILL);
		waitpid(p, NULL, 0);
		p = fork();
		if (p == 0)
			_exit(0);
		waitpid(p, NULL, 0);
	}
	printf("live %u\n", live());
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "unshare"))
		return unshared();
	if (argc > 1 && !strcmp(argv[1], "killed"))
		return killed();
	if (argc > 1 && !strcmp(argv[1], "pthexit")) {
		pthread_t t;
		pthread_create(&t, NULL, later, NULL);
		pthread_exit(NULL);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, 200 }, { 0, 200 } };
	setitimer(ITIMER_REAL, &it, NULL);
	for (int i = 0; i < 2000; i++)
		if (fork() == 0)
			_exit(0);
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	usleep(100000);
	printf("live %u\n", live());
	return 0;
}
