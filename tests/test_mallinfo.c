/* test_mallinfo: glibc's information and tuning calls (preload/mallinfo.c)
 * under the preload describe the heap in use (jemalloc's), where glibc's own
 * would report its unused arena: mallinfo2 and mallinfo follow a big block
 * in and out, malloc_stats and malloc_info print the same figures in glibc's
 * formats, malloc_trim gives free pages back, mallopt answers as glibc
 * does. */
#define _GNU_SOURCE
#include "tests/harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <limits.h>
#include <malloc.h>
#include <stdbool.h>

#include "shim/memlimits.h"

#define MiB ((size_t)1 << 20)

static char *volatile sink;

static void names_are_the_library_s(void **state)
{
	(void)state;
	static const char *const names[] = {
		"mallinfo", "mallinfo2", "malloc_stats", "malloc_info",
		"malloc_trim", "mallopt",
	};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		Dl_info info;
		void *f = dlsym(RTLD_DEFAULT, names[i]);
		assert_non_null(f);
		assert_true(dladdr(f, &info));
		assert_non_null(strstr(info.dli_fname, "libmemlimits"));
	}
}

static void mallinfo2_follows_the_heap(void **state)
{
	(void)state;
	struct mallinfo2 a = mallinfo2();
	char *big = malloc(32 * MiB);
	memset(big, 1, 32 * MiB);
	sink = big;
	struct mallinfo2 b = mallinfo2();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	struct mallinfo old = mallinfo(); /* the int form, deprecated */
#pragma GCC diagnostic pop
	free(big);
	struct mallinfo2 c = mallinfo2();
	print_message("uordblks %zu -> %zu -> %zu, arena %zu -> %zu -> %zu\n",
		      a.uordblks, b.uordblks, c.uordblks, a.arena, b.arena, c.arena);
	assert_true(b.uordblks >= a.uordblks + 32 * MiB);
	assert_true(b.uordblks < a.uordblks + 33 * MiB);
	assert_true(c.uordblks < b.uordblks - 31 * MiB);
	for (const struct mallinfo2 *m = &a; m <= &c; m += &c - &b) {
		assert_true(m->arena >= m->uordblks);
		assert_int_equal(m->fordblks, m->arena - m->uordblks);
	}
	/* the peak is the engine's */
	struct ml_stats s;
	assert_int_equal(ml_stats(&s), ML_OK);
	assert_int_equal(c.usmblks, (size_t)s.peak_bytes);
	assert_true(c.usmblks >= 32 * MiB);
	/* the int form: the same figures, clamped */
	assert_true(old.uordblks > 0 && (size_t)old.uordblks >= 32 * MiB);
	assert_true((size_t)old.arena >= (size_t)old.uordblks);
}

/* stderr captured while f runs. */
static char *capture_stderr(void (*f)(void))
{
	char path[] = "/tmp/mlt-stderr-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	f();
	dup2(saved, 2);
	close(saved);
	static char text[4096];
	ssize_t n = pread(fd, text, sizeof text - 1, 0);
	close(fd);
	text[n > 0 ? n : 0] = '\0';
	return text;
}

static unsigned long long after(const char *text, const char *label)
{
	const char *p = strstr(text, label);
	assert_non_null(p);
	return strtoull(p + strlen(label), NULL, 10);
}

static void malloc_stats_in_glibc_layout(void **state)
{
	(void)state;
	char *big = malloc(40 * MiB);
	sink = big;
	char *text = capture_stderr(malloc_stats);
	struct mallinfo2 m = mallinfo2();
	free(big);
	print_message("%s", text);
	assert_non_null(strstr(text, "Arena 0:\nsystem bytes     = "));
	assert_non_null(strstr(text, "Total (incl. mmap):\n"));
	unsigned long long in_use = after(strstr(text, "Total"), "in use bytes     =");
	unsigned long long system = after(strstr(text, "Total"), "system bytes     =");
	assert_true(in_use >= 40 * MiB);
	assert_true(system >= in_use);
	/* the same figure as mallinfo2's, give or take the stdio of this call */
	assert_true(in_use <= m.uordblks + MiB && m.uordblks <= in_use + MiB);
}

static unsigned long long xml_size(const char *xml, const char *elem)
{
	const char *p = strstr(xml, elem);
	assert_non_null(p);
	p = strstr(p, "size=\"");
	assert_non_null(p);
	return strtoull(p + 6, NULL, 10);
}

static void malloc_info_xml(void **state)
{
	(void)state;
	char *big = malloc(24 * MiB);
	sink = big;
	FILE *f = tmpfile();
	assert_non_null(f);
	fputs("before\n", f); /* what the caller buffered stays first */
	assert_int_equal(malloc_info(0, f), 0);
	struct mallinfo2 m = mallinfo2();
	free(big);
	rewind(f);
	static char xml[8192];
	size_t n = fread(xml, 1, sizeof xml - 1, f);
	xml[n] = '\0';
	fclose(f);
	print_message("%s", xml);
	assert_true(strncmp(xml, "before\n<malloc version=\"1\">\n", 28) == 0);
	assert_non_null(strstr(xml, "</malloc>\n"));
	unsigned long long current = xml_size(xml, "<system type=\"current\"");
	unsigned long long rest = xml_size(xml, "<total type=\"rest\"");
	assert_true(current >= 24 * MiB);
	assert_true(current - rest >= 24 * MiB); /* in use = system - free */
	assert_true(current <= m.arena + MiB && m.arena <= current + MiB);
	errno = 0;
	assert_int_equal(malloc_info(1, stdout), -1);
	assert_int_equal(errno, EINVAL);
}

static long resident_pages(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size = 0, resident = 0;
	assert_int_equal(fscanf(f, "%ld %ld", &size, &resident), 2);
	fclose(f);
	return resident;
}

static void malloc_trim_returns_pages(void **state)
{
	(void)state;
	/* Freed pages stay dirty in jemalloc for a while (decay), counted in
	 * keepcost; malloc_trim gives them back. */
	enum { N = 64 };
	char *blocks[N];
	for (int i = 0; i < N; i++) {
		blocks[i] = malloc(MiB);
		memset(blocks[i], 1, MiB);
	}
	for (int i = 0; i < N; i++)
		free(blocks[i]);
	struct mallinfo2 before = mallinfo2();
	long rss_before = resident_pages();
	int r = malloc_trim(0);
	struct mallinfo2 after_trim = mallinfo2();
	long rss_after = resident_pages();
	print_message("keepcost %zu -> %zu, resident pages %ld -> %ld, returned %d\n",
		      before.keepcost, after_trim.keepcost, rss_before, rss_after, r);
	assert_true(before.keepcost >= 32 * MiB);
	assert_int_equal(r, 1);
	assert_true(after_trim.keepcost < MiB);
	assert_true(rss_before - rss_after >= (long)(32 * MiB / (size_t)sysconf(_SC_PAGESIZE)));
	/* nothing left to give back */
	assert_int_equal(malloc_trim(0), 0);
}

static void mallopt_answers_as_glibc(void **state)
{
	(void)state;
	const char *dir = getenv("MLT_PROGS");
	char path[4096];
	snprintf(path, sizeof path, "%s/mallopt_probe", dir ? dir : "build/tests/progs");
	char *argv[] = { path, NULL };
	struct mlt_run glibc, ours;
	assert_int_equal(mlt_run_cmd(argv, NULL, 0, NULL, &glibc), 0);
	assert_int_equal(mlt_run_cmd(argv, NULL, 1, NULL, &ours), 0);
	print_message("glibc:\n%s\nmemlimits:\n%s", glibc.out, ours.out);
	assert_int_equal(glibc.status, 0);
	assert_int_equal(ours.status, 0);
	assert_true(glibc.out_len > 100);
	assert_string_equal(glibc.out, ours.out);
	mlt_run_free(&glibc);
	mlt_run_free(&ours);
	/* and the library's is the one this program calls */
	assert_int_equal(mallopt(M_MXFAST, 161), 0);
	assert_int_equal(mallopt(M_ARENA_MAX, 1), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(names_are_the_library_s),
		cmocka_unit_test(mallinfo2_follows_the_heap),
		cmocka_unit_test(malloc_stats_in_glibc_layout),
		cmocka_unit_test(malloc_info_xml),
		cmocka_unit_test(malloc_trim_returns_pages),
		cmocka_unit_test(mallopt_answers_as_glibc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
