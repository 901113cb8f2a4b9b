/* jemalloc.h: the jemalloc entry points the preload forwards to. The build
 * links Debian's libjemalloc_pic.a into the library with its public names
 * renamed to mli_je_* (preload/jemalloc.syms), so calls to them are direct
 * calls inside the library: no PLT, no dlsym. free and malloc_usable_size
 * keep their names and are exported as they are: the engine needs nothing
 * from free, so it costs exactly what jemalloc's does. */
#ifndef MLI_JEMALLOC_H
#define MLI_JEMALLOC_H
#include <stddef.h>

void *mli_je_malloc(size_t n);
void *mli_je_calloc(size_t n, size_t m);
void *mli_je_realloc(void *p, size_t n);
int mli_je_posix_memalign(void **p, size_t align, size_t n);
void *mli_je_aligned_alloc(size_t align, size_t n);
size_t mli_je_sallocx(const void *p, int flags);
int mli_je_mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp,
		   size_t newlen);
void free(void *p);
size_t malloc_usable_size(void *p);

#endif
