/* exec_clean MODE [LIB]: runs /usr/bin/env (which prints its environment)
 * with an empty environment, through the exec or spawn function MODE
 * names: with the library preloaded under a limit, its variables must come
 * back. execve-lib: with LD_PRELOAD=LIB only (another build of the
 * library); execve-dup: LD_PRELOAD=LIB, then another LD_PRELOAD without it;
 * execve-bare: LD_PRELOAD=libmemlimits.so; system, popen: after
 * clearenv(), /usr/bin/env run by the shell. bigenv-thread: from a thread with a 256 KiB stack, with 70,000
 * variables, running sh to print the two. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ENV "/usr/bin/env"

static void *bigenv(void *arg)
{
	(void)arg;
	enum { N = 70000 };
	char **env = calloc(N + 1, sizeof *env);
	char *text = malloc((size_t)N * 16);
	for (int i = 0; i < N; i++) {
		env[i] = text + (size_t)i * 16;
		snprintf(env[i], 16, "V%d=x", i);
	}
	char *const args[] = { "sh", "-c",
			       "echo G=$MEMLIMITS_GLOBAL_MEMORY; echo P=$LD_PRELOAD", NULL };
	execve("/bin/sh", args, env);
	perror("execve");
	exit(127);
}

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
	else if (!strcmp(m, "execve-dup") && argc > 2) {
		/* ld.so reads the last LD_PRELOAD: the library is not in it. */
		char pre[4200];
		snprintf(pre, sizeof pre, "LD_PRELOAD=%s", argv[2]);
		char *const dup[] = { pre, "LD_PRELOAD=/lib/x86_64-linux-gnu/libm.so.6",
				      NULL };
		execve(ENV, args, dup);
	} else if (!strcmp(m, "execve-bare")) {
		/* A bare name ld.so may not find. */
		char *const bare[] = { "LD_PRELOAD=libmemlimits.so", NULL };
		execve(ENV, args, bare);
	} else if (!strcmp(m, "execve-lib") && argc > 2) {
		char pre[4200];
		snprintf(pre, sizeof pre, "LD_PRELOAD=%s", argv[2]);
		char *const lib[] = { pre, NULL };
		execve(ENV, args, lib);
	} else if (!strcmp(m, "bigenv-thread")) {
		pthread_attr_t a;
		pthread_attr_init(&a);
		pthread_attr_setstacksize(&a, 256 << 10);
		pthread_t t;
		pthread_create(&t, &a, bigenv, NULL);
		pthread_join(t, NULL);
	}
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
		else if (!strcmp(m, "system")) {
			/* env's exit status: the shell's. */
			int st = system(ENV);
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
		} else if (!strcmp(m, "popen")) {
			FILE *f = popen(ENV, "r");
			if (!f)
				return 126;
			char buf[4096];
			size_t n;
			while ((n = fread(buf, 1, sizeof buf, f)) > 0)
				fwrite(buf, 1, n, stdout);
			int st = pclose(f);
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
		} else {
			fprintf(stderr, "exec_clean: unknown mode '%s'\n", m);
			return 2;
		}
	}
	perror(m);
	return 127;
}
