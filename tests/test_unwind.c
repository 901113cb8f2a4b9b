/* test_unwind: exceptions and thread cancellation that unwind through a
 * task leave its scope instead of leaving the thread interrupted. */
#include "tests/harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "shim/memlimits.h"

static void cxx_exception_escapes_task(void **state)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/task_unwind", getenv("MLT_PROGS"));
	char *argv[] = { path, NULL };
	struct mlt_run r;
	assert_int_equal(mlt_run_cmd(argv, NULL, 1, NULL, &r), 0);
	printf("%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);
	mlt_run_free(&r);
}

static volatile int in_task;
static volatile int after_cancel; /* 1: the cleanup's allocation worked, -1: refused */

/* The task uses most of its 1 MiB budget, then spins until cancelled. */
static void *spin_in_task(void *arg)
{
	void *keep = malloc(900 << 10);
	in_task = 1;
	for (;;) {
		free(malloc(64));
		pthread_testcancel();
	}
	free(keep);
	return arg;
}

/* Runs after the cancellation unwound through the task, outside it: if the
 * task's scope was left, 512 KiB more is no task's business; if it were
 * still on the thread's stack of scopes (pointing into unwound frames), the
 * task's 1 MiB budget would refuse it. */
static void after_unwind(void *arg)
{
	(void)arg;
	void *p = malloc(512 << 10);
	after_cancel = p ? 1 : -1;
	free(p);
}

static void *cancelled_thread(void *arg)
{
	pthread_cleanup_push(after_unwind, NULL);
	ml_limit_allocations(1 << 20, spin_in_task, NULL, NULL, NULL);
	pthread_cleanup_pop(0);
	return arg;
}

static void *alloc_100(void *arg)
{
	return malloc(100);
}

static void cancel_inside_task(void **state)
{
	for (int i = 0; i < 20; i++) {
		pthread_t th;
		in_task = 0;
		after_cancel = 0;
		assert_int_equal(pthread_create(&th, NULL, cancelled_thread, NULL), 0);
		while (!in_task)
			usleep(100);
		assert_int_equal(pthread_cancel(th), 0);
		void *ret;
		assert_int_equal(pthread_join(th, &ret), 0);
		assert_ptr_equal(ret, PTHREAD_CANCELED);
		/* The cancelled task left its scope before the thread's own
		 * cleanup ran. */
		assert_int_equal(after_cancel, 1);
	}
	/* This thread is unaffected and tasks still work. */
	uint64_t used = 0;
	void *p = NULL;
	assert_int_equal(ml_limit_allocations(1000, alloc_100, NULL, &p, &used), ML_OK);
	assert_int_equal(used, 100);
	free(p);
}

int main(void)
{
	ml_start();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(cxx_exception_escapes_task),
		cmocka_unit_test(cancel_inside_task),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
