/* spawn.c: many short processes (a build of trivial targets, a shell
 * loop): posix_spawn of /bin/true, waited for, N times. The children
 * inherit the environment, so each one loads what the parent was started
 * with (LD_PRELOAD, MEMLIMITS_*): what is measured is a process's start-up
 * and exit under each configuration. Prints the number of children that
 * exited 0.
 *
 *     spawn N */
#include <spawn.h>
#include <sys/wait.h>

#include "bench.h"

extern char **environ;

int main(int argc, char **argv)
{
	long n = arg_long(argc, argv, 1, 1000);
	long ok = 0;
	for (long i = 0; i < n; i++) {
		char *args[] = { "true", NULL };
		pid_t p;
		int st;
		if (posix_spawn(&p, "/bin/true", NULL, NULL, args, environ) != 0)
			return 1;
		if (waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0)
			ok++;
	}
	printf("%ld\n", ok);
	return ok == n ? 0 : 1;
}
