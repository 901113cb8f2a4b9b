/* alloc_early: allocation before constructors. A .preinit_array function
 * runs before every shared library's constructor (the preload's included),
 * and a constructor(101) runs before the program's other constructors. Both
 * allocate, free and check the counts. Run under the preload; exits 0 iff all
 * held. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

static void *(*volatile f_malloc)(size_t) = malloc;
static void *(*volatile f_calloc)(size_t, size_t) = calloc;
static void *(*volatile f_realloc)(void *, size_t) = realloc;
static void (*volatile f_free)(void *) = free;

struct early {
	int ran;
	int alloc_ok;   /* the blocks were usable */
	int loaded;     /* ml_loaded() */
	int stats_ok;   /* ml_stats() == ML_OK */
	uint64_t counted; /* bytes counted for malloc(1000) + calloc(10, 10) */
};

static struct early pre, ctor;

static void early_work(struct early *e)
{
	e->ran = 1;
	e->loaded = ml_loaded();
	struct ml_stats a, b;
	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	e->stats_ok = ml_stats(&a) == ML_OK;
	unsigned char *p = f_malloc(1000);
	unsigned char *q = f_calloc(10, 10);
	e->stats_ok &= ml_stats(&b) == ML_OK;
	e->counted = b.thread_allocated - a.thread_allocated;
	e->alloc_ok = p && q && ((uintptr_t)p & 15) == 0;
	if (e->alloc_ok) {
		memset(p, 7, 1000);
		for (int i = 0; i < 100; i++)
			e->alloc_ok &= q[i] == 0;
		p = f_realloc(p, 100000);
		e->alloc_ok &= p && p[999] == 7;
	}
	f_free(p);
	f_free(q);
	for (int i = 0; i < 1000; i++)
		f_free(f_malloc((size_t)i * 7));
}

static void preinit(int argc, char **argv, char **envp)
{
	(void)argc;
	(void)argv;
	(void)envp;
	early_work(&pre);
}

__attribute__((section(".preinit_array"), used)) static void (*preinit_p)(
	int, char **, char **) = preinit;

__attribute__((constructor(101))) static void early_ctor(void)
{
	early_work(&ctor);
}

static int report(const char *name, const struct early *e)
{
	int ok = e->ran && e->alloc_ok && e->loaded && e->stats_ok &&
		 e->counted == 1100;
	printf("%s: ran %d alloc_ok %d loaded %d stats_ok %d counted %llu: %s\n",
	       name, e->ran, e->alloc_ok, e->loaded, e->stats_ok,
	       (unsigned long long)e->counted, ok ? "ok" : "FAIL");
	return ok;
}

int main(void)
{
	int ok = report("preinit", &pre);
	ok &= report("constructor(101)", &ctor);
	return ok ? 0 : 1;
}
