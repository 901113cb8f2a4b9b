/* prof_track: the tracker's callbacks. Runs five phases under
 * libmemlimits-prof.so and prints "name value" lines that test_prof.c checks:
 *
 * 1. free/realloc: rate 5e-4, single thread; alloc returns a cookie for every
 *    other sample, NULL for the others; blocks are freed, reallocated (a
 *    sampled block moves) or kept, and all are freed before the stop. Each
 *    tracked cookie must see exactly one dealloc, during the free/realloc of
 *    its own block; no other dealloc. Both callbacks allocate.
 * 2. rate 1: every allocation is sampled, so a callback whose own
 *    allocations were sampled would recurse: the depth counter sees it.
 * 3. threads: four threads allocate; each callback records the thread it
 *    runs in and the block, which the allocating thread stamps with its
 *    number; main frees the blocks: deallocs run in main.
 * 4. stop while threads allocate: no callback after ml_memprof_stop returns,
 *    not even dealloc for blocks tracked before it.
 * 5. a block tracked by one profiler session and freed in the next reaches
 *    neither session's dealloc. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

#define MAXCK 100000
struct ck {
	void *block;
	size_t size;
	int deallocs;
	int wrong_block; /* dealloc'd while another block was being freed */
	int during_realloc;
	int alloc_thread; /* thread number the alloc callback ran in */
	int free_thread;  /* thread number the dealloc callback ran in */
	uint64_t engine_thread;
};
static struct ck cks[MAXCK];
static int nck;                   /* atomic */
static int alloc_calls, dealloc_calls, untracked, bogus, recursion;
static int track_every = 2;       /* track every Nth sample; 1 = all */
static int sample_no;             /* atomic */
static int cb_alloc_fail;
static __thread int depth, my_thread; /* 0 = main, 1.. = workers */
/* Set around free/realloc calls and read by the callbacks: volatile, as
 * glibc declares the malloc family "leaf" (no calls back into this file),
 * which would let the compiler drop the stores. */
static void *volatile freeing;    /* the block main is freeing (phase 1) */
static volatile int in_realloc;
static volatile int alloc_in_realloc; /* the alloc callback ran in a realloc */
static volatile int stopped, after_stop;

static void enter(void)
{
	if (depth++)
		__atomic_fetch_add(&recursion, 1, __ATOMIC_RELAXED);
	if (stopped)
		__atomic_fetch_add(&after_stop, 1, __ATOMIC_RELAXED);
}

/* What callbacks do with memory: allocate, grow, free. */
static void churn(size_t n)
{
	char *a = malloc(n % 3000 + 1);
	char *b = calloc(1, 200);
	if (!a || !b) {
		cb_alloc_fail++;
		free(a);
		free(b);
		return;
	}
	memset(a, 7, n % 3000 + 1);
	char *c = realloc(a, 5000);
	if (!c) {
		cb_alloc_fail++;
		free(a);
	} else
		free(c);
	free(b);
}

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)data;
	enter();
	__atomic_fetch_add(&alloc_calls, 1, __ATOMIC_RELAXED);
	if (in_realloc)
		alloc_in_realloc = 1;
	churn(s->size);
	void *cookie = NULL;
	int k = __atomic_fetch_add(&sample_no, 1, __ATOMIC_RELAXED);
	if (k % track_every == 0) {
		int i = __atomic_fetch_add(&nck, 1, __ATOMIC_RELAXED);
		if (i < MAXCK) {
			cks[i].block = s->block;
			cks[i].size = s->size;
			cks[i].alloc_thread = my_thread;
			cks[i].engine_thread = s->thread;
			cks[i].free_thread = -1;
			cookie = &cks[i];
		}
	} else
		__atomic_fetch_add(&untracked, 1, __ATOMIC_RELAXED);
	depth--;
	return cookie;
}

static void on_dealloc(void *cookie, void *data)
{
	(void)data;
	enter();
	__atomic_fetch_add(&dealloc_calls, 1, __ATOMIC_RELAXED);
	struct ck *c = cookie;
	int n = __atomic_load_n(&nck, __ATOMIC_RELAXED);
	if (c < cks || c >= cks + (n < MAXCK ? n : MAXCK) ||
	    ((char *)c - (char *)cks) % sizeof *c) {
		__atomic_fetch_add(&bogus, 1, __ATOMIC_RELAXED);
	} else {
		__atomic_fetch_add(&c->deallocs, 1, __ATOMIC_RELAXED);
		if (freeing && c->block != freeing)
			c->wrong_block++;
		c->during_realloc = in_realloc;
		c->free_thread = my_thread;
	}
	churn(100);
	depth--;
}

static void reset(int every)
{
	nck = alloc_calls = dealloc_calls = untracked = bogus = sample_no = 0;
	track_every = every;
	memset(cks, 0, sizeof cks);
}

static uint64_t lcg(uint64_t *x)
{
	*x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
	return *x >> 33;
}

static void my_free(void *p)
{
	freeing = p;
	free(p);
	freeing = NULL;
}

static void phase1(void)
{
	reset(2);
	ml_tracker tr = { on_alloc, on_dealloc, NULL };
	printf("p1_start %d\n", (int)ml_memprof_start(5e-4, 8, &tr));
	enum { N = 20000 };
	static void *keep[N];
	uint64_t x = 1;
	long reallocs_of_sampled = 0, grown_in_place = 0;
	for (int i = 0; i < N; i++) {
		size_t n = 1 + lcg(&x) % 2000;
		int before = __atomic_load_n(&nck, __ATOMIC_RELAXED);
		void *p = malloc(n);
		int tracked = __atomic_load_n(&nck, __ATOMIC_RELAXED) > before;
		if (!p) {
			printf("p1_oom 1\n");
			return;
		}
		switch (lcg(&x) % 3) {
		case 0:
			my_free(p);
			break;
		case 1: {
			/* grow (a sampled block grows in its slot while it
			 * fits, else moves) or shrink (it stays, as jemalloc
			 * keeps a block that fits) */
			size_t m = lcg(&x) % 2 ? n * 2 + 10 : n / 2 + 1;
			freeing = p;
			alloc_in_realloc = 0;
			in_realloc = 1;
			void *q = realloc(p, m);
			in_realloc = 0;
			freeing = NULL;
			if (!q) {
				printf("p1_oom 1\n");
				return;
			}
			/* the tracker sees a free and an allocation when the
			 * block moves or its growth is sampled; else the
			 * block keeps its record */
			reallocs_of_sampled += tracked && (q != p || alloc_in_realloc);
			grown_in_place += tracked && q == p && m > n && !alloc_in_realloc;
			keep[i] = q;
			break;
		}
		default:
			keep[i] = p;
		}
	}
	/* realloc to 0 frees, too */
	for (int i = 0; i < N; i++)
		if (keep[i] && i % 7 == 0) {
			freeing = keep[i];
			void *r = realloc(keep[i], 0);
			freeing = NULL;
			keep[i] = r; /* NULL (glibc semantics) */
		}
	for (int i = 0; i < N; i++)
		my_free(keep[i]);
	long once = 0, never = 0, more = 0, wrong = 0, via_realloc = 0;
	int n = nck < MAXCK ? nck : MAXCK;
	for (int i = 0; i < n; i++) {
		once += cks[i].deallocs == 1;
		never += cks[i].deallocs == 0;
		more += cks[i].deallocs > 1;
		wrong += cks[i].wrong_block;
		via_realloc += cks[i].deallocs && cks[i].during_realloc;
	}
	printf("p1_stop %d\n", (int)ml_memprof_stop());
	printf("p1_alloc_calls %d\np1_tracked %d\np1_untracked %d\n", alloc_calls,
	       n, untracked);
	printf("p1_dealloc_calls %d\np1_bogus %d\n", dealloc_calls, bogus);
	printf("p1_dealloc_once %ld\np1_dealloc_never %ld\np1_dealloc_more %ld\n",
	       once, never, more);
	printf("p1_wrong_block %ld\np1_dealloc_in_realloc %ld\n", wrong,
	       via_realloc);
	printf("p1_reallocs_of_tracked %ld\n", reallocs_of_sampled);
	printf("p1_grown_in_place %ld\n", grown_in_place);
}

static void phase2(void)
{
	reset(2);
	ml_tracker tr = { on_alloc, on_dealloc, NULL };
	enum { N = 300 };
	static void *keep[N];
	int rec0 = recursion;
	printf("p2_start %d\n", (int)ml_memprof_start(1.0, 16, &tr));
	for (int i = 0; i < N; i++)
		keep[i] = malloc(1 + (size_t)i * 37 % 5000);
	for (int i = 0; i < N; i++)
		my_free(keep[i]);
	printf("p2_stop %d\n", (int)ml_memprof_stop());
	printf("p2_allocs %d\np2_alloc_calls %d\np2_tracked %d\np2_dealloc_calls %d\n",
	       N, alloc_calls, nck, dealloc_calls);
	printf("p2_recursion %d\n", recursion - rec0);
}

/* Phase 3: four workers. */
#define NTHR 4
#define PER_THREAD 10000
static void *blocks[NTHR][PER_THREAD];

static void *worker3(void *arg)
{
	int me = (int)(intptr_t)arg;
	my_thread = me;
	uint64_t x = (uint64_t)me;
	for (int i = 0; i < PER_THREAD; i++) {
		size_t n = 8 + lcg(&x) % 3000;
		int *p = malloc(n);
		if (!p)
			return (void *)1;
		p[0] = me; /* who allocated the block, for main to compare */
		blocks[me - 1][i] = p;
	}
	return NULL;
}

static void phase3(void)
{
	reset(1);
	ml_tracker tr = { on_alloc, on_dealloc, NULL };
	printf("p3_start %d\n", (int)ml_memprof_start(1e-4, 8, &tr));
	pthread_t th[NTHR];
	for (int t = 0; t < NTHR; t++)
		pthread_create(&th[t], NULL, worker3, (void *)(intptr_t)(t + 1));
	int failed = 0;
	for (int t = 0; t < NTHR; t++) {
		void *r;
		pthread_join(th[t], &r);
		failed += r != NULL;
	}
	/* Every worker's blocks are still live: compare the stamp. */
	int n = nck < MAXCK ? nck : MAXCK, wrong_thread = 0, worker_samples = 0;
	uint64_t eng[NTHR + 1] = { 0 };
	int eng_mismatch = 0;
	for (int i = 0; i < n; i++) {
		int t = cks[i].alloc_thread;
		if (t == 0)
			continue; /* main's own (pthread_create) */
		worker_samples++;
		if (*(int *)cks[i].block != t)
			wrong_thread++;
		if (!eng[t])
			eng[t] = cks[i].engine_thread;
		else if (eng[t] != cks[i].engine_thread)
			eng_mismatch++;
	}
	int eng_distinct = 1;
	for (int a = 1; a <= NTHR; a++)
		for (int b = a + 1; b <= NTHR; b++)
			if (eng[a] && eng[a] == eng[b])
				eng_distinct = 0;
	int threads_sampled = 0;
	for (int a = 1; a <= NTHR; a++)
		threads_sampled += eng[a] != 0;
	for (int t = 0; t < NTHR; t++)
		for (int i = 0; i < PER_THREAD; i++)
			free(blocks[t][i]);
	int freed_elsewhere = 0, once = 0;
	for (int i = 0; i < n; i++) {
		if (cks[i].alloc_thread == 0)
			continue;
		once += cks[i].deallocs == 1;
		freed_elsewhere += cks[i].deallocs && cks[i].free_thread != 0;
	}
	printf("p3_stop %d\n", (int)ml_memprof_stop());
	printf("p3_failed %d\np3_worker_samples %d\np3_wrong_thread %d\n", failed,
	       worker_samples, wrong_thread);
	printf("p3_threads_sampled %d\np3_engine_thread_mismatch %d\np3_engine_thread_distinct %d\n",
	       threads_sampled, eng_mismatch, eng_distinct);
	printf("p3_dealloc_once %d\np3_dealloc_not_in_freeing_thread %d\n", once,
	       freed_elsewhere);
}

/* Phase 4: stop while two workers allocate. */
static int quit4, after_count[2], before_stop_calls, worker_allocs;

static void *worker4(void *arg)
{
	int me = (int)(intptr_t)arg;
	my_thread = me + 1;
	uint64_t x = (uint64_t)me + 100;
	void *held[64] = { 0 };
	while (!__atomic_load_n(&quit4, __ATOMIC_ACQUIRE)) {
		int k = (int)(lcg(&x) % 64);
		free(held[k]);
		held[k] = malloc(16 + lcg(&x) % 4000);
		__atomic_fetch_add(&worker_allocs, 1, __ATOMIC_RELAXED);
		if (__atomic_load_n(&stopped, __ATOMIC_ACQUIRE))
			__atomic_fetch_add(&after_count[me], 1, __ATOMIC_RELAXED);
	}
	for (int k = 0; k < 64; k++)
		free(held[k]);
	return NULL;
}

static void phase4(void)
{
	reset(1);
	after_stop = 0;
	ml_tracker tr = { on_alloc, on_dealloc, NULL };
	enum { N = 2000 };
	static void *mine[N];
	printf("p4_start %d\n", (int)ml_memprof_start(1e-3, 8, &tr));
	for (int i = 0; i < N; i++)
		mine[i] = malloc(1000); /* most of them sampled (p = 0.63) */
	pthread_t th[2];
	for (int t = 0; t < 2; t++)
		pthread_create(&th[t], NULL, worker4, (void *)(intptr_t)t);
	/* Let the workers reach the profiler a good number of times (counts,
	 * not time; bounded, in case nothing is sampled at all). */
	while (__atomic_load_n(&alloc_calls, __ATOMIC_RELAXED) < 500 + N &&
	       __atomic_load_n(&worker_allocs, __ATOMIC_RELAXED) < 2000000)
		sched_yield();
	int worker_calls = 0;
	for (int i = 0; i < nck && i < MAXCK; i++)
		worker_calls += cks[i].alloc_thread != 0;
	ml_status st = ml_memprof_stop();
	__atomic_store_n(&stopped, 1, __ATOMIC_RELEASE);
	before_stop_calls = alloc_calls + dealloc_calls;
	/* Tracked before the stop, freed after it: no dealloc. */
	for (int i = 0; i < N; i++)
		free(mine[i]);
	while (__atomic_load_n(&after_count[0], __ATOMIC_RELAXED) < 20000 ||
	       __atomic_load_n(&after_count[1], __ATOMIC_RELAXED) < 20000)
		sched_yield();
	__atomic_store_n(&quit4, 1, __ATOMIC_RELEASE);
	for (int t = 0; t < 2; t++)
		pthread_join(th[t], NULL);
	int main_tracked = 0;
	for (int i = 0; i < nck && i < MAXCK; i++)
		main_tracked += cks[i].alloc_thread == 0 && cks[i].size == 1000;
	printf("p4_stop %d\np4_calls_before_stop %d\np4_main_tracked %d\n",
	       (int)st, before_stop_calls, main_tracked);
	printf("p4_worker_samples_before_stop %d\n", worker_calls);
	printf("p4_after_stop %d\np4_calls_total %d\n", after_stop,
	       alloc_calls + dealloc_calls);
	stopped = 0;
}

/* Phase 5: a block of session A freed during session B. */
static int b_deallocs_of_a;
static void on_dealloc_b(void *cookie, void *data)
{
	(void)data;
	struct ck *c = cookie;
	if (c >= cks && c < cks + MAXCK)
		b_deallocs_of_a++;
}

static void *on_alloc_b(const ml_sample *s, void *data)
{
	(void)s;
	(void)data;
	return (void *)1; /* a cookie that is not one of cks */
}

static void phase5(void)
{
	reset(1);
	ml_tracker a = { on_alloc, on_dealloc, NULL };
	ml_tracker b = { on_alloc_b, on_dealloc_b, NULL };
	enum { N = 200 };
	static void *keep[N];
	printf("p5_start_a %d\n", (int)ml_memprof_start(1.0, 8, &a));
	for (int i = 0; i < N; i++)
		keep[i] = malloc(100);
	printf("p5_stop_a %d\n", (int)ml_memprof_stop());
	int tracked = nck;
	printf("p5_start_b %d\n", (int)ml_memprof_start(1.0, 8, &b));
	for (int i = 0; i < N; i++)
		free(keep[i]);
	printf("p5_stop_b %d\n", (int)ml_memprof_stop());
	printf("p5_tracked_a %d\np5_dealloc_a %d\np5_dealloc_b_of_a %d\n", tracked,
	       dealloc_calls, b_deallocs_of_a);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	printf("begin 1\n"); /* stdout's buffer exists before any profiler */
	phase1();
	phase2();
	phase3();
	phase4();
	phase5();
	printf("cb_alloc_fail %d\n", cb_alloc_fail);
	printf("recursion %d\n", recursion);
	return 0;
}
