/* alloc.h: what the exported entry points share (alloc.c, cxx.c, jeapi.c):
 * telling the profiler's sampled blocks from jemalloc's, and getting the
 * block for an admitted request. */
#ifndef MLI_ALLOC_H
#define MLI_ALLOC_H
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "../core/internal.h"
#include "jemalloc.h"

#define EXPORT __attribute__((visibility("default")))

static inline void *mli_enomem(void)
{
	errno = ENOMEM;
	return NULL;
}

/* region.c: the exact test, and the free of a pointer in the window. */
bool mli_region_owns(const void *p);
void mli_free_sampled(void *p);
/* A sampled request that did not fit in the region went to jemalloc,
 * which gave p: worth the once-only message only if it was served. */
void mli_region_unplaced(const void *p);

/* Only the profiling build has blocks of its own: those in the region's
 * window (one shift and compare), and then in the region itself. */
static inline bool mli_is_sampled(const void *p)
{
#ifdef MLI_PROF_BUILD
	extern uint64_t mli_region_tag;
	return ((uintptr_t)p >> 34) == __atomic_load_n(&mli_region_tag, __ATOMIC_RELAXED) &&
	       mli_region_owns(p);
#else
	(void)p;
	return false;
#endif
}

/* jemalloc's realloc, rallocx and xallocx, with the thread marked as
 * resizing: the activity callback then ignores the moment at which the
 * new block is counted and the old one not yet; the net change is
 * published after by the slow path's rule (so that growth admitted
 * outside the grant is in other threads' decisions: the per-thread
 * bound). */
#define MLI_RESIZING(expr)                                         \
	({                                                         \
		mli_tls.resizing = 1;                              \
		__typeof__(expr) r_ = (expr);                      \
		mli_tls.resizing = 0;                              \
		mli_mem_after_resize(&mli_tls);                    \
		r_;                                                \
	})

/* What resizing a block of `have` usable bytes to n (jemalloc's flags)
 * is charged: what the heap grows by, the new block's usable size less
 * the old one's, but at most n, what a malloc of n would be charged (a
 * tiny block grown to n whose size class rounds up by more than the old
 * block had). The budgets and the memory limits alike, so that growing a
 * buffer by small steps to N bytes costs N: charging only the request
 * beyond the old usable size left each size class's rounding free (a
 * buffer grown 4 KiB at a time to 24 MiB was charged 190 KB of an
 * allocation budget). */
static inline size_t mli_growth_charge(size_t have, size_t got, size_t n)
{
	size_t g = got > have ? got - have : 0;
	return g < n ? g : n;
}

/* Admits resizing a block of `have` usable bytes to n (jemalloc's flags)
 * before it is made: charged *grow (mli_growth_charge, from the size class
 * jemalloc will give; 0 for a shrink, admitted), while the memory limits
 * decide on what the heap will grow by (not capped at n). MLI_*. */
static inline int mli_admit_growth(size_t have, size_t n, int flags,
				   size_t *grow)
{
	*grow = 0;
	if (n <= have)
		return MLI_ADMIT;
	size_t u = mli_je_nallocx(n, flags);
	if (u < n)
		u = n; /* too large for any class: the call fails */
	*grow = mli_growth_charge(have, u, n);
	if (!*grow)
		return MLI_ADMIT;
	mli_refusal_resize = n; /* for a breach line: the size asked for */
	int r = mli_admit_resize(*grow, u - have);
	mli_refusal_resize = 0;
	return r;
}

/* A resize of a block of `have` bytes to n that does not grow is charged
 * nothing, so no admission looks at the limits: a token the thread set, or
 * a signal handler in it, asks for that look (poked), taken here. Else the
 * token was lost when the task went on with shrinks, moved blocks and
 * returned ML_OK (a held-out check: 10 of 10 runs; then for the
 * profiler's blocks, which shrink in place, and xallocx). */
static inline void mli_resize_look(size_t have, size_t n)
{
	if (mli_unlikely(mli_tls.poked) && n <= have)
		mli_check_now(&mli_tls);
}

/* A shrink in an interrupted task (a limit of it fired, not masked): every
 * allocation fails there, and jemalloc's realloc makes a new block for a
 * shrink to a smaller size class, so the block stays as it is: at least n
 * bytes already, no block made, nothing refused (glibc's realloc never
 * fails a shrink, and programs rely on it). A shrink that must move for an
 * alignment (rallocx) is refused. MLI_KEEP_* for the caller. */
enum { MLI_KEEP_NO, MLI_KEEP_OLD, MLI_KEEP_REFUSE };
static inline int mli_shrink_interrupted(const void *old, size_t have,
					 size_t n, size_t align)
{
	mli_resize_look(have, n);
	if (mli_likely(n > have || !mli_tls.nfired || mli_tls.mask_depth))
		return MLI_KEEP_NO;
	if (align && ((uintptr_t)old & (align - 1)))
		return MLI_KEEP_REFUSE;
	return MLI_KEEP_OLD;
}

/* A big block's growth (or move to a new alignment) under a memory limit
 * that both blocks would pass:
 * moved by mli_move_big, which copies in steps and gives the old block's
 * pages back as it goes (alloc.c). flags: jemalloc's. */
bool mli_moves_in_steps(const void *old, size_t have, size_t n, int flags);
void *mli_move_big(void *old, size_t have, size_t n, int flags);

/* What an aligned request is charged: with an alignment above 16, its
 * block's usable size, which the alignment can make much larger than the
 * request (posix_memalign(&p, 8192, 1) is a 16 KiB block: 40,000 of them,
 * charged a byte each, took 625 MiB under a 50M limit without one slow
 * path); else n, as malloc. flags: jemalloc's, the lg of the alignment. */
static inline size_t mli_aligned_charge(size_t n, size_t align)
{
	if (align <= 16)
		return n;
	size_t u = mli_je_nallocx(n ? n : 1, __builtin_ctzl(align)); /* 0: 16, whatever the alignment */
	return u > n ? u : n;
}

/* The alignment jemalloc's flags ask for, 0 for none. */
static inline size_t mli_flag_align(int flags)
{
	int lg = flags & MLI_MALLOCX_LG_ALIGN_MASK;
	return lg ? (size_t)1 << lg : 0;
}

/* Frees a block the program got from the library's entry points (free
 * itself excepted): the exported free, by a local name the link gives it
 * (the Makefile's JE_FREE), a tail call. In the default library that is
 * jemalloc's free (its fast path some 30 instructions, where mli_je_free's
 * dallocx takes jemalloc's slow path, about 90); in the profiling build,
 * region.c's, which tells sampled blocks apart. Not for the library's own
 * blocks: a preload before this one (valgrind's) takes free's address, and
 * with it the program's allocations, never the library's. */
__attribute__((visibility("hidden"))) void mli_free_exported(void *p);
#define mli_user_free mli_free_exported

/* The block for an admitted request: from the profiler's region if it was
 * sampled (falling back to jemalloc, untracked, if the region is full). */
static inline void *mli_get_block(int admitted, size_t n, size_t align, bool zero)
{
	if (admitted == MLI_SAMPLE) {
		void *p = mli_prof_alloc(n, align, zero);
		if (p)
			return p;
	}
	void *p = align ? mli_je_aligned_alloc(align, n)
		  : zero ? mli_je_calloc(1, n) : mli_je_malloc(n);
	if (admitted == MLI_SAMPLE)
		mli_region_unplaced(p);
	return p;
}

/* After a block was made: a big block reserved in the measure by its
 * admission (memory.c) is published now, the reservation taken out. */
static inline void mli_block_made(void)
{
	if (mli_unlikely(__atomic_load_n(&mli_tls.pending, __ATOMIC_RELAXED)))
		mli_mem_publish(&mli_tls, true);
	/* Held back while it was reserved (published by the backend's
	 * activity callback meanwhile, or just now). */
	if (mli_unlikely(mli_tls.soft_pending))
		mli_soft_run(&mli_tls);
}

/* alloc.c: malloc's slow path (admission, block, uncharge on failure). */
void *mli_malloc_slow(size_t n);
/* alloc.c: realloc and rallocx of a sampled block (flags: jemalloc's). */
void *mli_resize_sampled(void *old, size_t n, int flags);
/* alloc.c: the aligned forms' common part; align is a power of two (raised
 * to 16 as glibc does). NULL + ENOMEM if refused or out of memory. */
void *mli_aligned(size_t align, size_t n);

#endif
