/* libdeep.so: a library that allocates and frees for its caller, loaded by
 * tests/progs/deepbind with RTLD_DEEPBIND (its own dependencies, libc
 * included, ahead of the global scope). */
#include <stdlib.h>
#include <string.h>

void *deep_malloc(size_t n)
{
	return malloc(n);
}

void deep_free(void *p)
{
	free(p);
}

void *deep_realloc(void *p, size_t n)
{
	return realloc(p, n);
}

char *deep_strdup(const char *s)
{
	return strdup(s);
}
