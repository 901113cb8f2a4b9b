/* waitkill.h: waits up to `ms` milliseconds for child c (polling; a hung
 * child is the finding, not the test's end). Returns its wait status, or
 * -1 if it was still running: then it is killed and reaped. */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

static int wait_or_kill(pid_t c, int ms)
{
	struct timespec one = { 0, 1000000 };
	int st = 0;
	for (int waited = 0; waited < ms; waited++) {
		if (waitpid(c, &st, WNOHANG) == c)
			return st;
		nanosleep(&one, NULL);
	}
	kill(c, SIGKILL);
	waitpid(c, &st, 0);
	return -1;
}
