/* hostile_signal MODE [N]: signal handlers against the allocator (issue 6).
 * SIGALRM belongs to the program here, so there is no alarm() watchdog: the
 * test that runs this kills it after a timeout.
 *
 *   token          main allocates in a loop inside ml_limit_with_token while
 *                  an itimer fires SIGALRM every 200 us; the handler, which
 *                  interrupts malloc itself, sets the current token. Every
 *                  task must end with ML_TOKEN_LIMIT and its loop must have
 *                  seen NULL with ENOMEM. N tasks (default 300).
 *   token-threads  the same in 2 threads at once, each in a token task
 *                  nested in an allocation task with a huge limit; the
 *                  handler (in whichever thread the signal lands) sets both
 *                  threads' tokens through an array of atomic pointers. The
 *                  inner task must report ML_TOKEN_LIMIT, the outer ML_OK.
 *   handler-malloc a handler that (wrongly) mallocs and frees, up to
 *                  256 KiB, runs every 100 us for N seconds (default 2)
 *                  while main loops through the engine's own paths: 2 GiB
 *                  mallocs that MEMLIMITS_GLOBAL_MEMORY (required, < 2 GiB)
 *                  refuses in the slow path, token and global-memory tasks
 *                  (which cannot fire) entered and left, polls, masks; a second thread (SIGALRM blocked) mallocs and frees
 *                  all along. Nothing may deadlock; the handler's allocations
 *                  succeed.
 *   handler-malloc-stats  the same, with main also calling ml_stats() in
 *                  its loop.
 *   handler-counts main enters and leaves empty allocation tasks (1 TiB
 *                  limit) in a loop for N seconds while the handler
 *                  allocates: each must return ML_OK with allocated_bytes at
 *                  most what the handler allocated meanwhile.
 *                  (Why main does not malloc real blocks in handler-malloc: a handler that
 *                  interrupts the allocator while it holds one of its own
 *                  mutexes deadlocks or corrupts plain jemalloc and glibc's
 *                  malloc alike; that is not the engine's doing.)
 * Failures print "FAIL ..." on stderr; exit 0 iff none. The last line on
 * stdout is a summary. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "shim/memlimits.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

#include "hostile.h"

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

static void timer_every(long usec)
{
	struct itimerval it = { { 0, usec }, { 0, usec } };
	if (setitimer(ITIMER_REAL, &it, NULL))
		fail("setitimer: %s", strerror(errno));
}

static void on_sigalrm(void (*h)(int))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = h;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
}

static void block_sigalrm(bool block)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGALRM);
	pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &s, NULL);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- token: the handler sets the token of the running task --------------- */

#define MAX_ITERS 100000000u
static ml_token *_Atomic cur_tok[2];
static atomic_uint sets;

static void set_tokens(int sig)
{
	(void)sig;
	int saved = errno;
	for (int i = 0; i < 2; i++) {
		ml_token *t = atomic_load(&cur_tok[i]);
		if (t) {
			ml_token_set(t);
			atomic_fetch_add(&sets, 1);
		}
	}
	errno = saved;
}

struct loop {
	uint64_t seed;
	unsigned iters;
	bool got_null;
	int err;
	bool interrupted;
};

/* Allocates until an allocation fails; sizes mostly small, some large. */
static void *loop_task(void *arg)
{
	struct loop *l = arg;
	for (l->iters = 0; l->iters < MAX_ITERS; l->iters++) {
		uint64_t r = rnd(&l->seed);
		size_t n = 1 + (r % 64 == 0 ? r % (256 * KiB) : r % (2 * KiB));
		void *p = xmalloc(n);
		if (!p) {
			l->got_null = true;
			l->err = errno;
			l->interrupted = ml_is_interrupted();
			break;
		}
		memset(p, 7, n < 64 ? n : 64);
		free(p);
	}
	return NULL;
}

/* Tokens that a handler in another thread may still hold are not destroyed
 * before the end (token-threads). */
#define MAX_PARKED 4096
static ml_token *parked[2][MAX_PARKED];
static unsigned nparked[2];
static bool park_tokens;

/* One token task in slot i; returns its status. */
static ml_status token_round(int i, uint64_t seed, struct loop *l)
{
	block_sigalrm(true);
	ml_token *t = ml_token_create();
	atomic_store(&cur_tok[i], t);
	block_sigalrm(false);
	if (!t) {
		fail("ml_token_create");
		return ML_INVALID;
	}
	*l = (struct loop){ .seed = seed };
	ml_status st = ml_limit_with_token(t, loop_task, l, NULL);
	block_sigalrm(true);
	atomic_store(&cur_tok[i], NULL);
	block_sigalrm(false);
	/* Single-threaded, a handler that loaded t ran to its end in this
	 * thread before the store above. */
	if (!park_tokens)
		ml_token_destroy(t);
	else if (nparked[i] < MAX_PARKED)
		parked[i][nparked[i]++] = t;
	return st;
}

static int mode_token(unsigned n)
{
	on_sigalrm(set_tokens);
	timer_every(200);
	unsigned ok = 0;
	for (unsigned i = 0; i < n; i++) {
		struct loop l;
		ml_status st = token_round(0, 0x853c49e6748fea9bull + i, &l);
		CHECK(st == ML_TOKEN_LIMIT, "round %u: status %d after %u iterations", i, st,
		      l.iters);
		CHECK(l.got_null && l.err == ENOMEM && l.interrupted,
		      "round %u: got_null %d, errno %d, interrupted %d", i, l.got_null, l.err,
		      l.interrupted);
		ok += st == ML_TOKEN_LIMIT;
		/* Outside the task, allocations work again. */
		void *p = xmalloc(4 * KiB);
		CHECK(p != NULL && !ml_is_interrupted(), "round %u: malloc after the task", i);
		free(p);
	}
	timer_every(0);
	printf("token: %u of %u tasks interrupted by a token set in a handler (%u sets), "
	       "%d failures\n",
	       ok, n, atomic_load(&sets), atomic_load(&failures));
	return 0;
}

struct tt {
	int slot;
	unsigned n, ok;
	pthread_t tid;
};

struct tt_round {
	int slot;
	uint64_t seed;
	struct loop l;
	ml_status inner;
};

static void *tt_outer(void *arg)
{
	struct tt_round *r = arg;
	r->inner = token_round(r->slot, r->seed, &r->l);
	return NULL;
}

static void *tt_thread(void *arg)
{
	struct tt *tt = arg;
	for (unsigned i = 0; i < tt->n; i++) {
		struct tt_round r = { .slot = tt->slot, .seed = 0x9e3779b97f4a7c15ull * (i + 1) + (uint64_t)tt->slot };
		uint64_t used = 0;
		ml_status outer = ml_limit_allocations(ML_MAX_ALLOCATION_LIMIT, tt_outer, &r,
						       NULL, &used);
		CHECK(r.inner == ML_TOKEN_LIMIT && outer == ML_OK,
		      "thread %d round %u: inner %d (want %d), outer %d (want 0), %u iterations",
		      tt->slot, i, r.inner, ML_TOKEN_LIMIT, outer, r.l.iters);
		CHECK(r.l.got_null && r.l.err == ENOMEM,
		      "thread %d round %u: got_null %d, errno %d", tt->slot, i, r.l.got_null,
		      r.l.err);
		tt->ok += r.inner == ML_TOKEN_LIMIT && outer == ML_OK;
	}
	return NULL;
}

static int mode_token_threads(unsigned n)
{
	park_tokens = true;
	on_sigalrm(set_tokens);
	timer_every(200);
	struct tt tt[2] = { { .slot = 0, .n = n }, { .slot = 1, .n = n } };
	for (int i = 0; i < 2; i++)
		pthread_create(&tt[i].tid, NULL, tt_thread, &tt[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(tt[i].tid, NULL);
	timer_every(0);
	block_sigalrm(true);
	for (int i = 0; i < 2; i++)
		for (unsigned k = 0; k < nparked[i]; k++)
			ml_token_destroy(parked[i][k]);
	printf("token-threads: %u + %u of %u tasks interrupted (%u sets), %d failures\n",
	       tt[0].ok, tt[1].ok, n, atomic_load(&sets), atomic_load(&failures));
	return 0;
}

/* ---- handler-malloc: a handler that allocates ---------------------------- */

static atomic_uint handler_runs, handler_nulls;
static uint64_t handler_seed = 0x123456789abcdefull; /* only the handler */

/* Three blocks, a quarter of them 64..256 KiB: more than a thread's grant
 * under a global limit, so the handler takes the engine's slow path. */
static void malloc_handler(int sig)
{
	(void)sig;
	int saved = errno;
	void *p[3];
	for (int i = 0; i < 3; i++) {
		uint64_t r = rnd(&handler_seed);
		size_t n = r % 4 == 0 ? 64 * KiB + r % (192 * KiB) : 1 + r % 512;
		p[i] = xmalloc(n);
		if (!p[i])
			atomic_fetch_add(&handler_nulls, 1);
		else
			*(volatile char *)p[i] = 1;
	}
	for (int i = 0; i < 3; i++)
		free(p[i]);
	atomic_fetch_add(&handler_runs, 1);
	errno = saved;
}

/* A second thread allocating all along, with SIGALRM blocked: it contends
 * for the engine's registry while main and the handler use it. */
static atomic_int hm_stop;
static void *hm_worker(void *arg)
{
	uint64_t seed = (uint64_t)(uintptr_t)arg;
	unsigned long n = 0;
	void *held[16] = { 0 };
	while (!atomic_load(&hm_stop)) {
		uint64_t r = rnd(&seed);
		void *p = xmalloc(1 + (r % 16 == 0 ? r % (256 * KiB) : r % 1024));
		if (p)
			*(volatile char *)p = 1;
		free(held[n % 16]);
		held[n % 16] = p;
		n++;
	}
	for (int i = 0; i < 16; i++)
		free(held[i]);
	return (void *)n;
}

static void *noalloc_task(void *arg)
{
	(void)arg;
	ml_poll();
	return NULL;
}

static volatile size_t v_two_gib = (size_t)2 << 30;

/* main never enters jemalloc itself (a handler that interrupts jemalloc
 * while it holds one of its mutexes deadlocks in jemalloc, as it would in
 * glibc's malloc: not the engine's doing). Its allocations are 2 GiB
 * requests that the environment's global limit refuses in the engine's slow
 * path, which takes the engine's lock; around them it enters and leaves
 * tasks, polls, masks, and (stats) reads ml_stats. */
static int mode_handler_malloc(unsigned seconds, bool stats)
{
	int64_t lim = ml_global_memory_limit();
	if (lim < 0 || lim >= (int64_t)v_two_gib) {
		fail("handler-malloc needs MEMLIMITS_GLOBAL_MEMORY below 2 GiB (have %lld)",
		     (long long)lim);
		return 1;
	}
	on_sigalrm(malloc_handler);
	pthread_t th;
	/* The worker inherits the blocked SIGALRM from its very start (the
	 * engine registers a new thread before its start function runs, inside
	 * jemalloc's own thread set-up). */
	block_sigalrm(true);
	pthread_create(&th, NULL, hm_worker, (void *)(uintptr_t)0xdeadbeefcafeull);
	block_sigalrm(false);
	timer_every(100);
	ml_token *tok = ml_token_create(); /* never set */
	double end = now() + seconds;
	unsigned long iters = 0, admitted = 0;
	ml_status bad = ML_OK;
	struct ml_stats s;
	while (now() < end) {
		for (int k = 0; k < 256; k++, iters++) {
			void *p = xmalloc(v_two_gib);
			if (p) {
				admitted++;
				free(p);
			}
			ml_status a = ml_limit_with_token(tok, noalloc_task, NULL, NULL);
			ml_status b = ml_limit_global_memory(noalloc_task, NULL, NULL);
			if (a != ML_OK || b != ML_OK)
				bad = a != ML_OK ? a : b;
			ml_mask();
			ml_unmask();
			if (stats)
				ml_stats(&s);
		}
	}
	timer_every(0);
	atomic_store(&hm_stop, 1);
	void *wn;
	pthread_join(th, &wn);
	ml_token_destroy(tok);
	CHECK(admitted == 0, "%lu allocations of 2 GiB admitted under a %lld-byte limit",
	      admitted, (long long)lim);
	CHECK(bad == ML_OK, "a task without allocations returned %d", bad);
	CHECK(atomic_load(&handler_runs) > 0, "the handler never ran");
	CHECK(atomic_load(&handler_nulls) == 0, "%u handler allocations failed",
	      atomic_load(&handler_nulls));
	printf("handler-malloc%s: %u handler runs, %lu main iterations, %lu worker "
	       "iterations, %d failures\n",
	       stats ? "-stats" : "", atomic_load(&handler_runs), iters,
	       (unsigned long)(uintptr_t)wn, atomic_load(&failures));
	return 0;
}

/* ---- handler-counts: a handler's allocations inside a task ---------------- */

static uint64_t handler_bytes; /* main's handler only: single-threaded mode */

static void counting_handler(int sig)
{
	(void)sig;
	int saved = errno;
	for (int i = 0; i < 3; i++) {
		uint64_t r = rnd(&handler_seed);
		size_t n = r % 4 == 0 ? 64 * KiB + r % (192 * KiB) : 1 + r % 512;
		void *p = xmalloc(n);
		if (p) {
			handler_bytes += n;
			*(volatile char *)p = 1;
		} else
			atomic_fetch_add(&handler_nulls, 1);
		free(p);
	}
	atomic_fetch_add(&handler_runs, 1);
	errno = saved;
}

/* Empty allocation tasks with a 1 TiB limit, entered and left over and over
 * while the handler allocates: the handler's allocations are the task's (it
 * runs in this thread), so every task is ML_OK and counts at most what the
 * handler allocated meanwhile, never a wrapped-around "negative" count. */
static int mode_handler_counts(unsigned seconds)
{
	on_sigalrm(counting_handler);
	timer_every(100);
	double end = now() + seconds;
	unsigned long tasks = 0, wrong_status = 0, wrong_count = 0;
	while (now() < end) {
		for (int k = 0; k < 1000; k++, tasks++) {
			uint64_t before = *(volatile uint64_t *)&handler_bytes, used = 0;
			ml_status st = ml_limit_allocations((uint64_t)1 << 40, noalloc_task, NULL,
							    NULL, &used);
			uint64_t during = *(volatile uint64_t *)&handler_bytes - before;
			if (st != ML_OK && wrong_status++ < 5)
				fail("task %lu: status %d under a 1 TiB limit (allocated_bytes %llu)",
				     tasks, st, (unsigned long long)used);
			if (used > during && wrong_count++ < 5)
				fail("task %lu: allocated_bytes %llu, the handler allocated %llu "
				     "meanwhile", tasks, (unsigned long long)used,
				     (unsigned long long)during);
		}
	}
	timer_every(0);
	CHECK(atomic_load(&handler_runs) > 0, "the handler never ran");
	CHECK(atomic_load(&handler_nulls) == 0, "%u handler allocations failed",
	      atomic_load(&handler_nulls));
	printf("handler-counts: %lu tasks, %lu wrong statuses, %lu wrong counts, %u handler "
	       "runs, %d failures\n", tasks, wrong_status, wrong_count,
	       atomic_load(&handler_runs), atomic_load(&failures));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s token|token-threads|handler-malloc|"
				"handler-malloc-stats|handler-counts [N]\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	unsigned n = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 0;
	CHECK(ml_loaded(), "engine not loaded");
	ml_status st = ml_start();
	CHECK(st == ML_OK || st == ML_INVALID, "ml_start: %d", st);
	if (!strcmp(mode, "token"))
		mode_token(n ? n : 300);
	else if (!strcmp(mode, "token-threads"))
		mode_token_threads(n ? n : 150);
	else if (!strcmp(mode, "handler-malloc"))
		mode_handler_malloc(n ? n : 2, false);
	else if (!strcmp(mode, "handler-malloc-stats"))
		mode_handler_malloc(n ? n : 2, true);
	else if (!strcmp(mode, "handler-counts"))
		mode_handler_counts(n ? n : 2);
	else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	return atomic_load(&failures) ? 1 : 0;
}
