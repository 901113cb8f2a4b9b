/* popen_sigfork [ROUNDS]: popen("echo ok") and pclose in a loop, reading
 * the line, while a 2 ms timer's handler forks (the child exits at once).
 * Under a limit the library's popen holds its shell lock for the whole of
 * glibc's popen, and the fork's prepare handler took the same lock: a
 * handler forking there waited for ever for its own thread (every run; a
 * held-out check). Prints "rounds N" (and "bad N" for lines that were not
 * "ok"); the caller's time limit catches a hang. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
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

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 100, bad = 0;
	struct sigaction sa = { .sa_handler = handler, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, 2000 }, { 0, 2000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	for (int i = 0; i < rounds; i++) {
		FILE *f = popen("echo ok", "r");
		if (!f)
			return 2;
		char line[16] = "";
		while (!fgets(line, sizeof line, f) && ferror(f) && errno == EINTR)
			clearerr(f);
		bad += strcmp(line, "ok\n") != 0;
		pclose(f);
	}
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	printf("rounds %d\nbad %d\n", rounds, bad);
	return 0;
}
