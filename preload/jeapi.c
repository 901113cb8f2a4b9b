/* jeapi.c: jemalloc's own API (mallocx, rallocx, xallocx, sallocx, dallocx,
 * sdallocx, nallocx, mallctl*, malloc_stats_print), answered by the
 * embedded jemalloc.
 *
 * A program linked with Debian's libjemalloc.so.2 (redis-server is one)
 * otherwise gets malloc from this library but mallocx and mallctl from a
 * second, empty jemalloc: mallocx then free crashes, and mallctl's
 * statistics describe a heap nobody uses. The allocating calls are charged
 * and limited like malloc and realloc (requested bytes; a resize charges
 * what the block's usable size grows by); their flags (alignment, zero,
 * tcache, arena) go to jemalloc as they are. In the profiling build a
 * sampled block (which lives in the profiler's range, not in jemalloc) is
 * recognised by every call that takes a pointer. */
#include <string.h>

#include "alloc.h"

EXPORT void *mallocx(size_t n, int flags)
{
	size_t charge = mli_aligned_charge(n, mli_flag_align(flags));
	int ad = mli_admit(charge);
	if (!ad)
		return NULL;
	void *p = NULL;
	if (ad == MLI_SAMPLE)
		p = mli_prof_alloc(n, mli_flag_align(flags), flags & MLI_MALLOCX_ZERO);
	if (!p)
		p = mli_je_mallocx(n, flags);
	if (!p)
		mli_uncharge(charge);
	else
		mli_block_made();
	return p;
}

EXPORT void *rallocx(void *old, size_t n, int flags)
{
	if (mli_is_sampled(old))
		return mli_resize_sampled(old, n, flags);
	size_t have = mli_je_sallocx(old, 0);
	switch (mli_shrink_interrupted(old, have, n, mli_flag_align(flags))) {
	case MLI_KEEP_OLD:
		return old;
	case MLI_KEEP_REFUSE:
		return NULL;
	}
	size_t grow;
	int ad = mli_admit_growth(have, n, flags, &grow);
	if (!ad)
		return NULL;
	void *p;
	if (ad == MLI_SAMPLE &&
	    (p = mli_prof_alloc(n, mli_flag_align(flags), flags & MLI_MALLOCX_ZERO))) {
		memcpy(p, old, have < n ? have : n);
		mli_je_dallocx(old, 0);
		return p;
	}
	if (ad == MLI_ADMIT && mli_moves_in_steps(old, have, n, flags))
		p = MLI_RESIZING(mli_move_big(old, have, n, flags));
	else
		p = MLI_RESIZING(mli_je_rallocx(old, n, flags));
	if (!p && grow)
		mli_uncharge(grow);
	return p;
}

/* In place: at least n bytes, at most n + extra, or the block as it was.
 * The growth that may happen (to n + extra) is charged before, what did not
 * happen is given back after. A refused growth leaves the block as it is,
 * xallocx's own way to fail. */
EXPORT size_t xallocx(void *p, size_t n, size_t extra, int flags)
{
	if (mli_is_sampled(p)) {
		/* The profiler's blocks do not grow; they shrink as realloc's do. */
		size_t want = n + extra < n ? SIZE_MAX : n + extra;
		mli_resize_look(mli_be_sample_size(p), want);
		if (want < mli_be_sample_size(p))
			mli_be_sample_resize(p, want, flags);
		return mli_be_sample_size(p);
	}
	size_t have = mli_je_sallocx(p, 0);
	size_t most = n + extra < n ? SIZE_MAX : n + extra;
	mli_resize_look(have, most);
	size_t grow;
	if (!mli_admit_growth(have, most, flags, &grow))
		return have;
	(void)MLI_RESIZING(mli_je_xallocx(p, n, extra, flags));
	/* The block's size is read again: jemalloc 5.3's xallocx can grow a
	 * block and return its old size (mallocx(28672), then xallocx(p,
	 * 70009, 199998, 0) returned 28672 for a block of 81920), which would
	 * leave the growth uncounted and tell the caller the wrong size.
	 * What is counted is what the block grew by (mli_growth_charge). */
	size_t got = mli_je_sallocx(p, 0);
	size_t used = mli_growth_charge(have, got, most);
	if (used > grow)
		used = grow;
	if (grow > used)
		mli_uncharge(grow - used);
	return got;
}

EXPORT size_t sallocx(const void *p, int flags)
{
	if (mli_is_sampled(p))
		return mli_be_sample_size(p);
	return mli_je_sallocx(p, flags);
}

EXPORT void dallocx(void *p, int flags)
{
	if (mli_is_sampled(p))
		mli_free_sampled(p);
	else
		mli_je_dallocx(p, flags);
}

EXPORT void sdallocx(void *p, size_t n, int flags)
{
	if (mli_is_sampled(p))
		mli_free_sampled(p);
	else
		mli_je_sdallocx(p, n, flags);
}

EXPORT size_t nallocx(size_t n, int flags)
{
	return mli_je_nallocx(n, flags);
}

EXPORT int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp,
		   size_t newlen)
{
	return mli_je_mallctl(name, oldp, oldlenp, newp, newlen);
}

EXPORT int mallctlnametomib(const char *name, size_t *mibp, size_t *miblenp)
{
	return mli_je_mallctlnametomib(name, mibp, miblenp);
}

EXPORT int mallctlbymib(const size_t *mib, size_t miblen, void *oldp,
			size_t *oldlenp, void *newp, size_t newlen)
{
	return mli_je_mallctlbymib(mib, miblen, oldp, oldlenp, newp, newlen);
}

EXPORT void malloc_stats_print(void (*write_cb)(void *, const char *),
			       void *cbopaque, const char *opts)
{
	mli_je_malloc_stats_print(write_cb, cbopaque, opts);
}
