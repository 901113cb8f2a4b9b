/* exec_clean MODE: runs /usr/bin/env (which prints its environment) with an
 * empty environment, through the exec or spawn function MODE names: with
 * the library preloaded under a limit, its variables must come back. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ENV "/usr/bin/env"

int main(int argc, char **argv)
{
	char *const args[] = { "env", NULL };
	char *const none[] = { NULL };
	char *const other[] = { "LD_PRELOAD=/lib/x86_64-linux-gnu/libm.so.6",
				"MEMLIMITS_GLOBAL_MEMORY=50M", "KEEP=1", NULL };
	const char *m = argc > 1 ? argv[1] : "";
	if (!strcmp(m, "execve"))
		execve(ENV, args, none);
	else if (!strcmp(m, "execve-other"))
		execve(ENV, args, other);
	else if (!strcmp(m, "execvpe"))
		execvpe("env", args, none);
	else if (!strcmp(m, "execle"))
		execle(ENV, "env", (char *)NULL, none);
	else if (!strcmp(m, "fexecve")) {
		int fd = open(ENV, O_RDONLY | O_CLOEXEC);
		fexecve(fd, args, none);
	} else if (!strcmp(m, "vfork")) {
		pid_t p = vfork();
		if (p == 0) {
			execve(ENV, args, none);
			_exit(127);
		}
		int st;
		waitpid(p, &st, 0);
		return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
	} else if (!strncmp(m, "posix_spawn", 11)) {
		pid_t p;
		int rc = m[11] == 'p' ? posix_spawnp(&p, "env", NULL, NULL, args, none)
				      : posix_spawn(&p, ENV, NULL, NULL, args, none);
		if (rc)
			return 126;
		int st;
		waitpid(p, &st, 0);
		return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
	} else {
		/* The others take the process's own environment: clear it. */
		clearenv();
		if (!strcmp(m, "execv"))
			execv(ENV, args);
		else if (!strcmp(m, "execvp"))
			execvp("env", args);
		else if (!strcmp(m, "execl"))
			execl(ENV, "env", (char *)NULL);
		else if (!strcmp(m, "execlp"))
			execlp("env", "env", (char *)NULL);
		else {
			fprintf(stderr, "exec_clean: unknown mode '%s'\n", m);
			return 2;
		}
	}
	perror(m);
	return 127;
}
