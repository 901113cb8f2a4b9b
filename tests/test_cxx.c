/* test_cxx: the library's C++ operators new and delete (preload/cxx.c).
 * The checks run in C++ helpers under the preload (tests/progs/cxx_ops.cc,
 * cxx_replaced.cc, and libcxxlocal.cc loaded by the C program cxx_local.c);
 * this program runs them and checks what a C program
 * must not see: libstdc++ is neither a dependency of the library nor loaded
 * into a C program that preloads it. The profiling build's sized delete of
 * sampled blocks is test_prof's (prof_cxx). */
#include "tests/harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>

#include "shim/memlimits.h"

static char *prog(const char *name)
{
	static char buf[4096];
	const char *dir = getenv("MLT_PROGS");
	snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "build/tests/progs", name);
	return buf;
}

/* Runs helper `name` with one argument under the preload, with env added;
 * it must exit 0 and print "0 failures". */
static void run_helper(const char *name, const char *arg, const char *const env[])
{
	char *argv[] = { prog(name), (char *)arg, NULL };
	struct mlt_run r;
	if (mlt_run_cmd(argv, env, 1, NULL, &r) != 0)
		fail_msg("cannot run %s", argv[0]);
	print_message("%s %s: status %d\n%s%s", name, arg ? arg : "", r.status,
		      r.out, r.err);
	bool ok = r.status == 0 && strstr(r.out, "\n0 failures\n");
	mlt_run_free(&r);
	assert_true(ok);
}

/* Each of the twenty forms is the library's, charges exactly what malloc's
 * family would (the request; above 16 bytes of alignment, the block's
 * usable size), aligns, and frees with each matching delete. */
static void every_form_is_ours_and_exact(void **state)
{
	(void)state;
	run_helper("cxx_ops", "forms", NULL);
}

/* A task's limit: std::bad_alloc after the new_handler, nullptr from the
 * nothrow forms. */
static void refusal_throws_bad_alloc(void **state)
{
	(void)state;
	run_helper("cxx_ops", "refuse", NULL);
}

/* The new_handler loop under MEMLIMITS_GLOBAL_MEMORY: freeing a reserve
 * makes the retry succeed; a handler's exception propagates. */
static void new_handler_loop(void **state)
{
	(void)state;
	const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=64M", NULL };
	run_helper("cxx_ops", "handler", env);
}

/* A program with its own operator new and delete keeps them for every form
 * (sized delete reaches its unsized one). */
static void program_operators_kept(void **state)
{
	(void)state;
	run_helper("cxx_replaced", NULL, NULL);
}

/* C++ code in a library a C program loaded with RTLD_LOCAL (a python
 * extension, say): its runtime is in no global scope, and is found in the
 * calling library's dependencies. */
static void runtime_in_a_local_scope(void **state)
{
	(void)state;
	char lib[4200];
	snprintf(lib, sizeof lib, "%s", prog("libcxxlocal.so"));
	run_helper("cxx_local", lib, NULL);
}

/* C programs pay nothing for the operators: no libstdc++ needed by the
 * library, none loaded into a C program. */
static void no_libstdcxx_in_c_programs(void **state)
{
	(void)state;
	struct mlt_run r;
	assert_int_equal(mlt_sh("readelf -d \"$MLT_LIB\"", NULL, 0, NULL, &r), 0);
	print_message("%s", r.out);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "(NEEDED)"));
	assert_null(strstr(r.out, "libstdc++"));
	assert_null(strstr(r.out, "libc++"));
	mlt_run_free(&r);
	/* This program is C, under the preload. */
	FILE *f = fopen("/proc/self/maps", "r");
	assert_non_null(f);
	char line[4096];
	bool preload = false, cxx = false;
	while (fgets(line, sizeof line, f)) {
		preload |= strstr(line, "libmemlimits") != NULL;
		cxx |= strstr(line, "libstdc++") != NULL;
	}
	fclose(f);
	assert_true(preload);
	assert_false(cxx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_form_is_ours_and_exact),
		cmocka_unit_test(refusal_throws_bad_alloc),
		cmocka_unit_test(new_handler_loop),
		cmocka_unit_test(program_operators_kept),
		cmocka_unit_test(runtime_in_a_local_scope),
		cmocka_unit_test(no_libstdcxx_in_c_programs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
