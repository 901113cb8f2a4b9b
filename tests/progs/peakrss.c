/* peakrss OUTFILE COMMAND [ARG...]: runs the command (stdin, stdout and
 * stderr inherited) and writes "MAXRSS_KIB STATUS" to OUTFILE: the peak
 * resident set of the command (wait4's ru_maxrss, the largest of the
 * process and its waited-for descendants) and its exit status (128 + the
 * signal if it was killed). Exits 0 if it could run it. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: peakrss OUTFILE COMMAND [ARG...]\n");
		return 2;
	}
	pid_t pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		perror(argv[2]);
		_exit(127);
	}
	int st;
	struct rusage ru;
	if (wait4(pid, &st, 0, &ru) != pid)
		return 2;
	FILE *f = fopen(argv[1], "w");
	if (!f)
		return 2;
	fprintf(f, "%ld %d\n", ru.ru_maxrss,
		WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	return fclose(f) != 0;
}
