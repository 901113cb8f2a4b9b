/* test_hpp: shim/memlimits.hpp, the C++ RAII layer, under the preload. The
 * C++ programs in tests/progs do the work (hpp_raii: one group of checks per
 * argument; example_cxx: the complete example); this runs them and reads
 * what they print. */
#include "tests/harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void run(const char *prog, const char *arg, int preload, struct mlt_run *r)
{
	const char *d = getenv("MLT_PROGS");
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", d ? d : "build/tests/progs", prog);
	char *argv[] = { path, (char *)arg, NULL };
	assert_int_equal(mlt_run_cmd(argv, NULL, preload, NULL, r), 0);
	print_message("--- %s %s (status %d)\n%s%s", prog, arg ? arg : "", r->status,
		      r->out, r->err);
}

static void group(const char *name)
{
	struct mlt_run r;
	run("hpp_raii", name, 1, &r);
	char pass[64];
	snprintf(pass, sizeof pass, "PASS %s\n", name);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, pass));
	mlt_run_free(&r);
}

/* Status and exact counts after leave(), the destructor's leave, out of
 * order, refused entry, the global limit. */
static void scoped_limits(void **state)
{
	(void)state;
	group("scoped");
}

static void masked_block(void **state)
{
	(void)state;
	group("masked");
}

/* Ownership and move semantics: each token destroyed exactly once. */
static void token_moves(void **state)
{
	(void)state;
	group("token");
}

/* Exceptions unwinding through scoped limits leave them. */
static void leave_on_unwinding(void **state)
{
	(void)state;
	group("unwind");
}

static void function_forms(void **state)
{
	(void)state;
	group("functions");
}

/* Why memlimits.hpp documents a catch pattern: a handler inside the
 * interrupted limit that allocates throws again, and the program aborts;
 * the same handler masked works. */
static void catch_handler_inside_limit(void **state)
{
	(void)state;
	struct mlt_run r;
	run("hpp_raii", "catch-unmasked", 1, &r);
	assert_non_null(strstr(r.out, "handler entered"));
	assert_int_equal(r.status, 128 + SIGABRT);
	assert_non_null(strstr(r.err, "bad_alloc"));
	mlt_run_free(&r);
	run("hpp_raii", "catch-masked", 1, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "out of budget after"));
	assert_non_null(strstr(r.out, "PASS catch-masked"));
	mlt_run_free(&r);
}

static void example_cxx(void **state)
{
	(void)state;
	struct mlt_run r;
	run("example_cxx", NULL, 1, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "rejected (allocation limit reached)"));
	assert_non_null(strstr(r.out, "cancelled (token set)"));
	/* The masked handler inside the cancelled search logged. */
	assert_non_null(strstr(r.out, "log: search stopped after"));
	assert_non_null(strstr(r.out, "malformed: unknown macro $nope"));
	/* And the requests after the interrupted ones were served. */
	assert_non_null(strstr(r.out, "\"ok-ok-ok-\""));
	assert_non_null(strstr(r.out, "7 requests: 4 served, 2 stopped by a limit"));
	mlt_run_free(&r);
	/* Without the preload it says so and fails. */
	run("example_cxx", NULL, 0, &r);
	assert_int_not_equal(r.status, 0);
	assert_non_null(strstr(r.out, "not loaded"));
	mlt_run_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(scoped_limits),
		cmocka_unit_test(masked_block),
		cmocka_unit_test(token_moves),
		cmocka_unit_test(leave_on_unwinding),
		cmocka_unit_test(function_forms),
		cmocka_unit_test(catch_handler_inside_limit),
		cmocka_unit_test(example_cxx),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
