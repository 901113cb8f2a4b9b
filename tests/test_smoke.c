/* test_smoke: the library is preloaded and the header finds it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "shim/memlimits.h"

static void engine_is_loaded(void **state)
{
	(void)state;
	assert_true(ml_loaded());
}

static void stats_count_this_thread(void **state)
{
	(void)state;
	struct ml_stats a, b;
	assert_int_equal(ml_stats(&a), ML_OK);
	void *p = malloc(12345);
	assert_non_null(p);
	assert_int_equal(ml_stats(&b), ML_OK);
	assert_int_equal(b.thread_allocated - a.thread_allocated, 12345);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(engine_is_loaded),
		cmocka_unit_test(stats_count_this_thread),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
