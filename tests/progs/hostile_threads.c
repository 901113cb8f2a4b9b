/* hostile_threads MODE VARIANT [ROUNDS]: threads that leave a task without
 * returning from it (issue 6).
 *
 *   exit    threads call pthread_exit from inside (VARIANT) 0: an allocation
 *           task, 1: three nested tasks of the three kinds, 2: a scope entered
 *           with ml_enter_allocations and never left, 3: an allocation task
 *           whose limit has fired (ROUNDS, default 200), 4: as 3, but the
 *           first pthread_exit of the process is that one (glibc then loads
 *           libgcc_s.so.1 for unwinding, from the interrupted thread; for the
 *           other variants a thread calls pthread_exit outside any task
 *           first);
 *   cancel  threads in a malloc/free loop are cancelled (deferred
 *           cancellation, at pthread_testcancel or usleep), with the loop in
 *           0: no task, 1: an allocation task, 2: a global-memory task inside
 *           a token task, 3: an allocation task whose limit fires while the
 *           loop goes on (ROUNDS, default 100).
 * VARIANT "all" takes them in turn.
 *
 * Every thread holds blocks that main frees after joining it, and has a
 * thread-specific value whose destructor allocates 4 x 64 KiB: by then the
 * thread's task is gone, so those allocations must succeed. A background
 * thread allocates under ml_limit_global_memory and reads ml_stats all along,
 * so the registry of threads is walked while threads exit.
 *
 * At the end the process must still work (tasks count exactly, in main and
 * in a new thread) and the live heap must be back within 1 MiB of where it
 * was before the first round. Failures print "FAIL ..." on stderr; exit 0
 * iff none. alarm(60) is the watchdog. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim/memlimits.h"

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define HELD 10      /* blocks a thread leaves behind */
#define HELD_SIZE (10 * KiB)
#define RING 16

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

/* ---- The thread-specific value whose destructor allocates ---------------- */

static pthread_key_t key;
static atomic_uint dtor_runs, dtor_nulls;

static void key_dtor(void *v)
{
	(void)v;
	for (int i = 0; i < 4; i++) {
		void *p = xmalloc(64 * KiB);
		if (!p) {
			atomic_fetch_add(&dtor_nulls, 1);
			continue;
		}
		memset(p, 1, 64 * KiB);
		free(p);
	}
	atomic_fetch_add(&dtor_runs, 1);
}

/* ---- Background: walks the registry while threads come and go ------------ */

static atomic_int stop;
static atomic_uint_fast64_t bg_tasks;

static void *bg_task(void *arg)
{
	uint64_t *seed = arg;
	struct ml_stats s;
	for (int i = 0; i < 64; i++) {
		void *p = xmalloc(1 + rnd(seed) % (8 * KiB));
		if (!p) {
			fail("background: NULL under a 1 GiB global limit");
			break;
		}
		ml_stats(&s);
		free(p);
	}
	return NULL;
}

static void *background(void *arg)
{
	(void)arg;
	uint64_t seed = 88172645463325252ull;
	while (!atomic_load(&stop)) {
		ml_status st = ml_limit_global_memory(bg_task, &seed, NULL);
		CHECK(st == ML_OK, "background: global task returned %d", st);
		atomic_fetch_add(&bg_tasks, 1);
	}
	return NULL;
}

/* ---- What every round's thread shares with main -------------------------- */

struct round {
	unsigned n;
	unsigned variant;
	void *held[HELD];     /* exit mode: blocks left behind */
	void *ring[RING];     /* cancel mode: the loop's blocks */
	atomic_uint iters;    /* cancel mode: loop iterations */
	unsigned nulls;       /* allocations refused inside the task */
	uint64_t seed;
};

/* exit mode: allocate HELD blocks (keep them), then leave the thread. */
static void *exit_task(void *arg)
{
	struct round *r = arg;
	pthread_setspecific(key, r);
	for (int i = 0; i < HELD; i++) {
		r->held[i] = xmalloc(HELD_SIZE);
		if (!r->held[i])
			r->nulls++;
	}
	pthread_exit((void *)42);
}

static void *nest3(void *arg)
{
	ml_status st = ml_limit_global_memory(exit_task, arg, NULL);
	fail("nest3: returned from a task that called pthread_exit (%d)", st);
	return NULL;
}
static void *nest2(void *arg)
{
	ml_token *t = ml_token_create();
	ml_status st = ml_limit_with_token(t, nest3, arg, NULL);
	fail("nest2: returned from a task that called pthread_exit (%d)", st);
	return NULL;
}

static void *exit_thread(void *arg)
{
	struct round *r = arg;
	ml_status st = ML_OK;
	switch (r->variant) {
	case 0: /* one allocation task */
		st = ml_limit_allocations(256 * KiB, exit_task, r, NULL, NULL);
		break;
	case 1: /* three nested tasks of the three kinds */
		st = ml_limit_allocations(MiB, nest2, r, NULL, NULL);
		break;
	case 2: { /* a scope never left */
		ml_scope s;
		st = ml_enter_allocations(&s, 256 * KiB);
		if (st == ML_OK)
			exit_task(r);
		break;
	}
	default: /* 3, 4: a task whose limit fired: 5 of the 10 blocks fit */
		st = ml_limit_allocations(5 * HELD_SIZE + HELD_SIZE / 2, exit_task, r,
					  NULL, NULL);
		break;
	}
	fail("round %u: thread returned from a task that called pthread_exit (%d)",
	     r->n, st);
	return NULL;
}

static void *warm_exit(void *arg)
{
	pthread_exit(arg);
}

/* cancel mode: a malloc/free loop that only stops by cancellation. */
static void *loop_task(void *arg)
{
	struct round *r = arg;
	pthread_setspecific(key, r);
	for (unsigned i = 0;; i++) {
		size_t n = 1 + rnd(&r->seed) % (16 * KiB);
		void *p = xmalloc(n);
		if (p) {
			memset(p, 3, n < 256 ? n : 256);
			free(r->ring[i % RING]);
			r->ring[i % RING] = p;
		} else
			r->nulls++;
		atomic_fetch_add(&r->iters, 1);
		if (i % 8 == 0)
			pthread_testcancel();
		if (i % 64 == 0)
			usleep(10);
	}
	return NULL;
}

static void *loop_in_global(void *arg)
{
	ml_status st = ml_limit_global_memory(loop_task, arg, NULL);
	fail("loop_in_global: returned (%d)", st);
	return NULL;
}

static void *cancel_thread(void *arg)
{
	struct round *r = arg;
	ml_token *t = NULL;
	switch (r->variant) {
	case 0:
		loop_task(r);
		break;
	case 1:
		ml_limit_allocations(ML_MAX_ALLOCATION_LIMIT, loop_task, r, NULL, NULL);
		break;
	case 2:
		t = ml_token_create();
		ml_limit_with_token(t, loop_in_global, r, NULL);
		break;
	default: /* the limit fires while the loop runs on */
		ml_limit_allocations(256 * KiB, loop_task, r, NULL, NULL);
		break;
	}
	fail("round %u: the loop returned", r->n);
	return NULL;
}

/* ---- After the rounds ---------------------------------------------------- */

struct fixed {
	unsigned n;
	size_t size;
	unsigned ok;
};
static void *fixed_task(void *arg)
{
	struct fixed *f = arg;
	for (unsigned i = 0; i < f->n; i++) {
		void *p = xmalloc(f->size);
		if (!p)
			break;
		f->ok++;
		free(p);
	}
	return NULL;
}

static void *exact_tasks(void *arg)
{
	const char *who = arg;
	struct fixed f = { .n = 10, .size = 1000 };
	uint64_t used = 0;
	ml_status st = ml_limit_allocations(MiB, fixed_task, &f, NULL, &used);
	CHECK(st == ML_OK && used == 10000 && f.ok == 10,
	      "%s: 10 x 1000 B: status %d, used %llu", who, st, (unsigned long long)used);
	f = (struct fixed){ .n = 10, .size = 1000 };
	st = ml_limit_allocations(5500, fixed_task, &f, NULL, &used);
	CHECK(st == ML_ALLOCATION_LIMIT && used == 5000 && f.ok == 5,
	      "%s: 10 x 1000 B under 5500: status %d, used %llu, ok %u", who, st,
	      (unsigned long long)used, f.ok);
	void *p = xmalloc(2 * MiB);
	CHECK(p != NULL && !ml_is_interrupted(), "%s: malloc outside tasks fails", who);
	free(p);
	return NULL;
}

int main(int argc, char **argv)
{
	alarm(60);
	if (argc < 3 || (strcmp(argv[1], "exit") && strcmp(argv[1], "cancel"))) {
		fprintf(stderr, "usage: %s exit|cancel 0|1|2|3|4|all [ROUNDS]\n", argv[0]);
		return 2;
	}
	bool cancel = !strcmp(argv[1], "cancel");
	int variant = strcmp(argv[2], "all") ? atoi(argv[2]) % 5 : -1;
	unsigned rounds = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10)
				   : cancel ? 100 : 200;
	ml_status st = ml_start();
	CHECK(st == ML_OK || st == ML_INVALID, "ml_start: %d", st);
	ml_set_global_memory_limit((int64_t)GiB);
	pthread_key_create(&key, key_dtor);
	struct round *rs = calloc(rounds, sizeof *rs);
	pthread_t bg;
	pthread_create(&bg, NULL, background, NULL);
	if (variant != 4) {
		/* Warm-up: a thread exits outside any task, so glibc's unwinder
		 * (libgcc_s.so.1, loaded on first use) is in place. */
		pthread_t th;
		pthread_create(&th, NULL, warm_exit, NULL);
		pthread_join(th, NULL);
	}
	struct ml_stats base, mid, end;
	ml_stats(&base);

	unsigned canceled = 0, exited = 0, task_nulls = 0;
	for (unsigned i = 0; i < rounds; i++) {
		struct round *r = &rs[i];
		r->n = i;
		r->variant = variant < 0 ? i % 4 : (unsigned)variant;
		r->seed = 0x2545f4914f6cdd1dull + i;
		pthread_t th;
		if (pthread_create(&th, NULL, cancel ? cancel_thread : exit_thread, r)) {
			fail("pthread_create: %s", strerror(errno));
			continue;
		}
		if (cancel) {
			/* Let it run, by its own count, then cancel it. */
			while (atomic_load(&r->iters) < 500)
				sched_yield();
			pthread_cancel(th);
		}
		void *ret = NULL;
		pthread_join(th, &ret);
		if (cancel) {
			CHECK(ret == PTHREAD_CANCELED, "round %u: not cancelled", i);
			canceled += ret == PTHREAD_CANCELED;
			if (r->variant >= 3)
				CHECK(r->nulls > 0, "round %u: the 256 KiB limit never fired", i);
			else
				CHECK(r->nulls == 0, "round %u: %u allocations refused", i, r->nulls);
		} else {
			CHECK(ret == (void *)42, "round %u: exit value %p", i, ret);
			exited += ret == (void *)42;
			unsigned want = r->variant >= 3 ? HELD - 5 : 0;
			CHECK(r->nulls == want, "round %u: %u allocations refused in the task, want %u",
			      i, r->nulls, want);
		}
		task_nulls += r->nulls;
	}
	ml_stats(&mid);
	/* What the dead threads left behind is still live. */
	if (!cancel) {
		int64_t left = 0;
		for (unsigned i = 0; i < rounds; i++)
			for (int k = 0; k < HELD; k++)
				left += rs[i].held[k] ? (int64_t)HELD_SIZE : 0;
		CHECK(mid.live_bytes - base.live_bytes >= left - (int64_t)MiB,
		      "live_bytes grew by %lld, the dead threads hold %lld",
		      (long long)(mid.live_bytes - base.live_bytes), (long long)left);
	}
	for (unsigned i = 0; i < rounds; i++) {
		for (int k = 0; k < HELD; k++)
			free(rs[i].held[k]);
		for (int k = 0; k < RING; k++)
			free(rs[i].ring[k]);
	}
	atomic_store(&stop, 1);
	pthread_join(bg, NULL);

	CHECK(atomic_load(&dtor_runs) == rounds, "key destructor ran %u times for %u threads",
	      atomic_load(&dtor_runs), rounds);
	CHECK(atomic_load(&dtor_nulls) == 0,
	      "%u allocations of key destructors failed (the thread had left its task)",
	      atomic_load(&dtor_nulls));

	exact_tasks("main");
	pthread_t th;
	pthread_create(&th, NULL, exact_tasks, "a new thread");
	pthread_join(th, NULL);

	ml_stats(&end);
	int64_t drift = end.live_bytes - base.live_bytes;
	CHECK(drift > -(int64_t)MiB && drift < (int64_t)MiB,
	      "live_bytes is %lld bytes from its value before the rounds", (long long)drift);
	free(rs);
	printf("%s %s: %u rounds, %u exited, %u cancelled, %u refused in tasks, "
	       "%u destructor runs (%u NULL), %llu background tasks, live drift %lld, "
	       "%d failures\n",
	       argv[1], argv[2], rounds, exited, canceled, task_nulls, atomic_load(&dtor_runs),
	       atomic_load(&dtor_nulls), (unsigned long long)atomic_load(&bg_tasks),
	       (long long)drift, atomic_load(&failures));
	return atomic_load(&failures) ? 1 : 0;
}
