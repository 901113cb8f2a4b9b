/* harness.h: helpers shared by the tests: run a command with extra
 * environment, capture its output and status. Header-only so that each test
 * program stays one file. Tests that need the engine run under
 * LD_PRELOAD=build/libmemlimits.so (tests/run sets it and MLT_LIB). */
#ifndef MLT_HARNESS_H
#define MLT_HARNESS_H
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct mlt_run {
	int status;   /* exit status, or 128 + signal */
	char *out;    /* captured stdout, NUL-terminated (malloc'd) */
	char *err;    /* captured stderr */
	size_t out_len, err_len;
};

/* Absolute path of the library under test. */
static inline const char *mlt_lib(void)
{
	const char *l = getenv("MLT_LIB");
	return l ? l : "build/libmemlimits.so";
}

static inline void mlt_append(char **buf, size_t *len, size_t *cap,
			      const char *p, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*buf = realloc(*buf, *cap);
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
}

/* Reads what is ready on the child's stdout (p[0]) and stderr (p[1]) into
 * r; a closed pipe is closed here and counted off *open_fds. */
static inline void mlt_drain(struct pollfd p[2], struct mlt_run *r, size_t *oc,
			     size_t *ec, int *open_fds)
{
	char buf[65536];
	for (int i = 0; i < 2; i++) {
		if (p[i].fd < 0 || !p[i].revents)
			continue;
		ssize_t got = read(p[i].fd, buf, sizeof buf);
		if (got <= 0) {
			close(p[i].fd);
			p[i].fd = -1;
			(*open_fds)--;
		} else if (i == 0)
			mlt_append(&r->out, &r->out_len, oc, buf, (size_t)got);
		else
			mlt_append(&r->err, &r->err_len, ec, buf, (size_t)got);
	}
}

/* Runs argv with the current environment minus every MEMLIMITS_* and
 * LD_PRELOAD, plus `env` (NULL-terminated "NAME=value" list; NULL for none).
 * If `preload` the library under test is preloaded. `input` (may be NULL)
 * is written to its stdin. Returns 0, or -1 if it could not be started. */
static inline int mlt_run_cmd(char *const argv[], const char *const env[],
			      int preload, const char *input, struct mlt_run *r)
{
	size_t n = 0, k = 0;
	while (environ[n])
		n++;
	size_t extra = 0;
	while (env && env[extra])
		extra++;
	char **e = calloc(n + extra + 2, sizeof *e);
	static char pre[4096];
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "MEMLIMITS_", 10) != 0 &&
		    strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
			e[k++] = environ[i];
	if (preload) {
		snprintf(pre, sizeof pre, "LD_PRELOAD=%s", mlt_lib());
		e[k++] = pre;
	}
	for (size_t i = 0; i < extra; i++)
		e[k++] = (char *)env[i];
	e[k] = NULL;
	int po[2], pe[2], pi[2];
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC) || pipe2(pi, O_CLOEXEC))
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pi[0], 0);
	posix_spawn_file_actions_adddup2(&fa, po[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, e);
	posix_spawn_file_actions_destroy(&fa);
	free(e);
	close(pi[0]);
	close(po[1]);
	close(pe[1]);
	if (rc) {
		close(pi[1]);
		close(po[0]);
		close(pe[0]);
		return -1;
	}
	if (input) {
		signal(SIGPIPE, SIG_IGN);
		size_t len = strlen(input), off = 0;
		while (off < len) {
			ssize_t w = write(pi[1], input + off, len - off);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
	close(pi[1]);
	memset(r, 0, sizeof *r);
	size_t oc = 0, ec = 0;
	mlt_append(&r->out, &r->out_len, &oc, "", 0);
	mlt_append(&r->err, &r->err_len, &ec, "", 0);
	struct pollfd p[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
	int open_fds = 2;
	/* A hung child (a deadlock) must fail the test, not hang the suite. */
	const char *tmo = getenv("MLT_TIMEOUT");
	int budget_ms = (tmo ? atoi(tmo) : 120) * 1000, killed = 0;
	while (open_fds) {
		int pr = poll(p, 2, 1000);
		if (pr < 0 && errno != EINTR)
			break;
		if (pr == 0 && (budget_ms -= 1000) <= 0 && !killed) {
			fprintf(stderr, "harness: %s still running after the time limit; killed\n",
				argv[0]);
			kill(pid, SIGKILL);
			killed = 1;
		}
		mlt_drain(p, r, &oc, &ec, &open_fds);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return 0;
}

/* The number after "key " or "key=" at the start of a line of out. */
static inline bool mlt_kv(const char *out, const char *key, double *v)
{
	size_t n = strlen(key);
	for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p) {
		if (strncmp(p, key, n) == 0 && (p[n] == ' ' || p[n] == '=')) {
			char *end;
			*v = strtod(p + n + 1, &end);
			return end != p + n + 1;
		}
	}
	return false;
}

static inline void mlt_run_free(struct mlt_run *r)
{
	free(r->out);
	free(r->err);
}

/* Runs a shell command line (sh -c). */
static inline int mlt_sh(const char *cmd, const char *const env[], int preload,
			 const char *input, struct mlt_run *r)
{
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	return mlt_run_cmd(argv, env, preload, input, r);
}

/* As mlt_run_cmd (no input), with LD_PRELOAD set to `preload` (NULL: none)
 * and a deadline: after `seconds` the child's whole process group gets
 * SIGKILL, *timed_out is set and the status is 128 + SIGKILL. For stress
 * tests, where a hang is the failure. */
static inline int mlt_run_timed(char *const argv[], const char *const env[],
				const char *preload, int seconds,
				struct mlt_run *r, int *timed_out)
{
	size_t n = 0, k = 0, extra = 0;
	while (environ[n])
		n++;
	while (env && env[extra])
		extra++;
	char **e = calloc(n + extra + 2, sizeof *e);
	char pre[4096];
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "MEMLIMITS_", 10) != 0 &&
		    strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
			e[k++] = environ[i];
	if (preload) {
		snprintf(pre, sizeof pre, "LD_PRELOAD=%s", preload);
		e[k++] = pre;
	}
	for (size_t i = 0; i < extra; i++)
		e[k++] = (char *)env[i];
	e[k] = NULL;
	int po[2], pe[2];
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
		free(e);
		return -1;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, po[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
	posix_spawnattr_setpgroup(&at, 0);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, &at, argv, e);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	free(e);
	close(po[1]);
	close(pe[1]);
	if (rc) {
		close(po[0]);
		close(pe[0]);
		return -1;
	}
	memset(r, 0, sizeof *r);
	*timed_out = 0;
	size_t oc = 0, ec = 0;
	mlt_append(&r->out, &r->out_len, &oc, "", 0);
	mlt_append(&r->err, &r->err_len, &ec, "", 0);
	struct pollfd p[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
	int open_fds = 2;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int st = 0;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms = (now.tv_sec - t0.tv_sec) * 1000 +
			  (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (ms >= seconds * 1000L) {
			*timed_out = 1;
			kill(-pid, SIGKILL);
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			break;
		}
		if (!open_fds) {
			/* Output closed: wait for the exit, still on the clock. */
			pid_t w = waitpid(pid, &st, WNOHANG);
			if (w == pid || (w < 0 && errno != EINTR))
				break;
			usleep(5000);
			continue;
		}
		int pr = poll(p, 2, 100);
		if (pr > 0)
			mlt_drain(p, r, &oc, &ec, &open_fds);
	}
	for (int i = 0; i < 2; i++)
		if (p[i].fd >= 0)
			close(p[i].fd);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return 0;
}

#endif
