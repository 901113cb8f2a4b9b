/* test_meters: the engine's meters where a held-out check of the semantics
 * found holes (issue 10): a limit set by another thread while a task runs,
 * a token set by a signal handler in the middle of realloc or of the slow
 * path, the environment's cap against the API, a token set after it was
 * destroyed, and the start-up with jemalloc options that start threads. */
#include "tests/harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <malloc.h>
#include <unistd.h>

#include "shim/memlimits.h"

static int64_t live(void)
{
	struct ml_stats s;
	assert_int_equal(ml_stats(&s), ML_OK);
	return s.live_bytes;
}

/* ---- a limit set by another thread while a task runs ------------------ */

struct setter {
	volatile int paused; /* the task stopped allocating, its grant as it was */
	volatile int set;    /* the limit is set */
	int64_t limit;
};

static void *set_when_paused(void *p)
{
	struct setter *s = p;
	while (!__atomic_load_n(&s->paused, __ATOMIC_ACQUIRE))
		;
	s->limit = live(); /* the heap is at the limit from now on */
	ml_set_global_memory_limit(s->limit);
	__atomic_store_n(&s->set, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* The README's bound: the heap exceeds the limit by at most 64 KiB of
 * requests per thread (plus size-class rounding; 1 KiB blocks are exact
 * classes), from the moment the limit is set. The task pauses at a
 * different point of its grant in each trial while another thread sets the
 * limit to the heap as it is, then allocates until refused; with the old
 * 1 MiB grant most trials overshot by hundreds of KiB. */
static void limit_set_by_other_thread_holds(void **state)
{
	int64_t worst = 0;
	for (int trial = 0; trial < 40; trial++) {
		struct setter s = { 0, 0, 0 };
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, set_when_paused, &s), 0);
		ml_scope sc;
		assert_int_equal(ml_enter_global_memory(&sc), ML_OK);
		enum { MAX = 1 << 16 };
		static void *blocks[MAX];
		int n = 0, pause_at = 1024 + (trial * 37) % 1024;
		int64_t at_refusal = -1;
		while (n < MAX) {
			if (n == pause_at) {
				__atomic_store_n(&s.paused, 1, __ATOMIC_RELEASE);
				while (!__atomic_load_n(&s.set, __ATOMIC_ACQUIRE))
					;
			}
			void *p = malloc(1024);
			if (!p) {
				at_refusal = live();
				break;
			}
			blocks[n++] = p;
		}
		assert_int_equal(ml_leave(&sc, NULL), ML_GLOBAL_MEMORY_LIMIT);
		pthread_join(th, NULL);
		ml_set_global_memory_limit(-1);
		for (int i = 0; i < n; i++)
			free(blocks[i]);
		assert_true(at_refusal >= 0);
		int64_t over = at_refusal - s.limit;
		if (over > worst)
			worst = over;
	}
	printf("worst overshoot of a limit set by another thread: %lld bytes\n",
	       (long long)worst);
	assert_true(worst <= 64 << 10);
}

/* ---- tokens set from a signal handler --------------------------------- */

static ml_token *volatile sig_token;
static volatile sig_atomic_t handler_ran;

static void on_usr1(int sig)
{
	(void)sig;
	ml_token_set(sig_token);
	handler_ran = 1;
}

struct kicker {
	pthread_t target;
	volatile int stop;
	unsigned seed;
};

/* Sends the task's thread SIGUSR1 at random moments. */
static void *kick(void *p)
{
	struct kicker *k = p;
	while (!__atomic_load_n(&k->stop, __ATOMIC_ACQUIRE)) {
		struct timespec ts = { 0, 1000 + rand_r(&k->seed) % 20000 };
		nanosleep(&ts, NULL);
		pthread_kill(k->target, SIGUSR1);
	}
	return NULL;
}

/* Runs `tasks` token tasks, each growing a block (realloc) or allocating
 * (malloc) until its token is set by the handler; counts allocations that
 * started after the handler had set the token and still succeeded. A
 * realloc that fits the block's usable size allocates nothing (it is
 * charged nothing, and succeeds in an interrupted task): only reallocs
 * beyond it count. */
static long late_allocations(int tasks, bool use_realloc)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	struct kicker k = { pthread_self(), 0, 12345 };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, kick, &k), 0);
	long late = 0;
	for (int i = 0; i < tasks; i++) {
		ml_token *tok = ml_token_create();
		assert_non_null(tok);
		sig_token = tok;
		handler_ran = 0;
		ml_scope sc;
		assert_int_equal(ml_enter_token(&sc, tok), ML_OK);
		size_t size = 16;
		char *p = malloc(size);
		enum { KEEP = 4096 };
		static void *kept[KEEP];
		int nk = 0;
		for (long j = 0; p && j < 10000000; j++) {
			int seen = handler_ran; /* before the call starts */
			void *q;
			if (use_realloc && size + 16 <= malloc_usable_size(p)) {
				q = realloc(p, size + 16); /* in place */
				if (q)
					p = q, size += 16;
				continue;
			}
			if (use_realloc) {
				q = realloc(p, size + 16);
				if (q) {
					p = q;
					size += 16;
					if (size > 64 << 10)
						size = 16, q = realloc(p, 16), p = q ? q : p;
				}
			} else {
				q = malloc(48);
				if (q) {
					if (nk == KEEP) {
						for (int m = 0; m < nk; m++)
							free(kept[m]);
						nk = 0;
					}
					kept[nk++] = q;
				}
			}
			if (!q) {
				if (!seen && !handler_ran)
					fail_msg("allocation refused before the token was set");
				break;
			}
			if (seen)
				late++;
		}
		ml_status st = ml_leave(&sc, NULL);
		assert_int_equal(st, ML_TOKEN_LIMIT);
		free(p);
		for (int m = 0; m < nk; m++)
			free(kept[m]);
		ml_token_destroy(tok);
	}
	__atomic_store_n(&k.stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	signal(SIGUSR1, SIG_DFL);
	return late;
}

static void token_from_handler_stops_next_realloc(void **state)
{
	long late = late_allocations(1000, true);
	printf("reallocs that started after the handler set the token and "
	       "succeeded: %ld\n", late);
	assert_int_equal(late, 0);
}

static void token_from_handler_stops_next_malloc(void **state)
{
	long late = late_allocations(3000, false);
	printf("mallocs that started after the handler set the token and "
	       "succeeded: %ld\n", late);
	assert_int_equal(late, 0);
}

/* A token set by the task's own thread (as a signal handler in it would)
 * cuts the grant; whatever recomputes the grant before the next allocation
 * (a nested scope entered, a limit changed, an unmask) must not hand out a
 * fresh grant without looking at the token: the very next allocation
 * fails. (A signal landing between a scope's entry and its grant was the
 * way a handler's token let tasks allocate 16 KiB more.) */
static void token_set_then_regrant_next_allocation_fails(void **state)
{
	for (int op = 0; op < 4; op++) {
		ml_token *tok = ml_token_create();
		ml_scope sc, inner;
		assert_int_equal(ml_enter_token(&sc, tok), ML_OK);
		free(malloc(16)); /* a grant in hand */
		ml_token_set(tok);
		switch (op) {
		case 0:
			assert_int_equal(ml_enter_allocations(&inner, 1 << 30), ML_OK);
			break;
		case 1:
			ml_set_global_memory_limit(-1);
			break;
		case 2:
			ml_mask();
			ml_unmask();
			break;
		case 3:
			assert_int_equal(ml_enter_global_memory(&inner), ML_OK);
			break;
		}
		void *p = malloc(16);
		if (p)
			fail_msg("operation %d: an allocation after the token was set "
				 "succeeded", op);
		if (op == 0 || op == 3)
			assert_int_equal(ml_leave(&inner, NULL), ML_TOKEN_LIMIT);
		assert_int_equal(ml_leave(&sc, NULL), ML_TOKEN_LIMIT);
		ml_token_destroy(tok);
	}
}

/* ---- a token set after it was destroyed --------------------------------- */

static void late_set_of_destroyed_token_is_harmless(void **state)
{
	ml_token *old = ml_token_create();
	assert_non_null(old);
	ml_token_destroy(old);
	/* Whatever reuses the memory (blocks, another token) is untouched. */
	enum { N = 256 };
	unsigned char *b[N];
	for (int i = 0; i < N; i++) {
		b[i] = malloc(24);
		assert_non_null(b[i]);
		memset(b[i], 0xA5, 24);
	}
	ml_token *fresh = ml_token_create();
	assert_non_null(fresh);
	ml_token_set(old); /* a watchdog firing late */
	assert_false(ml_token_is_set(old));
	assert_false(ml_token_is_set(fresh));
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < 24; j++)
			assert_int_equal(b[i][j], 0xA5);
		free(b[i]);
	}
	/* A task under the fresh token is not interrupted by the old one. */
	ml_scope sc;
	assert_int_equal(ml_enter_token(&sc, fresh), ML_OK);
	ml_token_set(old);
	void *p = malloc(100);
	assert_non_null(p);
	free(p);
	assert_int_equal(ml_leave(&sc, NULL), ML_OK);
	/* A destroyed token is not a token to limit with. */
	assert_int_equal(ml_enter_token(&sc, old), ML_INVALID);
	ml_token_destroy(old); /* twice: nothing */
	ml_token_set(fresh);
	assert_true(ml_token_is_set(fresh));
	ml_token_destroy(fresh);
}

/* ---- the environment's cap is not the API's to lift --------------------- */

/* Runs helper `name` (with one argument, or none if arg is NULL). */
static void run_prog_arg(const char *name, const char *arg,
			 const char *const env[], struct mlt_run *r)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", getenv("MLT_PROGS"), name);
	char *argv[] = { path, (char *)arg, NULL };
	assert_int_equal(mlt_run_cmd(argv, env, 1, NULL, r), 0);
	printf("%s%s", r->out, r->err);
}

static void run_prog(const char *name, const char *const env[],
		     struct mlt_run *r)
{
	run_prog_arg(name, NULL, env, r);
}

/* Helper `name` under the one environment entry `entry` must exit 0. */
static void prog_passes(const char *name, const char *entry)
{
	const char *env[] = { entry, NULL };
	struct mlt_run r;
	run_prog(name, env, &r);
	assert_int_equal(r.status, 0);
	mlt_run_free(&r);
}

static void api_cannot_lift_env_cap(void **state)
{
	prog_passes("cap_api", "MEMLIMITS_GLOBAL_MEMORY=64M");
}

/* ---- big blocks admitted at the same moment by several threads --------- */

/* Each sees the others' (a reservation in the measure, memory.c): 8
 * threads asking for 8 MiB at once under 20M got 4 to 7 blocks, 56 MiB,
 * before; now 2, with the heap within the per-thread bound of the limit.
 * Ten runs: under load, about 1 run in 75 was 8 MiB over (a reservation
 * left behind by a resize, or a walker's older figure written over a
 * thread's own: 3 blocks; memory.c). */
static void big_blocks_at_once(void **state)
{
	(void)state;
	const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=20M", NULL };
	for (int i = 0; i < 10; i++) {
		struct mlt_run r;
		run_prog("big_at_once", env, &r);
		assert_int_equal(r.status, 0);
		double worst = 0, most = 0, fewest = 0;
		assert_true(mlt_kv(r.out, "worst_over", &worst));
		assert_true(mlt_kv(r.out, "most", &most));
		assert_true(mlt_kv(r.out, "fewest", &fewest));
		if (worst > 8 * 64 * 1024 || most > 2)
			print_message("run %d: %s", i, r.out);
		assert_true(worst <= 8 * 64 * 1024);
		assert_true(most <= 2);
		assert_true(fewest >= 1); /* and the limit did not refuse them all */
		mlt_run_free(&r);
	}
}

/* After a big block's refusal, small blocks get room over the limit for a
 * runtime's collector (node segfaulted without it), bounded, and only
 * until the memory is under the limit again (collector_room). */
static void collector_room_after_big_refusal(void **state)
{
	(void)state;
	prog_passes("collector_room", "MEMLIMITS_GLOBAL_MEMORY=16M");
}

/* Helper `name` under the environment entry `entry`, `runs` times: each
 * exits 0 and prints `key` at most `bound`. */
static void prints_at_most(const char *name, const char *entry, const char *key,
			   double bound, int runs)
{
	const char *env[] = { entry, NULL };
	for (int run = 0; run < runs; run++) {
		struct mlt_run r;
		run_prog(name, env, &r);
		assert_int_equal(r.status, 0);
		double v = 0;
		assert_true(mlt_kv(r.out, key, &v));
		assert_true(v <= bound);
		mlt_run_free(&r);
	}
}

/* Blocks of 16 to 64 KiB from 16 threads at once stay within the bound of
 * 64 KiB a thread: such a block came on top of the thread's grant,
 * unpublished (104 KiB a thread over, from a held-out check; it shows in
 * a run of 100 rounds about one time in three), and is reserved now. */
static void mid_blocks_within_bound(void **state)
{
	(void)state;
	prints_at_most("mid_blocks", "MEMLIMITS_GLOBAL_MEMORY=64M", "worst_per_thread",
		       64 * 1024, 3);
}

/* A thread far from the limit refills by the lane's plain refills
 * (memory.c, FAR_REFILLS): when another thread takes the room meanwhile,
 * the room each of them checks sends it back to the lane, within the bound
 * of 64 KiB a thread (2 threads; without that check, up to 8 grants of 56
 * KiB past the limit: 328 KiB). */
static void far_lane_room_taken(void **state)
{
	(void)state;
	prints_at_most("far_lane", "MEMLIMITS_GLOBAL_MEMORY=64M", "worst_over",
		       2 * 64 * 1024, 2);
}

/* A thread holding a grant taken far from the limit asks for one block of
 * 900,000 bytes after another thread filled the room: refused by every
 * form, within the bound of 64 KiB a thread (2 threads). The grant bounds
 * what the fast path admits in one block: grants of 1 MiB far from the
 * limit, tried once, granted each (890 KiB over; a held-out check). */
static void far_grant_one_block(void **state)
{
	(void)state;
	static const char *const kinds[] = { "malloc", "calloc", "memalign", "realloc" };
	for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
		const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=256M", NULL };
		struct mlt_run r;
		run_prog_arg("far_block", kinds[i], env, &r);
		assert_int_equal(r.status, 0);
		double granted = -1, over = 0;
		assert_true(mlt_kv(r.out, "granted", &granted));
		assert_true(mlt_kv(r.out, "worst_over", &over));
		assert_true(granted == 0);
		assert_true(over <= 2 * 64 * 1024);
		mlt_run_free(&r);
	}
}

/* A program that frees most of its memory, then makes a few small blocks
 * and waits: what jemalloc keeps resident falls to the quarter of the
 * limit at once, not at a slow path that never comes (140 MiB stayed
 * resident under 200M). */
static void freed_then_idle(void **state)
{
	(void)state;
	const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=200M", NULL };
	struct mlt_run r;
	run_prog("free_idle", env, &r);
	assert_int_equal(r.status, 0);
	double rss = -1, kept = -1;
	assert_true(mlt_kv(r.out, "rss_mib", &rss));
	assert_true(mlt_kv(r.out, "kept_mib", &kept));
	assert_true(kept >= 0 && kept <= 50);
	assert_true(rss > 0 && rss <= 70);
	mlt_run_free(&r);
}

/* A pool of threads that each made and freed 10 MiB of blocks of 1-65
 * KiB, then wait: their caches of freed blocks (jemalloc's tcache) are
 * neither in the measure nor purged, and 64 of them held 289 MiB under a
 * 100M limit (323 MiB resident with every thread waiting, 413 MiB once
 * main had taken its 98 MiB: a held-out check). A thread whose live bytes
 * fall by its share of the limit empties its cache. */
static void pool_caches_within_limit(void **state)
{
	(void)state;
	const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=100M", NULL };
	struct mlt_run r;
	run_prog_arg("pool_caches", "64x300", env, &r);
	assert_int_equal(r.status, 0);
	double threads = 0, parked = 0, got = 0, end = 0;
	assert_true(mlt_kv(r.out, "threads", &threads) && mlt_kv(r.out, "parked_kib", &parked) &&
		    mlt_kv(r.out, "main_mib", &got) && mlt_kv(r.out, "end_kib", &end));
	assert_true(threads == 64);
	assert_true(parked < 80 * 1024);
	assert_true(got >= 80);
	assert_true(end < 140 * 1024);
	mlt_run_free(&r);
}

/* A limit set by another thread, where threads make malloc(1) blocks (16
 * bytes on a grant of requests): each thread gets at most 64 KiB of blocks
 * after the set (it went on for up to 114 KiB before the activity
 * callback looked at the limits' change; 4 runs of 8). */
static void late_limit_tiny_blocks(void **state)
{
	(void)state;
	prints_at_most("late_tiny", "LATE_TINY=1", "most_after_bytes", 64 * 1024, 4);
}

/* Zero-byte requests take blocks too: every form is refused at the limit,
 * within the bound of 64 KiB a thread (they were never refused: the fast
 * path's `left >= 0` always held, and a cut grant did not stop them). */
static void zero_byte_blocks_refused(void **state)
{
	(void)state;
	const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=4M", NULL };
	struct mlt_run r;
	run_prog("zero_blocks", env, &r);
	assert_int_equal(r.status, 0);
	double over = -1, unrefused = -1;
	assert_true(mlt_kv(r.out, "worst_over", &over));
	assert_true(mlt_kv(r.out, "unrefused", &unrefused));
	assert_true(unrefused == 0);
	assert_true(over <= 64 * 1024);
	double each = -1;
	assert_true(mlt_kv(r.out, "threads_over_each", &each));
	print_message("zero-byte blocks: %.0f bytes over, %.0f a thread over from 4 threads\n",
		      over, each);
	assert_true(each <= 64 * 1024);
	mlt_run_free(&r);
	run_prog("zero_new", env, &r); /* operator new(0) and new char[0] */
	assert_int_equal(r.status, 0);
	assert_true(mlt_kv(r.out, "unrefused", &unrefused));
	assert_true(unrefused == 0);
	mlt_run_free(&r);
}

/* A token set by a signal handler (that allocates 0 bytes itself) stops a
 * task making only malloc(0): the handler's allocation inside the cut of
 * the grant left it above its grant for ever (the task never stopped). */
static void zero_byte_task_token_from_handler(void **state)
{
	(void)state;
	for (int run = 0; run < 2; run++) {
		struct mlt_run r;
		run_prog("zero_token_signal", NULL, &r);
		assert_int_equal(r.status, 0);
		double rounds = 0;
		assert_true(mlt_kv(r.out, "rounds", &rounds));
		assert_true(rounds == 20);
		mlt_run_free(&r);
	}
}

/* pthread_create's look at the limits leaves nothing in the measure (it
 * admitted 64 KiB of room through the memory meter, which reserved it). */
static void thread_start_reserves_nothing(void **state)
{
	(void)state;
	const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=64M", NULL };
	struct mlt_run r;
	run_prog("start_room", env, &r);
	assert_int_equal(r.status, 0);
	double grew = 0;
	assert_true(mlt_kv(r.out, "grew", &grew));
	/* The thread itself is counted (20 KiB, preload/thread.c), not the look. */
	assert_true(grew < (16 + 20) * 1024);
	mlt_run_free(&r);
}

/* ---- what a thread costs besides its blocks ---------------------------- */

/* A thread's stack pages, descriptor and jemalloc's thread cache (20 KiB,
 * measured 20.9) count from pthread_create to the thread's end: 2000 idle
 * threads held 44 MiB under a 20M limit that counted none of it (a
 * held-out figure). Under 8M, pthread_create refuses (EAGAIN) before the
 * threads take more than the limit; the charge is given back at each
 * thread's end (three rounds of 300 under 64M), and a forked child keeps
 * only its own thread's. */
static void threads_counted(void **state)
{
	(void)state;
	const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=8M", NULL };
	struct mlt_run r;
	run_prog_arg("idle_threads", "2000", env, &r);
	double made = 0, rss = 0;
	assert_int_equal(r.status, 0);
	assert_true(mlt_kv(r.out, "made", &made) && mlt_kv(r.out, "rss", &rss));
	print_message("under 8M: %.0f threads, %.0f KiB resident\n", made, rss);
	assert_true(made > 50 && made < 8 * 1024 / 20);
	assert_true(rss < 16 * 1024);
	mlt_run_free(&r);
	const char *env2[] = { "MEMLIMITS_GLOBAL_MEMORY=64M", NULL };
	run_prog_arg("idle_threads", "300x3", env2, &r);
	const char *p = r.out;
	int full = 0;
	while ((p = strstr(p, "made 300\n"))) {
		full++;
		p++;
	}
	assert_int_equal(r.status, 0);
	assert_int_equal(full, 3);
	mlt_run_free(&r);
	/* A forked child is charged its own thread only: 1000 threads' 20 MiB
	 * stayed in a child, which was refused 25 MiB under 40M. */
	const char *env3[] = { "MEMLIMITS_GLOBAL_MEMORY=40M", NULL };
	run_prog_arg("idle_threads", "1000f", env3, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "made 1000\n"));
	assert_non_null(strstr(r.out, "child malloc ok\n"));
	mlt_run_free(&r);
}

/* ---- a realloc's growth: seen by other threads, not the peak's moment --- */

static void realloc_growth_seen_and_peak_within(void **state)
{
	(void)state;
	prog_passes("realloc_seen", "MEMLIMITS_GLOBAL_MEMORY=64M");
}

/* ---- a limit sees the block's size class, not only the request ---------- */

static void limit_sees_the_block(void **state)
{
	(void)state;
	const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=100M", NULL };
	struct mlt_run r;
	run_prog("size_class", env, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, "an allocation of 101200291 bytes (a block "
				      "of 112.0 MiB) failed with ENOMEM"));
	mlt_run_free(&r);
}

/* A refused realloc's breach line names the size asked for: it said "an
 * allocation of 20971520 bytes", the growth alone (held-out check). */
static void resize_breach_line(void **state)
{
	(void)state;
	const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=35M", NULL };
	struct mlt_run r;
	run_prog("realloc_breach", env, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "= (nil)"));
	assert_non_null(strstr(r.err, ": a resize to 33554560 bytes (20.0 MiB more) "
				      "failed with ENOMEM"));
	mlt_run_free(&r);
}

/* ---- small requests at large alignments: charged their blocks ----------- */

static void aligned_small_requests_limited(void **state)
{
	(void)state;
	prog_passes("aligned_small", "MEMLIMITS_GLOBAL_MEMORY=50M");
}

/* ---- tiny requests: grants and grace counted in blocks ------------------ */

static void tiny_requests_limited(void **state)
{
	(void)state;
	const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=10M", NULL };
	for (int k = 1; k <= 8; k *= 2) {
		char threads[8];
		snprintf(threads, sizeof threads, "%d", k);
		struct mlt_run r;
		run_prog_arg("tiny_allocs", threads, env, &r);
		assert_int_equal(r.status, 0);
		mlt_run_free(&r);
	}
	/* After a big block each: the threads' last ratio of blocks to
	 * requests was 1 (their grants were 16 times their blocks: 6-9 MB
	 * over with 16 threads). Three rounds: the overshoot depends on how
	 * the threads are scheduled. */
	char path[4096];
	snprintf(path, sizeof path, "%s/tiny_allocs", getenv("MLT_PROGS"));
	for (int round = 0; round < 3; round++)
		for (int k = 4; k <= 16; k *= 2) {
			char threads[8];
			snprintf(threads, sizeof threads, "%d", k);
			char *argv[] = { path, threads, "big", NULL };
			struct mlt_run r;
			assert_int_equal(mlt_run_cmd(argv, env, 1, NULL, &r), 0);
			printf("%s%s", r.out, r.err);
			assert_int_equal(r.status, 0);
			mlt_run_free(&r);
		}
}

/* ---- a budget's grace after a refusal: 100 KiB, for both budgets -------- */

static void budget_grace_is_100k(void **state)
{
	(void)state;
	prog_passes("budget_grace", "MEMLIMITS_ALLOCATIONS=1M");
	prog_passes("budget_grace", "MEMLIMITS_THREAD_ALLOCATIONS=1M");
}

/* ---- under a limit, jemalloc's free pages are bounded too --------------- */

static void free_pages_kept_down_under_limit(void **state)
{
	(void)state;
	prog_passes("keep_down", "MEMLIMITS_GLOBAL_MEMORY=30M");
	/* Threads taking turns: three runs (the unbounded case came in a
	 * third of them). */
	const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=100M", NULL };
	for (int i = 0; i < 3; i++) {
		struct mlt_run r;
		run_prog_arg("keep_down", "turns", env, &r);
		assert_int_equal(r.status, 0);
		mlt_run_free(&r);
	}
	/* Freed blocks in the threads' caches (out of the measure, and not
	 * jemalloc's free pages): the caches are sized by the limit. */
	struct mlt_run r;
	run_prog_arg("keep_down", "caches", env, &r);
	assert_int_equal(r.status, 0);
	mlt_run_free(&r);
}

/* ---- threads at the limit: start-up grace, pthread_create refused ------- */

static void threads_at_the_limit(void **state)
{
	(void)state;
	prog_passes("thread_at_limit", "MEMLIMITS_GLOBAL_MEMORY=64M");
}

/* ---- start-up with jemalloc options that start threads or allocate ------ */

static void malloc_conf_no_startup_hang(void **state)
{
	static const char *const confs[] = {
		"background_thread:true",
		"background_thread:true,max_background_threads:4",
		"narenas:1", "percpu_arena:percpu", "tcache:false",
		"dirty_decay_ms:0,muzzy_decay_ms:0", "stats_print:false",
		"abort_conf:true,background_thread:true",
	};
	for (size_t i = 0; i < sizeof confs / sizeof confs[0]; i++) {
		char conf[200];
		snprintf(conf, sizeof conf, "MALLOC_CONF=%s", confs[i]);
		const char *env[] = { conf, "MLT_TIMEOUT=20",
				      "MEMLIMITS_GLOBAL_MEMORY=64M", NULL };
		struct mlt_run r;
		/* A C program with threads that meets a limit, and python3. */
		char cmd[4200];
		snprintf(cmd, sizeof cmd, "%s/prog_threads_hog 4",
			 getenv("MLT_PROGS"));
		assert_int_equal(mlt_sh(cmd, env, 1, NULL, &r), 0);
		if (r.status != 0 || !strstr(r.out, "recovered"))
			fail_msg("%s: prog_threads_hog exited %d: %s%s", conf,
				 r.status, r.out, r.err);
		mlt_run_free(&r);
		assert_int_equal(mlt_sh("/usr/bin/python3 -c 'print(sum(range(10)))'",
					env, 1, NULL, &r), 0);
		if (r.status != 0 || strcmp(r.out, "45\n") != 0)
			fail_msg("%s: python3 exited %d: %s", conf, r.status, r.err);
		mlt_run_free(&r);
	}
}

int main(void)
{
	ml_start();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(limit_set_by_other_thread_holds),
		cmocka_unit_test(token_from_handler_stops_next_realloc),
		cmocka_unit_test(token_from_handler_stops_next_malloc),
		cmocka_unit_test(token_set_then_regrant_next_allocation_fails),
		cmocka_unit_test(late_set_of_destroyed_token_is_harmless),
		cmocka_unit_test(api_cannot_lift_env_cap),
		cmocka_unit_test(realloc_growth_seen_and_peak_within),
		cmocka_unit_test(limit_sees_the_block),
		cmocka_unit_test(resize_breach_line),
		cmocka_unit_test(aligned_small_requests_limited),
		cmocka_unit_test(tiny_requests_limited),
		cmocka_unit_test(budget_grace_is_100k),
		cmocka_unit_test(free_pages_kept_down_under_limit),
		cmocka_unit_test(threads_at_the_limit),
		cmocka_unit_test(malloc_conf_no_startup_hang),
		cmocka_unit_test(big_blocks_at_once),
		cmocka_unit_test(thread_start_reserves_nothing),
		cmocka_unit_test(threads_counted),
		cmocka_unit_test(mid_blocks_within_bound),
		cmocka_unit_test(far_lane_room_taken),
		cmocka_unit_test(far_grant_one_block),
		cmocka_unit_test(freed_then_idle),
		cmocka_unit_test(pool_caches_within_limit),
		cmocka_unit_test(late_limit_tiny_blocks),
		cmocka_unit_test(zero_byte_blocks_refused),
		cmocka_unit_test(zero_byte_task_token_from_handler),
		cmocka_unit_test(collector_room_after_big_refusal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
