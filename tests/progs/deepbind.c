/* deepbind: dlopen with RTLD_DEEPBIND of a library that mallocs and frees
 * across the boundary (tests/progs/libdeep.c), under the preload. Blocks go
 * both ways (malloc here, free there; malloc, realloc, strdup there, free
 * here) and the library's allocations are charged by the engine, exactly:
 * they reached this library's malloc, not glibc's. The library is named
 * without a directory: this program's RUNPATH ($ORIGIN) finds it, which
 * only works if dlopen still sees this program as its caller. Prints "ok"/
 * "FAIL" lines and "N failures"; exit 0 iff none failed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

static int failures;

static void check(int ok, const char *what)
{
	printf("%s: %s\n", ok ? "ok" : "FAIL", what);
	if (!ok)
		failures++;
}

static uint64_t counted(void)
{
	struct ml_stats s;
	return ml_stats(&s) == ML_OK ? s.thread_allocated : 0;
}

static void *volatile sink;

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "libdeep.so";
	void *h = dlopen(name, RTLD_NOW | RTLD_DEEPBIND);
	if (!h) {
		printf("FAIL: dlopen(%s): %s\n1 failures\n", name, dlerror());
		return 1;
	}
	void *(*d_malloc)(size_t) = (void *(*)(size_t))dlsym(h, "deep_malloc");
	void (*d_free)(void *) = (void (*)(void *))dlsym(h, "deep_free");
	void *(*d_realloc)(void *, size_t) = (void *(*)(void *, size_t))dlsym(h, "deep_realloc");
	char *(*d_strdup)(const char *) = (char *(*)(const char *))dlsym(h, "deep_strdup");
	if (!d_malloc || !d_free || !d_realloc || !d_strdup) {
		printf("FAIL: dlsym\n1 failures\n");
		return 1;
	}
	for (int i = 0; i < 100; i++) {
		char *p = malloc(100 + i);
		memset(p, 1, 100 + i);
		d_free(p);
	}
	check(1, "blocks of the program freed by the library");
	uint64_t a = counted();
	char *q = d_malloc(1000);
	sink = q;
	check(counted() - a == 1000, "the library's malloc charged exactly 1000 bytes");
	q = d_realloc(q, 100000);
	sink = q;
	free(q);
	char *s = d_strdup("deep");
	check(s && strcmp(s, "deep") == 0, "strdup in the library");
	free(s);
	for (int i = 0; i < 100; i++)
		free(d_malloc(200 + i));
	check(1, "blocks of the library freed by the program");
	dlclose(h);
	printf("%d failures\n", failures);
	return failures ? 1 : 0;
}
