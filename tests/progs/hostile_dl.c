/* hostile_dl LIB [N]: dlopen/dlclose LIB (libhostile_ctor.so) N times
 * (default 50), from main and from threads, once inside an allocation task.
 * Checks each time that the library's constructor saw its allocations
 * counted exactly (hostile_ctor_counted == hostile_ctor_expected), that an
 * allocation from library code counts exactly, that the destructor ran, and
 * at the end that no live heap was lost in accounting (live_bytes within
 * 1 MiB of its value after the first cycle). "FAIL ..." on stderr for each
 * failure; exit 0 iff none. alarm(60) is the watchdog. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim/memlimits.h"

#define MiB ((int64_t)1 << 20)

#include "hostile.h"

static const char *lib;

struct cycle {
	unsigned i;
	uint64_t ctor_total; /* thread_allocated growth across dlopen */
};

static void *lib_thread(void *arg)
{
	int (*touch)(void) = (int (*)(void))arg;
	touch();
	return NULL;
}

/* One dlopen/use/dlclose cycle in the calling thread. */
static void *cycle(void *arg)
{
	struct cycle *c = arg;
	struct ml_stats a, b;
	ml_stats(&a);
	void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	ml_stats(&b);
	if (!h) {
		fail("cycle %u: dlopen: %s", c->i, dlerror());
		return NULL;
	}
	c->ctor_total = b.thread_allocated - a.thread_allocated;
	uint64_t *counted = dlsym(h, "hostile_ctor_counted");
	uint64_t *expected = dlsym(h, "hostile_ctor_expected");
	int *failed = dlsym(h, "hostile_ctor_failed");
	uint64_t (*bytes)(void) = (uint64_t (*)(void))dlsym(h, "hostile_ctor_bytes");
	void *(*alloc)(size_t) = (void *(*)(size_t))dlsym(h, "hostile_ctor_alloc");
	int (*touch)(void) = (int (*)(void))dlsym(h, "hostile_ctor_touch_tls");
	void (*set_counter)(int *) = (void (*)(int *))dlsym(h, "hostile_ctor_set_counter");
	if (!counted || !expected || !failed || !bytes || !alloc || !touch || !set_counter) {
		fail("cycle %u: dlsym", c->i);
		dlclose(h);
		return NULL;
	}
	CHECK(!*failed, "cycle %u: the constructor's allocations failed", c->i);
	CHECK(*counted == *expected,
	      "cycle %u: the constructor's allocations raised thread_allocated by "
	      "%llu, want %llu", c->i, (unsigned long long)*counted,
	      (unsigned long long)*expected);
	CHECK(c->ctor_total >= *expected,
	      "cycle %u: dlopen raised thread_allocated by %llu, less than the "
	      "constructor's %llu", c->i, (unsigned long long)c->ctor_total,
	      (unsigned long long)*expected);
	/* An allocation from library code counts exactly. */
	ml_stats(&a);
	void *p = alloc(12345);
	ml_stats(&b);
	CHECK(p && b.thread_allocated - a.thread_allocated == 12345,
	      "cycle %u: 12345 bytes from the library counted as %llu", c->i,
	      (unsigned long long)(b.thread_allocated - a.thread_allocated));
	free(p);
	touch();
	/* A thread that uses the library's TLS and key, and exits. */
	pthread_t th;
	if (pthread_create(&th, NULL, lib_thread, (void *)touch))
		fail("cycle %u: pthread_create", c->i);
	else
		pthread_join(th, NULL);
	int dtor_runs = 0;
	set_counter(&dtor_runs);
	CHECK(dlclose(h) == 0, "cycle %u: dlclose: %s", c->i, dlerror());
	CHECK(dtor_runs == 1, "cycle %u: the destructor ran %d times", c->i, dtor_runs);
	return NULL;
}

int main(int argc, char **argv)
{
	alarm(60);
	if (argc < 2) {
		fprintf(stderr, "usage: %s LIB [N]\n", argv[0]);
		return 2;
	}
	lib = argv[1];
	unsigned n = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 50;
	ml_status st = ml_start();
	CHECK(st == ML_OK || st == ML_INVALID, "ml_start: %d", st);
	struct ml_stats base, end;
	struct cycle c = { 0 };
	cycle(&c); /* the first cycle may leave ld.so's caches behind */
	ml_stats(&base);
	for (unsigned i = 1; i <= n; i++) {
		c = (struct cycle){ .i = i };
		if (i % 5 == 1) {
			/* From inside an allocation task: the task counts what
			 * dlopen and the constructor allocated. */
			uint64_t used = 0;
			st = ml_limit_allocations((uint64_t)64 << 20, cycle, &c, NULL, &used);
			CHECK(st == ML_OK, "cycle %u: task returned %d", i, st);
			CHECK(used >= c.ctor_total + 12345,
			      "cycle %u: the task counted %llu bytes, dlopen alone %llu", i,
			      (unsigned long long)used, (unsigned long long)c.ctor_total);
		} else if (i % 5 == 2) {
			pthread_t th;
			if (pthread_create(&th, NULL, cycle, &c))
				fail("cycle %u: pthread_create", i);
			else
				pthread_join(th, NULL);
		} else
			cycle(&c);
	}
	ml_stats(&end);
	int64_t drift = end.live_bytes - base.live_bytes;
	CHECK(drift < MiB && drift > -MiB,
	      "live_bytes moved by %lld over %u dlopen/dlclose cycles", (long long)drift, n);
	printf("hostile_dl: %u cycles, live drift %lld, %d failures\n", n, (long long)drift,
	       atomic_load(&failures));
	return atomic_load(&failures) ? 1 : 0;
}
