/* forkreap.h: what the signal handlers of the fork-from-a-handler helpers
 * do (thread_sigfork, stats_sigfork, popen_sigfork): fork, the child exits
 * at once, the handler reaps it; errno as it was. And a timer that sends
 * SIGALRM to such a handler every `us` microseconds (0: stops it). */
#include <errno.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static inline void fork_and_reap(void)
{
	int e = errno;
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	if (p > 0)
		waitpid(p, NULL, 0);
	errno = e;
}

static inline void alarm_every(long us, void (*handler)(int))
{
	if (us) {
		struct sigaction sa = { .sa_handler = handler, .sa_flags = SA_RESTART };
		sigemptyset(&sa.sa_mask);
		sigaction(SIGALRM, &sa, NULL);
	}
	struct itimerval it = { { 0, us }, { 0, us } };
	setitimer(ITIMER_REAL, &it, NULL);
}
