/* stress [SECONDS] [THREADS]: a long randomized run of the engine under
 * LD_PRELOAD=build/libmemlimits.so (scripts/stress builds and runs it).
 *
 * THREADS workers (default 8) run random nested limits of all three kinds,
 * as tasks or as scopes (ml_enter_*), up to 4 deep, each doing random work:
 * malloc/calloc/realloc/aligned_alloc of random sizes, frees, masked
 * sections, polls, blocks handed to other threads through a shared queue
 * (freed there). Allocation limits are random (4 KiB .. 8 MiB); main moves
 * the global memory limit to the current heap + 4..64 MiB every few
 * milliseconds; a SIGALRM itimer handler sets the token of a random level of
 * a random thread (through an array of atomic token pointers). Limits fire,
 * tasks clean up and return, others start: firing and recovering.
 *
 * Invariants checked as it goes (violations are printed on stderr, the first
 * 20 of each kind):
 *  - a level's status is ML_OK or the kind of a limit of that level or of an
 *    enclosing level; ML_TOKEN_LIMIT only if a token of the thread is set;
 *  - an allocation that returned NULL in a level's own code makes that level
 *    report a limit, and ml_is_interrupted() is true right after;
 *  - a level that reports a limit saw a NULL, a failed poll, or a nested
 *    level that reported a limit;
 *  - a nested level cut short by an enclosing limit makes that enclosing
 *    level report a limit too;
 *  - allocated_bytes of every level is exactly what the program requested in
 *    it (malloc/calloc sizes, realloc growth over the usable size);
 *  - an allocation limit: allocated_bytes <= limit + bytes allocated masked;
 *  - masked allocations never fail.
 * At the end every thread has freed everything: ml_stats().live_bytes must be
 * within 1 MiB of its value before the run, and process_allocated must have
 * grown by exactly the sum of the bytes the threads requested (plus what main
 * allocated, which is nothing). Prints a summary; exit 0 iff every invariant
 * held. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "shim/memlimits.h"

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define MAXT 64
#define MAXDEPTH 4
#define HOLD 64
#define QCAP 4096

/* ---- Reporting without allocating ---------------------------------------- */

static atomic_uint violations;
static atomic_uint vkind_count[16];

static void say(const char *fmt, ...)
{
	char b[600];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b, sizeof b, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof b - 1)
		n = (int)sizeof b - 1;
	if (write(2, b, (size_t)n) < 0)
		_exit(3);
}

enum vkind { V_STATUS, V_NULL_OK, V_NOT_INTERRUPTED, V_NO_CAUSE, V_OUTER_OK, V_COUNT,
	     V_LIMIT, V_MASKED_NULL, V_TOKEN_UNSET, V_API, V_NKINDS };
static const char *const vname[] = {
	"unexpected status", "NULL but status OK", "NULL but not interrupted",
	"limit reported without cause", "enclosing level not cut short",
	"allocated_bytes inexact", "allocation limit exceeded", "masked allocation failed",
	"token status with no token set", "API error",
};

static void violation(enum vkind k, const char *fmt, ...)
{
	atomic_fetch_add(&violations, 1);
	if (atomic_fetch_add(&vkind_count[k], 1) >= 20)
		return;
	char b[500];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b, sizeof b, fmt, ap);
	va_end(ap);
	say("stress: VIOLATION (%s): %s\n", vname[k], b);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static __attribute__((noinline)) void *xmalloc(size_t n)
{
	void *p = malloc(n);
	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}

/* ---- Shared state ---------------------------------------------------------- */

static atomic_int stop;
static int nthreads = 8;

/* Token slots: the handler sets slot[t][d] if not NULL. An owner that clears
 * its slot waits until no handler is between loading a slot and using it. */
static ml_token *_Atomic slot[MAXT][MAXDEPTH];
static atomic_int handlers_active;
static atomic_uint_fast64_t handler_calls, handler_sets;

static void handler(int sig)
{
	(void)sig;
	int saved = errno;
	atomic_fetch_add(&handlers_active, 1);
	uint64_t h = atomic_fetch_add(&handler_calls, 1) * 0x9e3779b97f4a7c15ull;
	h ^= h >> 29;
	int t = (int)(h % (uint64_t)nthreads), d = (int)((h >> 16) % MAXDEPTH);
	ml_token *tok = atomic_load(&slot[t][d]);
	if (tok) {
		ml_token_set(tok);
		atomic_fetch_add(&handler_sets, 1);
	}
	atomic_fetch_sub(&handlers_active, 1);
	errno = saved;
}

static void clear_slot(int t, int d)
{
	atomic_store(&slot[t][d], NULL);
	while (atomic_load(&handlers_active))
		;
}

/* Blocks handed between threads. */
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static void *queue[QCAP];
static unsigned qhead, qtail;
static atomic_uint_fast64_t q_pushed, q_popped;

static bool q_push(void *p)
{
	pthread_mutex_lock(&qlock);
	bool ok = qtail - qhead < QCAP;
	if (ok)
		queue[qtail++ % QCAP] = p;
	pthread_mutex_unlock(&qlock);
	if (ok)
		atomic_fetch_add(&q_pushed, 1);
	return ok;
}

static void *q_pop(void)
{
	void *p = NULL;
	pthread_mutex_lock(&qlock);
	if (qtail != qhead)
		p = queue[qhead++ % QCAP];
	pthread_mutex_unlock(&qlock);
	if (p)
		atomic_fetch_add(&q_popped, 1);
	return p;
}

/* ---- Workers ------------------------------------------------------------- */

enum kind { K_ALLOC = 0, K_GLOBAL, K_TOKEN };
static const ml_status kind_status[] = { ML_ALLOCATION_LIMIT, ML_GLOBAL_MEMORY_LIMIT,
					 ML_TOKEN_LIMIT };
static const char *const kind_name[] = { "allocations", "global", "token" };

struct level {
	enum kind kind;
	bool scope_api;
	uint64_t limit;       /* K_ALLOC */
	ml_token *tok;        /* K_TOKEN */
	/* accounting, including nested levels */
	uint64_t requested;   /* bytes the engine should count */
	uint64_t masked;      /* of which allocated masked */
	/* own code */
	bool own_null, poll_fired;
	bool masked_any;      /* a masked allocation here or nested: a limit it
			       * crossed is pending, and may be reported with no
			       * NULL seen */
	bool nested_fired;    /* a nested level reported a limit */
	bool must_fire;       /* a nested level was cut short by this or an outer level */
	void *held[HOLD];
	unsigned nheld;
};

struct worker {
	int id;
	pthread_t tid;
	uint64_t seed;
	struct level lv[MAXDEPTH];
	int depth;
	/* totals */
	uint64_t requested;   /* everything this thread allocated, for the end check */
	uint64_t tasks[3], fired[3], nulls, masked_allocs, polls;
	struct ml_stats start, end;
};

static struct worker W[MAXT];

static void note_alloc(struct worker *w, uint64_t n, bool masked)
{
	w->requested += n;
	for (int i = 0; i < w->depth; i++) {
		w->lv[i].requested += n;
		if (masked) {
			w->lv[i].masked += n;
			w->lv[i].masked_any = true;
		}
	}
}

static void hold(struct worker *w, struct level *l, void *p)
{
	if (l->nheld == HOLD) {
		unsigned k = (unsigned)(rnd(&w->seed) % HOLD);
		free(l->held[k]);
		l->held[k] = p;
	} else
		l->held[l->nheld++] = p;
}

static size_t rand_size(struct worker *w)
{
	uint64_t r = rnd(&w->seed);
	switch (r % 16) {
	case 0:
		return (size_t)(r >> 8) % (1 * MiB) + 1;
	case 1: case 2: case 3:
		return (size_t)(r >> 8) % (64 * KiB) + 1;
	default:
		return (size_t)(r >> 8) % (2 * KiB) + 1;
	}
}

/* One allocation of a random form; returns false if it failed. */
static bool one_alloc(struct worker *w, struct level *l, bool masked)
{
	size_t n = rand_size(w);
	uint64_t r = rnd(&w->seed);
	void *p;
	uint64_t counted = n;
	if (r % 8 == 0) {
		p = calloc(1 + n / 64, 64);
		counted = (1 + n / 64) * 64;
	} else if (r % 8 == 1) {
		p = aligned_alloc(64, n);
	} else if (r % 8 == 2 && l->nheld) {
		unsigned k = (unsigned)(r >> 8) % l->nheld;
		size_t have = malloc_usable_size(l->held[k]);
		void *q = realloc(l->held[k], n);
		counted = n > have ? n - have : 0;
		if (q) {
			l->held[k] = q;
			note_alloc(w, counted, masked);
			return true;
		}
		p = NULL;
	} else
		p = xmalloc(n);
	if (!p)
		return false;
	memset(p, 0x33, n < 128 ? n : 128);
	note_alloc(w, counted, masked);
	if (r % 16 == 5 && q_push(p))
		return true;
	hold(w, l, p);
	return true;
}

static void run_level(struct worker *w, int depth);

static void *task_body(void *arg)
{
	struct worker *w = arg;
	int d = w->depth - 1;
	struct level *l = &w->lv[d];
	unsigned ops = 50 + (unsigned)(rnd(&w->seed) % 2000);
	for (unsigned i = 0; i < ops && !atomic_load(&stop); i++) {
		uint64_t r = rnd(&w->seed) % 100;
		if (r < 60) {
			if (!one_alloc(w, l, false)) {
				l->own_null = true;
				w->nulls++;
				if (!ml_is_interrupted())
					violation(V_NOT_INTERRUPTED,
						  "thread %d depth %d (%s): NULL, errno %d", w->id,
						  d, kind_name[l->kind], errno);
				break; /* interrupted: clean up and return */
			}
		} else if (r < 80) {
			if (l->nheld) {
				unsigned k = (unsigned)(rnd(&w->seed) % l->nheld);
				free(l->held[k]);
				l->held[k] = l->held[--l->nheld];
			}
		} else if (r < 88) {
			free(q_pop());
		} else if (r < 92) {
			ml_mask();
			for (int k = 0; k < 3; k++) {
				if (!one_alloc(w, l, true))
					violation(V_MASKED_NULL, "thread %d depth %d (%s)",
						  w->id, d, kind_name[l->kind]);
				w->masked_allocs++;
			}
			ml_unmask();
		} else if (r < 94) {
			w->polls++;
			if (ml_poll() != ML_OK) {
				l->poll_fired = true;
				break;
			}
		} else if (w->depth < MAXDEPTH) {
			run_level(w, w->depth);
			if (l->must_fire)
				break; /* cut short by this or an outer limit: stop */
		}
	}
	return NULL;
}

/* Enters a level at `depth` (== w->depth), runs task_body, leaves, checks. */
static void run_level(struct worker *w, int depth)
{
	struct level *l = &w->lv[depth];
	memset(l, 0, sizeof *l);
	uint64_t r = rnd(&w->seed);
	l->kind = (enum kind)(r % 3);
	l->scope_api = (r >> 8) % 2;
	if (l->kind == K_ALLOC) {
		/* log-uniform 4 KiB .. 8 MiB */
		int sh = 12 + (int)((r >> 16) % 12);
		l->limit = ((uint64_t)1 << sh) + (r >> 32) % ((uint64_t)1 << sh);
	} else if (l->kind == K_TOKEN) {
		l->tok = ml_token_create();
		if (!l->tok) {
			violation(V_API, "ml_token_create failed");
			return;
		}
		atomic_store(&slot[w->id][depth], l->tok);
	}
	w->depth = depth + 1;
	w->tasks[l->kind]++;
	ml_status st;
	uint64_t used = 0;
	bool have_used = true;
	if (l->scope_api) {
		ml_scope sc;
		st = l->kind == K_ALLOC ? ml_enter_allocations(&sc, l->limit)
		   : l->kind == K_GLOBAL ? ml_enter_global_memory(&sc)
					 : ml_enter_token(&sc, l->tok);
		if (st != ML_OK) {
			violation(V_API, "ml_enter (%s) returned %d", kind_name[l->kind], st);
			w->depth = depth;
			return;
		}
		task_body(w);
		st = ml_leave(&sc, &used);
	} else if (l->kind == K_ALLOC) {
		st = ml_limit_allocations(l->limit, task_body, w, NULL, &used);
	} else if (l->kind == K_GLOBAL) {
		st = ml_limit_global_memory(task_body, w, NULL);
		have_used = false;
	} else {
		st = ml_limit_with_token(l->tok, task_body, w, NULL);
		have_used = false;
	}
	w->depth = depth;
	/* Clean up: masked, as release code would be. */
	ml_mask();
	for (unsigned k = 0; k < l->nheld; k++)
		free(l->held[k]);
	ml_unmask();
	l->nheld = 0;
	bool tok_set = false;
	if (l->kind == K_TOKEN) {
		tok_set = ml_token_is_set(l->tok);
		clear_slot(w->id, depth);
	}
	bool any_tok_set = tok_set;
	for (int i = 0; i < depth; i++)
		if (w->lv[i].kind == K_TOKEN && ml_token_is_set(w->lv[i].tok))
			any_tok_set = true;

	/* Status among the kinds of this level and the enclosing ones. */
	bool allowed = st == ML_OK || st == kind_status[l->kind];
	for (int i = 0; i < depth; i++)
		allowed |= st == kind_status[w->lv[i].kind];
	if (!allowed)
		violation(V_STATUS, "thread %d depth %d (%s): status %d", w->id, depth,
			  kind_name[l->kind], st);
	if (st == ML_TOKEN_LIMIT && !any_tok_set)
		violation(V_TOKEN_UNSET, "thread %d depth %d", w->id, depth);
	if (l->own_null && st == ML_OK)
		violation(V_NULL_OK, "thread %d depth %d (%s)", w->id, depth, kind_name[l->kind]);
	bool pending = false;
	for (int i = 0; i <= depth; i++)
		pending |= w->lv[i].masked_any;
	if (st != ML_OK && !l->own_null && !l->poll_fired && !l->nested_fired &&
	    !l->must_fire && !pending)
		violation(V_NO_CAUSE, "thread %d depth %d (%s): status %d", w->id, depth,
			  kind_name[l->kind], st);
	if (l->must_fire && st == ML_OK)
		violation(V_OUTER_OK, "thread %d depth %d (%s)", w->id, depth, kind_name[l->kind]);
	if (have_used && used != l->requested)
		violation(V_COUNT, "thread %d depth %d (%s, %s): allocated_bytes %llu, "
			  "requested %llu", w->id, depth, kind_name[l->kind],
			  l->scope_api ? "scope" : "task", (unsigned long long)used,
			  (unsigned long long)l->requested);
	if (l->kind == K_ALLOC && have_used && used > l->limit + l->masked)
		violation(V_LIMIT, "thread %d depth %d: allocated %llu, limit %llu, masked %llu",
			  w->id, depth, (unsigned long long)used, (unsigned long long)l->limit,
			  (unsigned long long)l->masked);
	if (st != ML_OK)
		w->fired[l->kind]++;
	/* Tell the enclosing level. */
	if (depth > 0 && st != ML_OK) {
		struct level *o = &w->lv[depth - 1];
		o->nested_fired = true;
		bool own = st == kind_status[l->kind] && (l->kind != K_TOKEN || tok_set);
		if (!own)
			o->must_fire = true; /* cut short by an enclosing limit */
	}
	if (l->kind == K_TOKEN)
		ml_token_destroy(l->tok);
}

static pthread_barrier_t start_bar, done_bar, exit_bar;

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	ml_stats(&w->start);
	pthread_barrier_wait(&start_bar);
	while (!atomic_load(&stop))
		run_level(w, 0);
	ml_stats(&w->end);
	pthread_barrier_wait(&done_bar);
	pthread_barrier_wait(&exit_bar); /* main measures while we are alive */
	return NULL;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 120;
	if (argc > 2)
		nthreads = atoi(argv[2]);
	if (nthreads < 1 || nthreads > MAXT || seconds <= 0) {
		fprintf(stderr, "usage: %s [SECONDS] [THREADS (1..%d)]\n", argv[0], MAXT);
		return 2;
	}
	if (!ml_loaded()) {
		fprintf(stderr, "stress: libmemlimits.so is not preloaded\n");
		return 2;
	}
	ml_status st = ml_start();
	if (st != ML_OK && st != ML_INVALID) {
		fprintf(stderr, "stress: ml_start: %d\n", st);
		return 2;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	pthread_barrier_init(&start_bar, NULL, (unsigned)nthreads + 1);
	pthread_barrier_init(&done_bar, NULL, (unsigned)nthreads + 1);
	pthread_barrier_init(&exit_bar, NULL, (unsigned)nthreads + 1);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	for (int i = 0; i < nthreads; i++) {
		W[i].id = i;
		W[i].seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) ^ 0xd1b54a32d192ed03ull;
		if (pthread_create(&W[i].tid, NULL, worker_main, &W[i])) {
			fprintf(stderr, "stress: pthread_create failed\n");
			return 2;
		}
	}
	/* Every thread exists and has allocated nothing of its own yet. */
	struct ml_stats s0, m0, s1, m1;
	ml_stats(&m0);
	s0 = m0;
	pthread_barrier_wait(&start_bar);

	struct itimerval it = { { 0, 500 }, { 0, 500 } };
	setitimer(ITIMER_REAL, &it, NULL);
	uint64_t seed = 0x5851f42d4c957f2dull, moves = 0;
	double t0 = now(), next_report = t0 + 10;
	int64_t peak_seen = 0;
	while (now() - t0 < seconds) {
		struct ml_stats s;
		ml_stats(&s);
		if (s.live_bytes > peak_seen)
			peak_seen = s.live_bytes;
		ml_set_global_memory_limit(s.live_bytes +
					   (int64_t)(4 * MiB + rnd(&seed) % (60 * MiB)));
		moves++;
		usleep(2000 + (useconds_t)(rnd(&seed) % 8000));
		if (now() >= next_report) {
			say("stress: %.0f s, live %.1f MiB, %llu token sets, %u violations\n",
			    now() - t0, (double)s.live_bytes / (double)MiB,
			    (unsigned long long)atomic_load(&handler_sets),
			    atomic_load(&violations));
			next_report += 10;
		}
	}
	atomic_store(&stop, 1);
	pthread_barrier_wait(&done_bar);
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	ml_set_global_memory_limit(-1);
	void *p;
	while ((p = q_pop()))
		free(p);
	ml_stats(&s1);
	m1 = s1;
	pthread_barrier_wait(&exit_bar);
	for (int i = 0; i < nthreads; i++)
		pthread_join(W[i].tid, NULL);

	/* Totals and the end-of-run checks. */
	uint64_t req = 0, tasks[3] = { 0 }, fired[3] = { 0 }, nulls = 0, masked = 0,
		 polls = 0;
	bool threads_exact = true;
	for (int i = 0; i < nthreads; i++) {
		struct worker *w = &W[i];
		req += w->requested;
		uint64_t counted = w->end.thread_allocated - w->start.thread_allocated;
		if (counted != w->requested) {
			threads_exact = false;
			violation(V_COUNT, "thread %d: thread_allocated grew by %llu, it requested %llu",
				  i, (unsigned long long)counted, (unsigned long long)w->requested);
		}
		for (int k = 0; k < 3; k++) {
			tasks[k] += w->tasks[k];
			fired[k] += w->fired[k];
		}
		nulls += w->nulls;
		masked += w->masked_allocs;
		polls += w->polls;
	}
	uint64_t main_alloc = m1.thread_allocated - m0.thread_allocated;
	uint64_t proc = s1.process_allocated - s0.process_allocated;
	int64_t drift = s1.live_bytes - s0.live_bytes;
	bool proc_exact = proc == req + main_alloc;
	bool live_ok = drift <= (int64_t)MiB && drift >= -(int64_t)MiB;
	if (!proc_exact)
		violation(V_COUNT, "process_allocated grew by %llu; threads requested %llu, main %llu",
			  (unsigned long long)proc, (unsigned long long)req,
			  (unsigned long long)main_alloc);

	printf("stress: %.0f s, %d threads\n", seconds, nthreads);
	for (int k = 0; k < 3; k++)
		printf("  %-12s levels %10llu, limit reported %9llu\n", kind_name[k],
		       (unsigned long long)tasks[k], (unsigned long long)fired[k]);
	printf("  allocations refused %llu, masked allocations %llu, polls %llu\n",
	       (unsigned long long)nulls, (unsigned long long)masked, (unsigned long long)polls);
	printf("  blocks freed by another thread %llu (pushed %llu)\n",
	       (unsigned long long)atomic_load(&q_popped), (unsigned long long)atomic_load(&q_pushed));
	printf("  timer signals %llu, tokens set from the handler %llu, global limit moves %llu\n",
	       (unsigned long long)atomic_load(&handler_calls),
	       (unsigned long long)atomic_load(&handler_sets), (unsigned long long)moves);
	printf("  peak live heap seen %.1f MiB, engine peak %.1f MiB\n",
	       (double)peak_seen / (double)MiB, (double)s1.peak_bytes / (double)MiB);
	printf("  requested by the threads %llu bytes; each thread's thread_allocated %s\n",
	       (unsigned long long)req, threads_exact ? "exact" : "INEXACT");
	printf("  process_allocated grew by %llu (threads %llu + main %llu): %s\n",
	       (unsigned long long)proc, (unsigned long long)req, (unsigned long long)main_alloc,
	       proc_exact ? "exact" : "MISMATCH");
	printf("  live_bytes before %lld, after %lld, drift %lld: %s\n", (long long)s0.live_bytes,
	       (long long)s1.live_bytes, (long long)drift, live_ok ? "ok (<= 1 MiB)" : "LEAK");
	for (int k = 0; k < V_NKINDS; k++)
		if (atomic_load(&vkind_count[k]))
			printf("  violations: %-32s %u\n", vname[k], atomic_load(&vkind_count[k]));
	/* The engine's live heap against jemalloc's own figure, now that every
	 * worker has exited (their caches flushed) and main flushed its own.
	 * jemalloc also counts some structures of its own as allocated (28 KiB
	 * with one thread, a few hundred KiB after many): allow 1 MiB. */
	int64_t je_gap = s1.allocator_bytes - s1.live_bytes;
	bool je_ok = s1.allocator_bytes >= 0 && je_gap >= 0 && je_gap <= (int64_t)MiB;
	printf("  jemalloc's own live figure %lld, engine's %lld, difference %lld: %s\n",
	       (long long)s1.allocator_bytes, (long long)s1.live_bytes, (long long)je_gap,
	       je_ok ? "ok (<= 1 MiB)" : "MISMATCH");
	bool ok = !atomic_load(&violations) && live_ok && proc_exact && je_ok;
	printf("stress: %s\n", ok ? "all invariants held" : "FAILED");
	return ok ? 0 : 1;
}
