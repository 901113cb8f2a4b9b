/* hostile_fork MODE [REPS]: process creation from a multithreaded process
 * whose other threads allocate and sit inside tasks (allocation limits,
 * tokens, global-memory tasks) while main creates processes (issue 6).
 *
 * MODE is one of
 *   fork      fork REPS times (default 150); each child checks that it works
 *             (see child_checks) and exits 0; half of the forks happen from
 *             inside a task of main's, whose scope the child inherits;
 *   forkexec  fork + execve of this program with MODE=check (REPS, 30);
 *   vfork     vfork + execve("/bin/true") (REPS, 150);
 *   spawn     posix_spawn("/bin/true") (REPS, 150);
 *   check     (the exec target) the engine is loaded in a fresh process,
 *             its counters start sane and a task counts exactly.
 * Children arm alarm() first, so a child that deadlocks dies of SIGALRM and
 * is counted as a failure. Every failure prints "FAIL ..." on stderr; exit
 * status 0 iff there was none. The last line on stdout is a summary. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim/memlimits.h"

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define NWORKERS 3

extern char **environ;

static atomic_int failures;

/* Async-signal-safe enough for a forked child: no stdio. */
static void fail(const char *fmt, ...)
{
	char b[512];
	int n = snprintf(b, sizeof b, "FAIL [pid %d] ", (int)getpid());
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(b + n, sizeof b - (size_t)n, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof b - 2)
		n = (int)sizeof b - 2;
	b[n++] = '\n';
	if (write(2, b, (size_t)n) < 0)
		_exit(99);
	atomic_fetch_add(&failures, 1);
}
#define CHECK(c, ...) do { if (!(c)) fail(__VA_ARGS__); } while (0)

static __attribute__((noinline)) void *xmalloc(size_t n)
{
	void *p = malloc(n);
	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ---- Workers: random tasks of the three kinds, forever ------------------- */

struct worker {
	pthread_t tid;
	int id;
	uint64_t seed;
	pthread_mutex_t tok_lock; /* guards tok against main's ml_token_set */
	ml_token *tok;
	uint64_t tasks;
};
static struct worker workers[NWORKERS];
static atomic_int stop;
static atomic_uint_fast64_t tasks_done;

struct churn {
	struct worker *w;
	unsigned iters;
	bool until_stop; /* also stop early when the workers are stopped */
	bool got_null;
};

/* Allocates random sizes, holding up to 32 blocks, frees them all. */
static void *churn_task(void *arg)
{
	struct churn *c = arg;
	void *held[32] = { 0 };
	for (unsigned i = 0; i < c->iters && !(c->until_stop && atomic_load(&stop)); i++) {
		size_t n = 1 + rnd(&c->w->seed) % (i % 16 == 0 ? 64 * KiB : 2 * KiB);
		void *p = xmalloc(n);
		if (!p) {
			c->got_null = true;
			break;
		}
		memset(p, 0x5a, n < 64 ? n : 64);
		unsigned k = i % 32;
		free(held[k]);
		held[k] = p;
	}
	for (int k = 0; k < 32; k++)
		free(held[k]);
	return NULL;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	while (!atomic_load(&stop)) {
		struct churn c = { .w = w, .iters = 200 + rnd(&w->seed) % 400 };
		ml_status st;
		switch (w->tasks++ % 3) {
		case 0: {
			uint64_t limit = 16 * KiB + rnd(&w->seed) % (2 * MiB), used = 0;
			st = ml_limit_allocations(limit, churn_task, &c, NULL, &used);
			CHECK(st == ML_OK || st == ML_ALLOCATION_LIMIT,
			      "worker %d: allocation task returned %d", w->id, st);
			CHECK(st == ML_OK ? !c.got_null && used <= limit
					  : c.got_null && used <= limit,
			      "worker %d: status %d, got_null %d, used %llu, limit %llu",
			      w->id, st, c.got_null, (unsigned long long)used,
			      (unsigned long long)limit);
			break;
		}
		case 1: {
			ml_token *t = ml_token_create();
			CHECK(t != NULL, "worker %d: ml_token_create", w->id);
			if (!t)
				break;
			pthread_mutex_lock(&w->tok_lock);
			w->tok = t;
			pthread_mutex_unlock(&w->tok_lock);
			c.until_stop = true;
			c.iters *= 8; /* long enough for main to set it, sometimes */
			st = ml_limit_with_token(t, churn_task, &c, NULL);
			pthread_mutex_lock(&w->tok_lock);
			w->tok = NULL;
			pthread_mutex_unlock(&w->tok_lock);
			CHECK((st == ML_TOKEN_LIMIT && ml_token_is_set(t) && c.got_null) ||
				      (st == ML_OK && !c.got_null),
			      "worker %d: token task returned %d (set %d, got_null %d)",
			      w->id, st, ml_token_is_set(t), c.got_null);
			ml_token_destroy(t);
			break;
		}
		default:
			st = ml_limit_global_memory(churn_task, &c, NULL);
			CHECK(st == ML_OK && !c.got_null,
			      "worker %d: global task returned %d under a 1 GiB limit",
			      w->id, st);
			break;
		}
		atomic_fetch_add(&tasks_done, 1);
	}
	return NULL;
}

static void start_workers(void)
{
	ml_status st = ml_start();
	CHECK(st == ML_OK || st == ML_INVALID, "ml_start: %d", st);
	ml_set_global_memory_limit((int64_t)GiB);
	for (int i = 0; i < NWORKERS; i++) {
		workers[i].id = i;
		workers[i].seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
		pthread_mutex_init(&workers[i].tok_lock, NULL);
		if (pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]))
			fail("pthread_create");
	}
	/* Let every worker get into its tasks before the first fork. */
	while (atomic_load(&tasks_done) < 3 * NWORKERS)
		sched_yield();
}

static void stop_workers(void)
{
	atomic_store(&stop, 1);
	for (int i = 0; i < NWORKERS; i++)
		pthread_join(workers[i].tid, NULL);
}

/* Interrupts a worker's token task now and then. */
static void poke_worker(unsigned rep)
{
	struct worker *w = &workers[rep % NWORKERS];
	pthread_mutex_lock(&w->tok_lock);
	if (w->tok)
		ml_token_set(w->tok);
	pthread_mutex_unlock(&w->tok_lock);
}

/* ---- What a child (forked or exec'd) checks ------------------------------ */

struct fixed {
	unsigned n;
	size_t size;
	unsigned ok;
	bool got_null;
};
static void *fixed_task(void *arg)
{
	struct fixed *f = arg;
	void *held[64];
	unsigned k = 0;
	for (unsigned i = 0; i < f->n && i < 64; i++) {
		void *p = xmalloc(f->size);
		if (!p) {
			f->got_null = true;
			break;
		}
		held[k++] = p;
		f->ok++;
	}
	while (k)
		free(held[--k]);
	return NULL;
}

/* Tasks in this thread count exactly and fire exactly. */
static void exact_tasks(const char *who)
{
	struct fixed f = { .n = 10, .size = 1000 };
	uint64_t used = 0;
	ml_status st = ml_limit_allocations(MiB, fixed_task, &f, NULL, &used);
	CHECK(st == ML_OK && used == 10000 && f.ok == 10,
	      "%s: 10 x 1000 B under 1 MiB: status %d, used %llu, ok %u", who, st,
	      (unsigned long long)used, f.ok);
	f = (struct fixed){ .n = 10, .size = 1000 };
	st = ml_limit_allocations(5500, fixed_task, &f, NULL, &used);
	CHECK(st == ML_ALLOCATION_LIMIT && used == 5000 && f.ok == 5 && f.got_null,
	      "%s: 10 x 1000 B under 5500 B: status %d, used %llu, ok %u", who, st,
	      (unsigned long long)used, f.ok);
	ml_token *t = ml_token_create();
	CHECK(t != NULL, "%s: ml_token_create", who);
	if (t) {
		f = (struct fixed){ .n = 3, .size = 100 };
		st = ml_limit_with_token(t, fixed_task, &f, NULL);
		CHECK(st == ML_OK && f.ok == 3, "%s: unset token: %d", who, st);
		ml_token_set(t);
		f = (struct fixed){ .n = 3, .size = 100 };
		st = ml_limit_with_token(t, fixed_task, &f, NULL);
		CHECK(st == ML_TOKEN_LIMIT && f.ok == 0 && f.got_null,
		      "%s: set token: status %d, ok %u", who, st, f.ok);
		ml_token_destroy(t);
	}
	f = (struct fixed){ .n = 4, .size = 4096 };
	st = ml_limit_global_memory(fixed_task, &f, NULL);
	CHECK(st == ML_OK && f.ok == 4, "%s: global task: %d", who, st);
}

static void *thread_exact(void *arg)
{
	exact_tasks(arg);
	return NULL;
}

/* The heap count follows a big block in and out. */
static void heap_follows(const char *who)
{
	struct ml_stats a, b, c;
	ml_stats(&a);
	void *p = xmalloc(8 * MiB);
	CHECK(p != NULL, "%s: malloc 8 MiB", who);
	if (p)
		memset(p, 1, 8 * MiB);
	ml_stats(&b);
	free(p);
	ml_stats(&c);
	int64_t up = b.live_bytes - a.live_bytes, back = c.live_bytes - a.live_bytes;
	CHECK(up >= (int64_t)(8 * MiB) && up <= (int64_t)(9 * MiB),
	      "%s: 8 MiB block moved live_bytes by %lld", who, (long long)up);
	CHECK(back > -(int64_t)MiB && back < (int64_t)MiB,
	      "%s: after free live_bytes is %lld from before", who, (long long)back);
}

/* A forked child: `before` is main's ml_stats just before fork, or NULL. */
static void child_checks(const struct ml_stats *before, const char *who)
{
	struct ml_stats s;
	CHECK(ml_stats(&s) == ML_OK, "%s: ml_stats failed", who);
	CHECK(s.live_bytes > 0 && s.live_bytes < (int64_t)GiB,
	      "%s: live_bytes %lld", who, (long long)s.live_bytes);
	CHECK(s.peak_bytes >= s.live_bytes, "%s: peak %lld < live %lld", who,
	      (long long)s.peak_bytes, (long long)s.live_bytes);
	if (before) {
		CHECK(s.thread_allocated >= before->thread_allocated &&
			      s.thread_allocated - before->thread_allocated < 64 * KiB,
		      "%s: thread_allocated %llu, before fork %llu", who,
		      (unsigned long long)s.thread_allocated,
		      (unsigned long long)before->thread_allocated);
		CHECK(s.process_allocated >= before->process_allocated,
		      "%s: process_allocated %llu, before fork %llu", who,
		      (unsigned long long)s.process_allocated,
		      (unsigned long long)before->process_allocated);
	}
	CHECK(s.process_allocated >= s.thread_allocated,
	      "%s: process_allocated %llu < thread_allocated %llu", who,
	      (unsigned long long)s.process_allocated,
	      (unsigned long long)s.thread_allocated);
	/* It allocates and its tasks count exactly. */
	exact_tasks(who);
	/* It creates a thread, which works too. */
	pthread_t th;
	if (pthread_create(&th, NULL, thread_exact, (void *)"child's thread"))
		fail("%s: pthread_create in the child", who);
	else
		pthread_join(th, NULL);
	heap_follows(who);
	struct ml_stats e;
	ml_stats(&e);
	CHECK(e.thread_allocated - s.thread_allocated >= 10000 + 5000 + 300 + 4 * 4096 + 8 * MiB,
	      "%s: thread_allocated grew by %llu only", who,
	      (unsigned long long)(e.thread_allocated - s.thread_allocated));
	CHECK(e.process_allocated >= s.process_allocated + (e.thread_allocated - s.thread_allocated),
	      "%s: process_allocated grew by %llu, the thread alone by %llu", who,
	      (unsigned long long)(e.process_allocated - s.process_allocated),
	      (unsigned long long)(e.thread_allocated - s.thread_allocated));
}

static int wait_child(pid_t pid, const char *what, unsigned rep)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR) {
			fail("%s %u: waitpid: %s", what, rep, strerror(errno));
			return -1;
		}
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	CHECK(code == 0, "%s %u: child exited with status %d%s", what, rep, code,
	      code == 128 + SIGALRM ? " (its watchdog fired: deadlock?)" : "");
	return code;
}

/* ---- Modes ---------------------------------------------------------------- */

struct in_task {
	unsigned rep;
	pid_t pid;
};

/* Forks from inside main's allocation task: the child is inside the task
 * too, its nested limits fire exactly, and it leaves the task normally. */
static void *fork_in_task(void *arg)
{
	struct in_task *it = arg;
	struct ml_stats before;
	ml_stats(&before);
	it->pid = fork();
	if (it->pid == 0) {
		alarm(10);
		struct fixed f = { .n = 5, .size = 1000 };
		uint64_t used = 0;
		ml_status st = ml_limit_allocations(2500, fixed_task, &f, NULL, &used);
		CHECK(st == ML_ALLOCATION_LIMIT && used == 2000 && f.ok == 2,
		      "child in task: nested 2500 B: status %d, used %llu", st,
		      (unsigned long long)used);
		f = (struct fixed){ .n = 3, .size = 1000 };
		fixed_task(&f);
		CHECK(f.ok == 3 && !ml_is_interrupted(), "child in task: allocations fail");
	}
	return NULL;
}

static int mode_fork(unsigned reps)
{
	start_workers();
	for (unsigned rep = 0; rep < reps; rep++) {
		poke_worker(rep);
		if (rep % 2) {
			struct in_task it = { .rep = rep };
			uint64_t used = 0;
			ml_status st = ml_limit_allocations(GiB, fork_in_task, &it, NULL, &used);
			if (it.pid == 0) {
				CHECK(st == ML_OK && used >= 5000 && used < 5000 + 64 * KiB,
				      "child in task: task returned %d, used %llu", st,
				      (unsigned long long)used);
				child_checks(NULL, "child of a fork in a task");
				_exit(atomic_load(&failures) ? 1 : 0);
			}
			CHECK(st == ML_OK, "parent: task around fork returned %d", st);
			if (it.pid < 0)
				fail("fork: %s", strerror(errno));
			else
				wait_child(it.pid, "fork in task", rep);
			continue;
		}
		struct ml_stats before;
		ml_stats(&before);
		pid_t pid = fork();
		if (pid == 0) {
			alarm(10);
			child_checks(&before, "forked child");
			_exit(atomic_load(&failures) ? 1 : 0);
		}
		if (pid < 0)
			fail("fork: %s", strerror(errno));
		else
			wait_child(pid, "fork", rep);
	}
	stop_workers();
	exact_tasks("parent after the forks");
	return 0;
}

static int mode_forkexec(unsigned reps)
{
	const char *self = "/proc/self/exe";
	start_workers();
	for (unsigned rep = 0; rep < reps; rep++) {
		poke_worker(rep);
		pid_t pid = fork();
		if (pid == 0) {
			alarm(10);
			char *argv[] = { (char *)self, "check", NULL };
			execve(self, argv, environ);
			_exit(127);
		}
		if (pid < 0)
			fail("fork: %s", strerror(errno));
		else
			wait_child(pid, "fork+exec", rep);
	}
	stop_workers();
	return 0;
}

static int mode_vfork(unsigned reps)
{
	start_workers();
	char *argv[] = { "/bin/true", NULL };
	for (unsigned rep = 0; rep < reps; rep++) {
		poke_worker(rep);
		pid_t pid = vfork();
		if (pid == 0) {
			execve("/bin/true", argv, environ);
			_exit(127);
		}
		if (pid < 0)
			fail("vfork: %s", strerror(errno));
		else
			wait_child(pid, "vfork+exec", rep);
	}
	stop_workers();
	exact_tasks("parent after the vforks");
	return 0;
}

static int mode_spawn(unsigned reps)
{
	start_workers();
	char *argv[] = { "/bin/true", NULL };
	for (unsigned rep = 0; rep < reps; rep++) {
		poke_worker(rep);
		pid_t pid;
		int rc = posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ);
		if (rc)
			fail("posix_spawn: %s", strerror(rc));
		else
			wait_child(pid, "posix_spawn", rep);
	}
	stop_workers();
	exact_tasks("parent after the spawns");
	return 0;
}

/* The exec'd child: a fresh process with the engine loaded. */
static int mode_check(void)
{
	alarm(10);
	CHECK(ml_loaded(), "exec'd child: engine not loaded");
	ml_status st = ml_start();
	CHECK(st == ML_OK, "exec'd child: ml_start returned %d (fresh process)", st);
	struct ml_stats s;
	CHECK(ml_stats(&s) == ML_OK, "exec'd child: ml_stats");
	/* A fresh process may hold no heap at all yet. */
	CHECK(s.live_bytes >= 0 && s.live_bytes < (int64_t)(64 * MiB),
	      "exec'd child: live_bytes %lld", (long long)s.live_bytes);
	CHECK(s.thread_allocated < MiB && s.process_allocated < 4 * MiB,
	      "exec'd child: thread_allocated %llu, process_allocated %llu",
	      (unsigned long long)s.thread_allocated,
	      (unsigned long long)s.process_allocated);
	exact_tasks("exec'd child");
	heap_follows("exec'd child");
	return atomic_load(&failures) ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s fork|forkexec|vfork|spawn|check [REPS]\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	unsigned reps = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 0;
	if (!strcmp(mode, "check"))
		return mode_check();
	alarm(120); /* the parent's own watchdog */
	CHECK(ml_loaded(), "engine not loaded");
	if (!strcmp(mode, "fork"))
		mode_fork(reps ? reps : 150);
	else if (!strcmp(mode, "forkexec"))
		mode_forkexec(reps ? reps : 30);
	else if (!strcmp(mode, "vfork"))
		mode_vfork(reps ? reps : 150);
	else if (!strcmp(mode, "spawn"))
		mode_spawn(reps ? reps : 150);
	else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	printf("%s: %u failures, %llu worker tasks\n", mode, (unsigned)atomic_load(&failures),
	       (unsigned long long)atomic_load(&tasks_done));
	return atomic_load(&failures) ? 1 : 0;
}
