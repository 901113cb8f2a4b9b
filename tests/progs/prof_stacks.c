/* prof_stacks: the call stacks the profiler gives (core/unwind.c, a cached
 * unwinder) are those of glibc's backtrace(), in every kind of frame: plain
 * and deep calls, libc calling back into the program, a thread, a
 * realigned stack, a signal handler, code in no object (a JIT's), and a
 * library unloaded and replaced by another at the same address. At rate 1 every allocation is sampled;
 * the callback takes its own backtrace(), finds the sample's first frame
 * in it and compares the rest. Prints "SCENARIO_compared=N" and
 * "SCENARIO_bad=M" lines for test_prof.c. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "shim/memlimits.h"

#define NOINLINE __attribute__((noinline))
#define DEPTH ML_MAX_CALLSTACK

static int compared, bad;
static const void *second_frame; /* the sample's callstack[1] */

static void report_mismatch(const ml_sample *s, void **bt, int n, int at)
{
	fprintf(stderr, "stack mismatch (depth %zu, backtrace from %d of %d):\n",
		s->depth, at, n);
	for (size_t k = 0; k < s->depth || (int)k + at < n; k++)
		fprintf(stderr, "  %2zu %18p %18p\n", k,
			k < s->depth ? s->callstack[k] : NULL,
			(int)k + at < n ? bt[k + at] : NULL);
}

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)data;
	void *bt[256];
	int n = backtrace(bt, 256);
	int at = 0;
	while (at < n && bt[at] != s->callstack[0])
		at++;
	size_t want = (size_t)(n - at) < DEPTH ? (size_t)(n - at) : DEPTH;
	bool ok = at < n && s->depth == want;
	for (size_t k = 0; ok && k < want; k++)
		ok = s->callstack[k] == bt[at + k];
	if (!ok && bad++ == 0)
		report_mismatch(s, bt, n, at);
	compared++;
	second_frame = s->depth > 1 ? s->callstack[1] : NULL;
	return NULL;
}

static void show(const char *scenario)
{
	printf("%s_compared=%d\n%s_bad=%d\n", scenario, compared, scenario, bad);
	compared = bad = 0;
}

static NOINLINE void *alloc_here(size_t n)
{
	void *p = malloc(n);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

static NOINLINE int recurse(int depth)
{
	if (depth == 0) {
		free(alloc_here(24));
		return 1;
	}
	int r = recurse(depth - 1);
	__asm__ volatile("" ::: "memory");
	return r + 1;
}

static int by_value(const void *a, const void *b)
{
	free(alloc_here(16)); /* called from libc's qsort */
	return *(const int *)a - *(const int *)b;
}

static void *thread_main(void *arg)
{
	recurse(7);
	return arg;
}

static NOINLINE int realigned(void)
{
	_Alignas(64) volatile char buf[64];
	buf[0] = 0;
	free(alloc_here(32));
	buf[1] = 1;
	return buf[0] + buf[1];
}

static void on_signal(int sig)
{
	(void)sig;
	free(alloc_here(48)); /* through the kernel's signal frame */
}

/* Calls fn(n) from code in anonymous memory, which has no unwind table. */
static void *via_jit(void *(*fn)(size_t), size_t n)
{
	static const unsigned char code[] = {
		0x48, 0x83, 0xec, 0x08, /* sub $8, %rsp */
		0xff, 0xd6,             /* call *%rsi */
		0x48, 0x83, 0xc4, 0x08, /* add $8, %rsp */
		0xc3,                   /* ret */
	};
	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return NULL;
	memcpy(page, code, sizeof code);
	if (mprotect(page, 4096, PROT_READ | PROT_EXEC) != 0)
		return NULL;
	void *(*stub)(size_t, void *(*)(size_t)) =
		(void *(*)(size_t, void *(*)(size_t)))page;
	void *p = stub(n, fn);
	munmap(page, 4096);
	return p;
}

static const void *via_library(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "%s\n", dlerror());
		exit(2);
	}
	void *(*call)(void *(*)(size_t), size_t) =
		(void *(*)(void *(*)(size_t), size_t))dlsym(h, "stk_call");
	free(call(alloc_here, 40));
	const void *ret = second_frame; /* the return address into stk_call */
	dlclose(h);
	return ret;
}

int main(int argc, char **argv)
{
	(void)argc;
	ml_tracker tr = { on_alloc, NULL, NULL };
	ml_status st = ml_memprof_start(1.0, DEPTH, &tr);
	printf("start=%d\n", (int)st);
	if (st != ML_OK)
		return 1;

	free(alloc_here(8));
	show("plain");

	for (int d = 0; d < 100; d += 9)
		recurse(d);
	show("deep");

	int v[64];
	for (int i = 0; i < 64; i++)
		v[i] = (i * 37) % 64;
	qsort(v, 64, sizeof v[0], by_value);
	free(strdup("from libc"));
	show("libc");

	pthread_t th;
	pthread_create(&th, NULL, thread_main, NULL);
	pthread_join(th, NULL);
	show("thread");

	realigned();
	show("realigned");

	signal(SIGUSR1, on_signal);
	raise(SIGUSR1);
	show("signal");

#if defined(__x86_64__)
	void *j = via_jit(alloc_here, 56);
	printf("jit_ran=%d\n", j != NULL);
	free(j);
	show("jit");
#endif

	char *dir = dirname(strdup(argv[0]));
	const void *a = via_library(dir, "libstk_small.so");
	const void *b = via_library(dir, "libstk_big.so");
	printf("dl_same_address=%d\n", a == b);
	show("dl");

	ml_memprof_stop();
	return 0;
}
