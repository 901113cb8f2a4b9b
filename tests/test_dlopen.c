/* test_dlopen: libraries loaded with RTLD_DEEPBIND get the library's malloc
 * (preload/dlopen.c drops the flag). A C program and its DEEPBIND library
 * pass blocks both ways (tests/progs/deepbind.c); php, which loads its
 * extensions that way, runs with Debian's php.ini and with -n; the note on
 * stderr appears once with MEMLIMITS_REPORT set and never without. */
#include "tests/harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>

#define NOTE "without RTLD_DEEPBIND"

static char *prog(const char *name)
{
	static char buf[4096];
	const char *dir = getenv("MLT_PROGS");
	snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "build/tests/progs", name);
	return buf;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static void show(const char *what, const struct mlt_run *r)
{
	print_message("%s: status %d\nstdout: %.2000s\nstderr: %.2000s\n", what,
		      r->status, r->out, r->err);
}

static void deepbind_library_shares_the_heap(void **state)
{
	(void)state;
	char *argv[] = { prog("deepbind"), NULL };
	struct mlt_run r;
	assert_int_equal(mlt_run_cmd(argv, NULL, 1, NULL, &r), 0);
	show("deepbind", &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "\n0 failures\n"));
	assert_int_equal(count(r.err, NOTE), 0); /* no MEMLIMITS_REPORT: silent */
	mlt_run_free(&r);

	const char *env[] = { "MEMLIMITS_REPORT=/dev/null", NULL };
	assert_int_equal(mlt_run_cmd(argv, env, 1, NULL, &r), 0);
	show("deepbind, MEMLIMITS_REPORT set", &r);
	assert_int_equal(r.status, 0);
	assert_int_equal(count(r.err, NOTE), 1);
	assert_non_null(strstr(r.err, "libdeep.so"));
	mlt_run_free(&r);
}

/* Without RTLD_DEEPBIND nothing changes and nothing is said. */
static void plain_dlopen_untouched(void **state)
{
	(void)state;
	char lib[4200];
	snprintf(lib, sizeof lib, "%s", prog("libdeep.so"));
	char cmd[8600];
	snprintf(cmd, sizeof cmd,
		 "python3 -c 'import ctypes; l = ctypes.CDLL(\"%s\"); "
		 "l.deep_malloc.restype = ctypes.c_void_p; "
		 "l.deep_free.argtypes = [ctypes.c_void_p]; "
		 "p = l.deep_malloc(10); l.deep_free(p); print(\"done\")'", lib);
	const char *env[] = { "MEMLIMITS_REPORT=/dev/null", NULL };
	struct mlt_run r;
	assert_int_equal(mlt_sh(cmd, env, 1, NULL, &r), 0);
	show("ctypes", &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "done"));
	assert_int_equal(count(r.err, NOTE), 0);
	mlt_run_free(&r);
}

static void php_runs(const char *const *args, bool report)
{
	char *argv[8];
	size_t k = 0;
	argv[k++] = "php";
	for (; *args && k < 7; args++)
		argv[k++] = (char *)*args;
	argv[k] = NULL;
	const char *env[] = { "MEMLIMITS_REPORT=/dev/null", NULL };
	struct mlt_run r;
	assert_int_equal(mlt_run_cmd(argv, report ? env : NULL, 1, NULL, &r), 0);
	show(argv[1], &r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "1");
	if (!report)
		assert_int_equal(r.err_len, 0);
	mlt_run_free(&r);
}

/* Debian's php.ini loads extensions (opcache, ...) with RTLD_DEEPBIND: it
 * crashed at start-up under the preload. */
static void php_default_ini(void **state)
{
	(void)state;
	const char *args[] = { "-r", "echo 1;", NULL };
	php_runs(args, false);
	php_runs(args, true);
	/* The ini really loads extensions that way: the note names one. */
	const char *env[] = { "MEMLIMITS_REPORT=/dev/null", NULL };
	char *argv[] = { "php", "-r", "echo 1;", NULL };
	struct mlt_run r;
	assert_int_equal(mlt_run_cmd(argv, env, 1, NULL, &r), 0);
	assert_int_equal(count(r.err, NOTE), 1);
	assert_non_null(strstr(r.err, ".so"));
	mlt_run_free(&r);
}

static void php_no_ini(void **state)
{
	(void)state;
	const char *args[] = { "-n", "-r", "echo 1;", NULL };
	php_runs(args, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(deepbind_library_shares_the_heap),
		cmocka_unit_test(plain_dlopen_untouched),
		cmocka_unit_test(php_default_ini),
		cmocka_unit_test(php_no_ini),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
