/* runrss.c: runs a command and prints one line
 * "WALL MAXRSS STATUS USER SYS MINFLT MAJFLT" on stdout: WALL is the seconds
 * from fork to wait4, STATUS the child's exit status (128 + signal if it was
 * killed), and the rest the child's rusage from wait4: MAXRSS its peak
 * resident set (KiB), USER and SYS its CPU seconds (all its threads),
 * MINFLT and MAJFLT its page faults. runrss exits with that status too.
 *
 *     runrss [NAME=VALUE ...] [--] COMMAND [ARG ...]
 *
 * NAME=VALUE pairs go into the child's environment only (so LD_PRELOAD
 * applies to the command, not to runrss), as with env(1). The command's
 * stdout goes to /dev/null unless RUNRSS_STDOUT names a file to append it to;
 * its stderr is inherited. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int i = 1;
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (!strchr(argv[i], '=') || argv[i][0] == '=')
			break;
	}
	int cmd = i;
	if (cmd >= argc) {
		fprintf(stderr, "usage: runrss [NAME=VALUE ...] [--] COMMAND [ARG ...]\n");
		return 2;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork();
	if (pid < 0) {
		perror("runrss: fork");
		return 2;
	}
	if (pid == 0) {
		for (int k = 1; k < cmd; k++) {
			if (strcmp(argv[k], "--") == 0)
				continue;
			if (putenv(argv[k]) != 0)
				_exit(127);
		}
		const char *o = getenv("RUNRSS_STDOUT");
		int fd = open(o ? o : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			close(fd);
		}
		execvp(argv[cmd], argv + cmd);
		perror(argv[cmd]);
		_exit(127);
	}
	int st;
	struct rusage ru;
	if (wait4(pid, &st, 0, &ru) < 0) {
		perror("runrss: wait4");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double wall = (double)(t1.tv_sec - t0.tv_sec) +
		      (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	int status = WIFEXITED(st) ? WEXITSTATUS(st)
		   : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 255;
	printf("%.4f %ld %d %.4f %.4f %ld %ld\n", wall, ru.ru_maxrss, status,
	       (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
	       ru.ru_minflt, ru.ru_majflt);
	return status;
}
