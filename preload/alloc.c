/* alloc.c: the exported malloc family. Each entry point charges the
 * requested bytes with mli_admit (one subtraction and one branch on the
 * thread's grant) and tail-calls jemalloc; everything else happens in the
 * engine's slow path. free and malloc_usable_size are jemalloc's own.
 *
 * Contracts follow glibc: malloc(0) returns a unique pointer; overflow in
 * calloc/reallocarray gives NULL + ENOMEM; realloc(p, 0) frees p and returns
 * NULL; bad alignments give EINVAL; memalign rounds a non-power-of-two
 * alignment up as glibc does. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "../core/internal.h"
#include "jemalloc.h"

#define EXPORT __attribute__((visibility("default")))

static void *enomem(void)
{
	errno = ENOMEM;
	return NULL;
}

/* Slow paths: admission by the engine, and the allocation's failure gives
 * the charge back so that counts stay exact. */
bool mli_region_owns(const void *p);
void mli_free_sampled(void *p);
void mli_region_unplaced(const void *p); /* region.c */

/* Only the profiling build has blocks of its own: those in the region's
 * window (one shift and compare), and then in the region itself. */
static inline bool region_owns(const void *p)
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

/* Frees any block: the profiler's or jemalloc's. */
static void any_free(void *p)
{
	if (region_owns(p))
		mli_free_sampled(p);
	else
		mli_je_free(p);
}

/* The block for an admitted request: from the profiler's region if it was
 * sampled (falling back to jemalloc, untracked, if the region is full). */
static void *get_block(int admitted, size_t n, size_t align, bool zero)
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

/* Used from malloc's assembly, hence not static. */
__attribute__((used, noinline)) void *mli_malloc_slow(size_t n)
{
	int a = mli_admit_slow(n);
	if (!a)
		return enomem();
	void *p = get_block(a, n, 0, false);
	if (!p)
		mli_uncharge(n);
	return p;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(MLI_PORTABLE_MALLOC)
/* mli_admit and the tail call, by hand: one read-modify-write of the TLS
 * word and a conditional tail jump straight into jemalloc, so the fast path
 * is three instructions over jemalloc's own (the GOT load of the TLS offset,
 * the subtraction, the jump); gcc's version is six. */
_Static_assert(__builtin_offsetof(struct mli_thread, left) == 0,
	       "left must be the first word of the thread block");
EXPORT __attribute__((naked)) void *malloc(size_t n)
{
	__asm__("movq mli_tls@gottpoff(%rip), %rax\n\t"
		"subq %rdi, %fs:(%rax)\n\t"
		"jae mli_je_malloc\n\t"
		"jmp mli_malloc_slow\n\t");
}
#else
EXPORT void *malloc(size_t n)
{
	if (mli_likely(mli_admit_fast(n)))
		return mli_je_malloc(n);
	return mli_malloc_slow(n);
}
#endif

EXPORT void *calloc(size_t a, size_t b)
{
	size_t n;
	if (__builtin_mul_overflow(a, b, &n))
		return enomem();
	int ad = mli_admit(n);
	if (!ad)
		return enomem();
	void *p = ad == MLI_ADMIT ? mli_je_calloc(a, b) : get_block(ad, n, 0, true);
	if (!p)
		mli_uncharge(n);
	return p;
}

/* realloc of a block of the profiler's region: move it out (the new block
 * may be sampled again), which reports the old one freed. */
static void *realloc_sampled(void *old, size_t n)
{
	size_t have = mli_be_sample_size(old);
	if (n <= have) {
		/* Fits: stays, still sampled, with jemalloc's usable size for n. */
		mli_be_sample_shrink(old, n);
		return old;
	}
	size_t grow = n - have;
	int ad = mli_admit(grow);
	if (!ad)
		return enomem();
	void *p = get_block(ad, n, 0, false);
	if (!p) {
		mli_uncharge(grow);
		return enomem();
	}
	memcpy(p, old, have);
	mli_free_sampled(old);
	return p;
}

/* Everything realloc's fast path does not handle: NULL, 0, huge sizes,
 * the profiler's blocks, sizes over the grant, and sampling. */
static MLI_NOINLINE void *realloc_slow(void *old, size_t n)
{
	if (!old)
		return malloc(n);
	if (n == 0) {
		any_free(old);
		return NULL;
	}
	if (n > (size_t)PTRDIFF_MAX)
		return enomem();
	if (region_owns(old))
		return realloc_sampled(old, n);
	size_t have = mli_je_sallocx(old, 0);
	size_t grow = n > have ? n - have : 0;
	int ad = grow ? mli_admit(grow) : MLI_ADMIT;
	if (!ad)
		return enomem();
	void *p;
	if (ad == MLI_SAMPLE && (p = mli_prof_alloc(n, 0, false)) != NULL) {
		memcpy(p, old, have);
		mli_je_free(old);
		return p;
	}
	p = mli_je_realloc(old, n);
	if (ad == MLI_SAMPLE)
		mli_region_unplaced(p);
	if (!p) {
		if (grow)
			mli_uncharge(grow);
		errno = ENOMEM; /* jemalloc's realloc does not always set it */
	}
	return p;
}

EXPORT void *realloc(void *old, size_t n)
{
	if (mli_likely(old && n && !region_owns(old))) {
		/* Charge n up front if it fits the grant; else, if no limit could
		 * refuse even all of n (the room the limits leave), charge the
		 * growth afterwards. Either way the growth is learnt from
		 * jemalloc's deallocated counter, to which its realloc adds the
		 * old block's usable size (moved or not): no lookup of the block
		 * before. Only a limit near takes realloc_slow's exact path. */
		bool charged = mli_admit_fast(n);
		if (!charged)
			mli_give_back(n); /* undo the wrapped subtraction */
		if (charged || mli_within_headroom(n)) {
			const uint64_t *dealloc = mli_tls.be_dealloc;
			uint64_t before = *dealloc;
			void *p = mli_je_realloc(old, n);
			uint64_t have = *dealloc - before;
			uint64_t grow = p && n > have ? n - have : 0;
			if (charged)
				mli_give_back(n - grow);
			else if (grow)
				mli_charge_after(grow);
			if (!p)
				errno = ENOMEM; /* jemalloc's realloc does not always set it */
			return p;
		}
	}
	return realloc_slow(old, n);
}

EXPORT void *reallocarray(void *old, size_t a, size_t b)
{
	size_t n;
	if (__builtin_mul_overflow(a, b, &n))
		return enomem();
	return realloc(old, n);
}

static bool pow2(size_t a)
{
	return a && !(a & (a - 1));
}

/* The aligned forms share this: align is a valid power of two. */
static void *aligned(size_t align, size_t n)
{
	if (align < 16)
		align = 16; /* as glibc: never less than 16-byte aligned */
	int ad = mli_admit(n);
	if (!ad)
		return enomem();
	void *p = get_block(ad, n, align, false);
	if (!p)
		mli_uncharge(n);
	return p;
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	if (!pow2(align) || align % sizeof(void *))
		return EINVAL;
	int saved = errno;
	void *p = aligned(align, n);
	if (!p)
		return ENOMEM;
	errno = saved;
	*out = p;
	return 0;
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
	if (!pow2(align)) {
		errno = EINVAL;
		return NULL;
	}
	return aligned(align, n);
}

EXPORT void *memalign(size_t align, size_t n)
{
	if (align > SIZE_MAX / 2 + 1) {
		errno = EINVAL;
		return NULL;
	}
	size_t a = sizeof(void *);
	while (a < align)
		a <<= 1;
	return aligned(a, n);
}

static size_t page_size(void)
{
	static size_t ps;
	if (!ps)
		ps = (size_t)sysconf(_SC_PAGESIZE);
	return ps;
}

EXPORT void *valloc(size_t n)
{
	return aligned(page_size(), n);
}

EXPORT void *pvalloc(size_t n)
{
	size_t ps = page_size(), r;
	if (__builtin_add_overflow(n, ps - 1, &r))
		return enomem();
	r &= ~(ps - 1);
	return aligned(ps, r ? r : ps);
}

/* C23. The size is only a hint; a wrong one must not corrupt the heap, so it
 * is not passed on to sdallocx. */
EXPORT void free_sized(void *p, size_t size)
{
	(void)size;
	any_free(p);
}

EXPORT void free_aligned_sized(void *p, size_t align, size_t size)
{
	(void)align;
	(void)size;
	any_free(p);
}
