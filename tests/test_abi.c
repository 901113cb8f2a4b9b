/* test_abi: programs built against an older header keep working. */
#include "tests/harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void version_1_program(void **state)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/task_oldheader", getenv("MLT_PROGS"));
	char *argv[] = { path, NULL };
	struct mlt_run r;
	assert_int_equal(mlt_run_cmd(argv, NULL, 1, NULL, &r), 0);
	printf("%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);
	mlt_run_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(version_1_program),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
