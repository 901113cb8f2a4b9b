/* jemalloc.h: the jemalloc entry points the preload forwards to. The build
 * links Debian's libjemalloc_pic.a into the library with its public names
 * renamed to mli_je_* (preload/jemalloc.syms), so calls to them are direct
 * calls inside the library: no PLT, no dlsym. In the default library free
 * and malloc_usable_size are jemalloc's own, exported as they are, so free
 * costs exactly what jemalloc's does; the profiling build renames them too
 * (preload/jemalloc-prof.syms) and exports region.c's. */
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

/* jemalloc's non-standard API (the names jemalloc.so exports; jeapi.c exports
 * them again, charged). */
void *mli_je_mallocx(size_t n, int flags);
void *mli_je_rallocx(void *p, size_t n, int flags);
size_t mli_je_xallocx(void *p, size_t n, size_t extra, int flags);
void mli_je_dallocx(void *p, int flags);
void mli_je_sdallocx(void *p, size_t n, int flags);
size_t mli_je_nallocx(size_t n, int flags); /* flags: lg of the alignment */
int mli_je_mallctlnametomib(const char *name, size_t *mibp, size_t *miblenp);
int mli_je_mallctlbymib(const size_t *mib, size_t miblen, void *oldp,
			size_t *oldlenp, void *newp, size_t newlen);
void mli_je_malloc_stats_print(void (*write_cb)(void *, const char *),
			       void *cbopaque, const char *opts);

/* jemalloc 5.3's internals (the library checks the version at start-up,
 * preload/backend.c): a thread's data, and what jemalloc's key destructor
 * does with it at the thread's end (preload/thread.c runs it earlier). */
extern __thread char je_tsd_tls[] __attribute__((tls_model("initial-exec")));
void je_tsd_cleanup(void *tsd);

/* The flags of that API (jemalloc's ABI, as its jemalloc.h defines them). */
#define MLI_MALLOCX_LG_ALIGN_MASK 0x3f /* lg of the alignment; 0: none */
#define MLI_MALLOCX_ZERO 0x40
#ifdef MLI_PROF_BUILD
void mli_je_free(void *p); /* the exported free is region.c's */
size_t mli_je_malloc_usable_size(void *p);
#else
/* jemalloc's own free and malloc_usable_size are exported as they are
 * (preload/jemalloc.syms). The library's own calls must not go through those
 * names: another preload before this one (valgrind's, say) would take them.
 * So they use jemalloc's renamed dallocx and sallocx. */
size_t malloc_usable_size(void *p);
static inline void mli_je_free(void *p)
{
	if (p)
		mli_je_dallocx(p, 0);
}
#define mli_je_malloc_usable_size malloc_usable_size
#endif

#endif
