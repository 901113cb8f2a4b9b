/* hostile_atexit: allocation at exit, around the engine's exit report
 * (MEMLIMITS_REPORT set by the caller). Exit handlers registered from a
 * constructor, from main and from a handler during exit, destructors (one of
 * which creates a thread), all allocate and run tasks; two threads keep
 * allocating inside tasks while main exits, so they allocate during and
 * after the report. Run it with libhostile_exit.so preloaded after
 * libmemlimits.so for a handler that runs after the report.
 *
 * Each handler says "hostile_atexit: NAME ok" (or "NAME FAILED: why") on
 * stderr; main returns 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim/memlimits.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static void say(const char *s)
{
	if (write(2, s, strlen(s)) < 0)
		_exit(98);
}

static __attribute__((noinline)) void *xmalloc(size_t n)
{
	void *p = malloc(n);
	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}

struct ten {
	unsigned ok;
};
static void *ten_blocks(void *arg)
{
	struct ten *t = arg;
	for (int i = 0; i < 10; i++) {
		void *p = xmalloc(1000);
		if (!p)
			break;
		t->ok++;
		free(p);
	}
	return NULL;
}

/* Allocates in every way, runs an exact task; reports as NAME. */
static void churn(const char *name)
{
	char why[200] = "";
	void *b[40];
	int n = 0;
	for (; n < 32; n++) {
		size_t sz = 1 + ((size_t)n * 2654435761u) % (64 * KiB);
		b[n] = xmalloc(sz);
		if (!b[n]) {
			snprintf(why, sizeof why, "malloc(%zu)", sz);
			break;
		}
		memset(b[n], 2, sz);
	}
	if (!why[0]) {
		b[n++] = calloc(100, 100);
		b[n++] = xmalloc(4 * MiB);
		b[n++] = strdup("a string at exit");
		void *q = NULL;
		if (posix_memalign(&q, 4096, 10000))
			q = NULL;
		b[n++] = q;
		void *r = realloc(xmalloc(10), 200 * KiB);
		b[n++] = r;
		for (int i = 32; i < n; i++)
			if (!b[i] && !why[0])
				snprintf(why, sizeof why, "allocation %d of the second batch", i);
	}
	while (n)
		free(b[--n]);
	struct ten t = { 0 };
	uint64_t used = 0;
	ml_status st = ml_limit_allocations(5500, ten_blocks, &t, NULL, &used);
	if (!why[0] && (st != ML_ALLOCATION_LIMIT || used != 5000 || t.ok != 5))
		snprintf(why, sizeof why, "task: status %d, used %llu, ok %u", st,
			 (unsigned long long)used, t.ok);
	struct ml_stats s;
	if (!why[0] && ml_stats(&s) != ML_OK)
		snprintf(why, sizeof why, "ml_stats");
	char line[300];
	snprintf(line, sizeof line, "hostile_atexit: %s %s%s\n", name,
		 why[0] ? "FAILED: " : "ok", why);
	say(line);
}

static void h_ctor(void) { churn("atexit-from-constructor"); }
static void h_main1(void) { churn("atexit-from-main-1"); }
static void h_nested(void) { churn("atexit-registered-during-exit"); }
static void h_main2(void)
{
	churn("atexit-from-main-2");
	atexit(h_nested);
}
static void *thread_churn(void *arg)
{
	churn(arg);
	return NULL;
}

__attribute__((constructor)) static void ctor(void)
{
	atexit(h_ctor);
	void *p = xmalloc(1000); /* left live on purpose */
	__asm__ volatile("" : : "r"(p) : "memory");
}

__attribute__((destructor)) static void dtor1(void)
{
	churn("destructor-1");
}

__attribute__((destructor)) static void dtor2(void)
{
	pthread_t th;
	if (pthread_create(&th, NULL, thread_churn, "thread-created-in-destructor"))
		say("hostile_atexit: thread-created-in-destructor FAILED: pthread_create\n");
	else
		pthread_join(th, NULL);
	churn("destructor-2");
}

/* Background threads: tasks of every kind, forever (the process exits
 * under them). */
static atomic_ulong bg_allocs;
static void *bg_task(void *arg)
{
	uint64_t *seed = arg;
	void *held[8] = { 0 };
	for (int i = 0; i < 400; i++) {
		*seed ^= *seed << 13;
		*seed ^= *seed >> 7;
		*seed ^= *seed << 17;
		void *p = xmalloc(1 + *seed % (16 * KiB));
		if (!p)
			break;
		atomic_fetch_add(&bg_allocs, 1);
		free(held[i % 8]);
		held[i % 8] = p;
	}
	for (int i = 0; i < 8; i++)
		free(held[i]);
	return NULL;
}
static void *background(void *arg)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull + (uintptr_t)arg;
	ml_token *tok = ml_token_create();
	for (unsigned i = 0;; i++) {
		switch (i % 3) {
		case 0:
			ml_limit_allocations(1 + seed % (4 * MiB), bg_task, &seed, NULL, NULL);
			break;
		case 1:
			ml_limit_with_token(tok, bg_task, &seed, NULL);
			break;
		default:
			ml_limit_global_memory(bg_task, &seed, NULL);
		}
	}
	return NULL;
}

int main(void)
{
	alarm(30);
	ml_start();
	ml_set_global_memory_limit((int64_t)1 << 30);
	atexit(h_main1);
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, background, (void *)(uintptr_t)i);
	while (atomic_load(&bg_allocs) < 1000)
		sched_yield();
	atexit(h_main2);
	churn("main");
	return 0;
}
