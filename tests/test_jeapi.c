/* test_jeapi: jemalloc's own API (preload/jeapi.c) for a program linked
 * with Debian's libjemalloc.so.2, as redis-server is: run under the preload,
 * mallocx, mallctl and the rest must be the library's embedded jemalloc's,
 * not the second, empty one that libjemalloc.so.2 brings. Blocks cross
 * between the two APIs, the statistics describe the heap in use, and the
 * allocating calls are charged and limited like malloc and realloc. Last,
 * redis-server itself under the preload. (The profiling build's sampled
 * blocks through this API: test_prof, prof_jeapi.) */
#include "tests/harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <jemalloc/jemalloc.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>

#include "shim/memlimits.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static void *volatile sink;

static uint64_t counted(void)
{
	struct ml_stats s;
	assert_int_equal(ml_stats(&s), ML_OK);
	return s.thread_allocated;
}

static bool all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* The names resolve to the library, not to libjemalloc.so.2. */
static void api_is_the_library_s(void **state)
{
	(void)state;
	static const char *const names[] = {
		"mallocx", "rallocx", "xallocx", "sallocx", "dallocx", "sdallocx",
		"nallocx", "mallctl", "mallctlnametomib", "mallctlbymib",
		"malloc_stats_print",
	};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		void *f = dlsym(RTLD_DEFAULT, names[i]);
		Dl_info info;
		assert_non_null(f);
		assert_true(dladdr(f, &info));
		print_message("%s: %s\n", names[i], info.dli_fname);
		assert_non_null(strstr(info.dli_fname, "libmemlimits"));
	}
}

/* Blocks go between the two APIs both ways, with every flag. */
static void blocks_cross_apis(void **state)
{
	(void)state;
	static const size_t sizes[] = { 1, 8, 100, 4096, 70000, 3 * MiB };
	static const int flags[] = {
		0, MALLOCX_ALIGN(64), MALLOCX_ALIGN(8192), MALLOCX_ZERO,
		MALLOCX_TCACHE_NONE, MALLOCX_ARENA(0), MALLOCX_ZERO | MALLOCX_ALIGN(4096),
	};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
		for (size_t k = 0; k < sizeof flags / sizeof *flags; k++) {
			size_t n = sizes[i];
			int f = flags[k];
			unsigned char *p = mallocx(n, f);
			assert_non_null(p);
			size_t lg = (size_t)f & 0x3f;
			if (lg)
				assert_int_equal((uintptr_t)p & (((size_t)1 << lg) - 1), 0);
			if (f & MALLOCX_ZERO)
				assert_true(all_zero(p, n));
			assert_int_equal(sallocx(p, 0), malloc_usable_size(p));
			assert_true(sallocx(p, 0) >= n);
			assert_int_equal(nallocx(n, f & 0x3f), sallocx(p, 0));
			memset(p, 0xa5, n);
			switch ((i + k) % 3) {
			case 0: free(p); break;
			case 1: dallocx(p, f & MALLOCX_TCACHE_NONE); break;
			default: sdallocx(p, n, f & 0x3f); break;
			}
			/* and a malloc'd block freed by jemalloc's calls */
			p = malloc(n);
			assert_non_null(p);
			assert_int_equal(sallocx(p, 0), malloc_usable_size(p));
			if (k % 2)
				dallocx(p, 0);
			else
				sdallocx(p, n, 0);
		}
	/* rallocx and xallocx on malloc'd blocks, content kept */
	char *p = malloc(100);
	memset(p, 7, 100);
	p = rallocx(p, 100000, 0);
	assert_non_null(p);
	for (int i = 0; i < 100; i++)
		assert_int_equal(p[i], 7);
	size_t got = xallocx(p, 200000, 0, 0);
	assert_true(got >= 100000);
	assert_int_equal(got, sallocx(p, 0));
	p = realloc(p, 50);
	free(p);
}

/* mallctl's statistics are the heap the program uses. */
static void mallctl_sees_the_heap(void **state)
{
	(void)state;
	uint64_t epoch = 1;
	size_t len = sizeof epoch, a = 0, b = 0, c = 0, alen = sizeof a;
	/* Blocks in this thread's cache count as allocated in jemalloc's
	 * statistics (the library lets threads cache blocks up to 1 MiB):
	 * flush it before each reading. */
	assert_int_equal(mallctl("thread.tcache.flush", NULL, NULL, NULL, 0), 0);
	assert_int_equal(mallctl("epoch", &epoch, &len, &epoch, len), 0);
	assert_int_equal(mallctl("stats.allocated", &a, &alen, NULL, 0), 0);
	char *big = malloc(64 * MiB);
	sink = big;
	assert_int_equal(mallctl("thread.tcache.flush", NULL, NULL, NULL, 0), 0);
	assert_int_equal(mallctl("epoch", &epoch, &len, &epoch, len), 0);
	assert_int_equal(mallctl("stats.allocated", &b, &alen, NULL, 0), 0);
	print_message("stats.allocated %zu -> %zu\n", a, b);
	assert_true(b >= a + 64 * MiB);
	assert_true(b < a + 65 * MiB);
	/* The same figure by MIB. */
	size_t mib[4], miblen = 4;
	assert_int_equal(mallctlnametomib("stats.allocated", mib, &miblen), 0);
	assert_int_equal(mallctlbymib(mib, miblen, &c, &alen, NULL, 0), 0);
	assert_int_equal(c, b);
	/* The version is the embedded one (5.3, as Debian's). */
	const char *version = NULL;
	len = sizeof version;
	assert_int_equal(mallctl("version", &version, &len, NULL, 0), 0);
	assert_non_null(version);
	free(big);
}

static void collect(void *arg, const char *text)
{
	struct mlt_run *r = arg;
	size_t cap = r->out_len + strlen(text) + 1;
	r->out = realloc(r->out, cap);
	memcpy(r->out + r->out_len, text, strlen(text) + 1);
	r->out_len += strlen(text);
}

static void stats_print_describes_the_heap(void **state)
{
	(void)state;
	char *big = malloc(48 * MiB);
	sink = big;
	struct mlt_run r;
	memset(&r, 0, sizeof r);
	malloc_stats_print(collect, &r, "J"); /* JSON */
	free(big);
	assert_non_null(r.out);
	/* "allocated": the figure of the merged stats, at least the 48 MiB */
	const char *p = strstr(r.out, "\"allocated\":");
	assert_non_null(p);
	unsigned long long allocated = strtoull(p + strlen("\"allocated\":"), NULL, 10);
	print_message("malloc_stats_print: allocated %llu\n", allocated);
	assert_true(allocated >= 48 * MiB);
	free(r.out);
}

/* Charged like malloc and realloc: requested bytes, and for a resize what
 * the block's usable size grew by; and refused by a limit. */
static void charged_and_limited(void **state)
{
	(void)state;
	assert_true(ml_start() == ML_OK || ml_start() == ML_INVALID);
	uint64_t a = counted();
	void *p = mallocx(1000, MALLOCX_ZERO);
	sink = p;
	assert_int_equal(counted() - a, 1000);
	a = counted();
	size_t have = sallocx(p, 0);
	p = rallocx(p, 50000, 0);
	/* what the usable size grew by, at most the 50000 asked for */
	size_t g = sallocx(p, 0) - have;
	assert_int_equal(counted() - a, g < 50000 ? g : 50000);
	/* xallocx: what it grew by; nothing when it could not grow in place.
	 * Sizes until one grows. */
	bool grew = false;
	for (size_t n = 16 * KiB; n <= 8 * MiB; n *= 2) {
		void *x = mallocx(n, 0);
		have = sallocx(x, 0);
		a = counted();
		size_t got = xallocx(x, 2 * n, 100, 0);
		uint64_t charged = counted() - a;
		print_message("xallocx %zu -> %zu, charged %llu\n", have, got,
			      (unsigned long long)charged);
		assert_int_equal(charged, got > have ? got - have : 0);
		grew |= got > have;
		dallocx(x, 0);
	}
	assert_true(grew);
	dallocx(p, 0);
	/* xallocx returns the block's size and charges its growth: jemalloc
	 * 5.3's own can grow a block and return its old size (26 times over
	 * these sizes; mallocx(28672), xallocx(p, 70009, 199998, 0) gave
	 * 28672 for a block of 81920). */
	int wrong = 0;
	for (size_t n = 16 * KiB; n <= 512 * KiB; n += 12 * KiB)
		for (size_t m = n + 1; m < 4 * n; m += n / 3 + 777)
			for (size_t extra = 0; extra < 200000; extra += 33333) {
				void *x = mallocx(n, 0);
				have = sallocx(x, 0);
				a = counted();
				size_t got = xallocx(x, m, extra, 0);
				uint64_t charged = counted() - a;
				size_t grown = got > have ? got - have : 0;
				wrong += got != sallocx(x, 0);
				wrong += charged != (grown < m + extra ? grown : m + extra);
				dallocx(x, 0);
			}
	assert_int_equal(wrong, 0);

	ml_scope s;
	uint64_t used = 0;
	assert_int_equal(ml_enter_allocations(&s, 4096), ML_OK);
	void *q = mallocx(8192, 0);
	sink = q;
	assert_int_equal(ml_leave(&s, &used), ML_ALLOCATION_LIMIT);
	assert_null(q);

	/* rallocx's growth refused: the old block stays; xallocx's too: the
	 * block stays as it was */
	char *r = mallocx(100, 0);
	memset(r, 3, 100);
	have = sallocx(r, 0);
	assert_int_equal(ml_enter_allocations(&s, 4096), ML_OK);
	void *r2 = rallocx(r, 10000, 0);
	sink = r2;
	size_t x = xallocx(r, 20000, 0, 0);
	assert_int_equal(ml_leave(&s, &used), ML_ALLOCATION_LIMIT);
	assert_null(r2);
	assert_int_equal(x, have);
	assert_int_equal(sallocx(r, 0), have);
	for (int i = 0; i < 100; i++)
		assert_int_equal(r[i], 3);
	sdallocx(r, 100, 0);
}

/* ---- redis-server ------------------------------------------------------- */

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		return -1;
	close(fd);
	return ntohs(a.sin_port);
}

/* "name:value" of an INFO reply. */
static long long info_field(const char *info, const char *name)
{
	char key[64];
	snprintf(key, sizeof key, "\n%s:", name);
	const char *p = strstr(info, key);
	return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

struct redis {
	pid_t pid;    /* 0 once it has exited */
	int port;
	char log[64]; /* its stdout and stderr */
};

/* Starts redis-server on a free loopback port, without persistence, under
 * the preload with env; waits until it answers PING. */
static bool redis_start(struct redis *rd, const char *const env[])
{
	rd->port = free_port();
	if (rd->port < 0)
		return false;
	char port[16], cmd[512];
	snprintf(port, sizeof port, "%d", rd->port);
	extern char **environ;
	char *e[512];
	size_t k = 0;
	static char pre[4200];
	snprintf(pre, sizeof pre, "LD_PRELOAD=%s", mlt_lib());
	for (char **v = environ; *v && k < 500; v++)
		if (strncmp(*v, "MEMLIMITS_", 10) && strncmp(*v, "LD_PRELOAD=", 11))
			e[k++] = *v;
	e[k++] = pre;
	for (size_t i = 0; env && env[i]; i++)
		e[k++] = (char *)env[i];
	e[k] = NULL;
	snprintf(rd->log, sizeof rd->log, "/tmp/mlt-redis-%d.log", (int)getpid());
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, rd->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	char *argv[] = { "redis-server", "--port", port, "--bind", "127.0.0.1",
			 "--save", "", "--appendonly", "no", "--daemonize", "no",
			 "--loglevel", "warning", "--crash-memcheck-enabled", "no",
			 NULL };
	int rc = posix_spawnp(&rd->pid, argv[0], &fa, NULL, argv, e);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return false;
	snprintf(cmd, sizeof cmd, "redis-cli -p %d PING", rd->port);
	for (int i = 0; i < 100; i++) {
		struct mlt_run r;
		if (mlt_sh(cmd, NULL, 0, NULL, &r) == 0) {
			bool up = strstr(r.out, "PONG") != NULL;
			mlt_run_free(&r);
			if (up)
				return true;
		}
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return false;
}

/* Stops it (if still running); returns its log, malloc'd. */
static char *redis_stop(struct redis *rd)
{
	if (rd->pid > 0) {
		kill(rd->pid, SIGTERM);
		int st;
		waitpid(rd->pid, &st, 0);
	}
	char *text = calloc(1, 1 << 20);
	FILE *f = fopen(rd->log, "r");
	if (f) {
		size_t n = fread(text, 1, (1 << 20) - 1, f);
		text[n] = '\0';
		fclose(f);
	}
	unlink(rd->log);
	print_message("redis-server's output:\n%.3000s\n", text);
	return text;
}

static void redis_cli(const struct redis *rd, const char *args, struct mlt_run *r)
{
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "redis-cli -p %d %s", rd->port, args);
	assert_int_equal(mlt_sh(cmd, NULL, 0, NULL, r), 0);
	print_message("redis-cli %s: %s%s", args, r->out, r->err);
}

/* redis reads its allocator's figures with mallctl: they must be those of
 * the heap it uses (they were 28672 beside a used_memory of 38 MB). */
static void redis_info_memory(void **state)
{
	(void)state;
	struct redis rd;
	assert_true(redis_start(&rd, NULL));
	struct mlt_run r;
	/* 20 MB of values */
	redis_cli(&rd, "EVAL \"for i=1,2000 do redis.call('SET', 'k'..i, "
		       "string.rep('x', 10000)) end return 1\" 0", &r);
	mlt_run_free(&r);
	/* INFO's allocator_* figures are those of redis's last cron run (hz
	 * 10): asked at once, they may predate the values (1.8 MB beside 21.6:
	 * 1 run in 4 on a quiet machine). Let a run or two pass. */
	struct timespec cron = { 0, 300 * 1000 * 1000 };
	nanosleep(&cron, NULL);
	redis_cli(&rd, "INFO memory", &r);
	long long used = info_field(r.out, "used_memory");
	long long alloc = info_field(r.out, "allocator_allocated");
	print_message("used_memory %lld, allocator_allocated %lld\n", used, alloc);
	mlt_run_free(&r);
	free(redis_stop(&rd));
	assert_true(used > 20000000);
	/* within 10% of each other (jemalloc's size classes, redis's own
	 * estimate of its overheads) */
	assert_true(alloc > used - used / 10 && alloc < used + used / 10);
}

/* Under MEMLIMITS_GLOBAL_MEMORY=64M a 100 MB value gets redis's own
 * out-of-memory handling: a script's allocation fails with Lua's "not
 * enough memory" and redis serves on; a value the server itself allocates
 * makes it abort with its "OUT OF MEMORY" report, as it does when malloc
 * fails. */
static void redis_global_limit(void **state)
{
	(void)state;
	struct redis rd;
	const char *env[] = { "MEMLIMITS_GLOBAL_MEMORY=64M", NULL };
	assert_true(redis_start(&rd, env));
	struct mlt_run r;
	redis_cli(&rd, "EVAL \"redis.call('SET', 'big', string.rep('x', 100000000)) "
		       "return 1\" 0", &r);
	bool lua_oom = strstr(r.out, "not enough memory") != NULL;
	mlt_run_free(&r);
	redis_cli(&rd, "SET small 1", &r);
	bool serves = strstr(r.out, "OK") != NULL;
	mlt_run_free(&r);
	redis_cli(&rd, "SETRANGE big 99999999 x", &r);
	mlt_run_free(&r);
	int st;
	bool exited = false;
	for (int i = 0; i < 100 && !exited; i++) {
		exited = waitpid(rd.pid, &st, WNOHANG) == rd.pid;
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (exited)
		rd.pid = 0; /* nothing left to stop */
	char *log = redis_stop(&rd);
	assert_true(lua_oom);
	assert_true(serves);
	assert_true(exited);
	assert_non_null(strstr(log, "MEMLIMITS_GLOBAL_MEMORY=64.0 MiB reached"));
	assert_non_null(strstr(log, "Out Of Memory allocating 100000010 bytes"));
	assert_non_null(strstr(log, "Redis aborting for OUT OF MEMORY"));
	free(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(api_is_the_library_s),
		cmocka_unit_test(blocks_cross_apis),
		cmocka_unit_test(mallctl_sees_the_heap),
		cmocka_unit_test(stats_print_describes_the_heap),
		cmocka_unit_test(charged_and_limited),
		cmocka_unit_test(redis_info_memory),
		cmocka_unit_test(redis_global_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
