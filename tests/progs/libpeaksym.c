/* libpeaksym.so: a shared library with an exported allocating function
 * and a static one under it, for the profile's frame names (test_prof,
 * tests/progs/prof_peak.c). */
#include <stdlib.h>

#define NOINLINE __attribute__((noinline, noclone))

static void *volatile sink;

/* Not exported: only the library's .symtab names it. */
NOINLINE static void *lib_static_alloc(size_t n)
{
	void *p = malloc(n);
	__asm__ volatile("" ::: "memory");
	return p;
}

/* Allocates `count` blocks of n bytes through lib_static_alloc and frees
 * them all; the last one is kept in *keep if keep is not NULL. */
NOINLINE void lib_exported_churn(size_t n, int count, void **keep)
{
	for (int i = 0; i < count; i++) {
		void *p = lib_static_alloc(n);
		if (!p)
			exit(3);
		sink = p;
		if (keep && i == count - 1)
			*keep = p;
		else
			free(p);
	}
	__asm__ volatile("" ::: "memory");
}
