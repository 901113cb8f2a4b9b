/* alloc.c: the exported malloc family. Each entry point charges the
 * requested bytes with mli_admit (one subtraction and one branch on the
 * thread's grant) and tail-calls jemalloc; everything else happens in the
 * engine's slow path. free and malloc_usable_size are jemalloc's own.
 *
 * Contracts follow glibc: malloc(0) returns a unique pointer; overflow in
 * calloc/reallocarray gives NULL + ENOMEM; realloc(p, 0) frees p and returns
 * NULL; bad alignments give EINVAL; memalign rounds a non-power-of-two
 * alignment up as glibc does. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <stdlib.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc.h"
#include "sys.h"

/* Used from malloc's assembly, hence not static. */
__attribute__((used, noinline)) void *mli_malloc_slow(size_t n)
{
	if (mli_likely(mli_quick_refill(n)))
		return mli_je_malloc(n); /* a failure stays counted, as on the fast path */
	int a = mli_admit_rest(n);
	if (!a)
		return mli_enomem();
	void *p = mli_get_block(a, n, 0, false);
	if (!p)
		mli_uncharge(n);
	else
		mli_block_made();
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
		"ja mli_je_malloc\n\t" /* left > n: mli_admit_fast */
		"addq %rdi, %fs:(%rax)\n\t" /* undone at once: mli_admit_fast */
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
		return mli_enomem();
	int ad = mli_admit(n);
	if (!ad)
		return mli_enomem();
	void *p = ad == MLI_ADMIT ? mli_je_calloc(a, b) : mli_get_block(ad, n, 0, true);
	if (!p)
		mli_uncharge(n);
	else
		mli_block_made();
	return p;
}

/* realloc and rallocx of a block of the profiler's region (flags:
 * jemalloc's; NULL + ENOMEM if refused). It stays in place while it fits
 * in its slot: still tracked, or tracked anew if its growth was sampled.
 * Else it moves to a new block, the old one reported freed: in the region
 * still (tracked if this growth was sampled), where it goes on growing in
 * place, or from jemalloc if the region has no room. */
void *mli_resize_sampled(void *old, size_t n, int flags)
{
	size_t have = mli_be_sample_size(old);
	size_t align = mli_flag_align(flags);
	bool aligned = !align || ((uintptr_t)old & (align - 1)) == 0;
	mli_resize_look(have, n);
	if (n <= have && aligned) {
		mli_be_sample_resize(old, n, flags);
		return old;
	}
	if (mli_shrink_interrupted(old, have, n, align) == MLI_KEEP_REFUSE)
		return mli_enomem(); /* a shrink that must move */
	size_t grow;
	int ad = mli_admit_growth(have, n, flags, &grow);
	if (!ad)
		return mli_enomem();
	bool zero = flags & MLI_MALLOCX_ZERO;
	if (aligned && mli_be_sample_resize(old, n, flags)) {
		if (zero) /* as jemalloc: the bytes past the old usable size */
			memset((char *)old + have, 0, mli_be_sample_size(old) - have);
		if (ad == MLI_SAMPLE)
			mli_prof_resampled(old, n);
		return old;
	}
	/* While it moves, the old block is out of the measure, as for
	 * jemalloc's realloc (whose activity callback ignores the moment both
	 * are live): the admission counted the growth only, and counting both
	 * blocks made the measure jump by the old block's size (a 26 MiB
	 * buffer moving under 50M: other threads' malloc(1024) refused 1.5
	 * million times, peak 60 MiB). */
	mli_mem_base_add(-(int64_t)have);
	void *p;
	if (ad == MLI_SAMPLE)
		p = mli_prof_alloc(n, align, zero);
	else {
		struct mli_sampled *rec;
		p = mli_be_sample_alloc(n, align, zero, &rec); /* untracked */
	}
	if (!p) {
		p = mli_je_mallocx(n, flags);
		mli_region_unplaced(ad == MLI_SAMPLE ? p : NULL);
	}
	if (p) {
		memcpy(p, old, have < n ? have : n);
		mli_free_sampled(old); /* takes have off the measure */
	}
	mli_mem_base_add((int64_t)have);
	if (!p) {
		mli_uncharge(grow);
		return mli_enomem();
	}
	return p;
}

/* Under a memory limit, a big buffer grown by realloc (python reading a
 * pipe to its end, perl's `.=`) moves to a new block whenever jemalloc
 * cannot grow it in place, and while it is copied both blocks are
 * resident: the measure counts the growth only (see mli_resize_sampled),
 * so a buffer that met a 100M limit at 90 MiB had taken the process to
 * 165 MiB of resident memory (glibc grows such blocks with mremap, without
 * a copy). Here, when both blocks would not fit under the limit, the
 * move copies in steps, and gives each step of the old
 * block back to the system (MADV_DONTNEED) once copied: the process holds
 * the new block and one step more. The old block's pages are zero pages
 * when jemalloc takes it back, which its dirty extents may be.
 * Large blocks start on a page, plus jemalloc's cache-oblivious offset of
 * a few cache lines: only whole pages are given back. */
#define MOVE_STEP ((size_t)2 << 20)

/* flags: jemalloc's (an alignment, MLI_MALLOCX_ZERO, a tcache, an arena):
 * the new block is made with them; the old one goes back by free, which
 * any block may. */
void *mli_move_big(void *old, size_t have, size_t n, int flags)
{
	size_t align = mli_flag_align(flags);
	if ((!align || ((uintptr_t)old & (align - 1)) == 0) &&
	    mli_je_xallocx(old, n, 0, flags) >= n)
		return old;
	char *p = mli_je_mallocx(n, flags), *from = old;
	if (!p)
		return NULL;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t given = ((uintptr_t)from + page - 1) & ~(page - 1);
	size_t keep = have < n ? have : n;
	for (size_t off = 0; off < keep; off += MOVE_STEP) {
		size_t len = keep - off < MOVE_STEP ? keep - off : MOVE_STEP;
		memcpy(p + off, from + off, len);
		uintptr_t end = ((uintptr_t)from + off + len) & ~(page - 1);
		if (end > given) {
			mli_sys_madvise((void *)given, end - given, MADV_DONTNEED);
			given = end;
		}
	}
	mli_je_free(old);
	return p;
}

/* Growing a block of `have` bytes to n (with jemalloc's flags): would both blocks at once
 * take the process over its memory limit (the lowest in force: the cap, a
 * task's, the tree's)? Away from it the move is jemalloc's own, whose old
 * block stays resident for reuse. rallocx's moves were jemalloc's always:
 * 159 MiB resident under 100M where realloc's stayed at 110 (a held-out
 * check), and so were those with a tcache or an arena flag (127 MiB). */
#define MOVE_MIN ((size_t)1 << 20)
bool mli_moves_in_steps(const void *old, size_t have, size_t n, int flags)
{
	/* A block that must move for a new alignment moves whatever its size:
	 * both held 155 MiB of resident memory for a block of 80 MB under
	 * 100M (a held-out check). */
	size_t align = mli_flag_align(flags);
	bool realign = align && ((uintptr_t)old & (align - 1));
	if (have < MOVE_MIN || (n <= have && !realign))
		return false;
	int64_t lim = mli_mem_lowest_limit();
	return lim >= 0 && mli_mem_estimate(&mli_tls) + (int64_t)n > lim;
}

/* Everything realloc's fast path does not handle: NULL, 0, huge sizes,
 * the profiler's blocks, sizes over the grant, and sampling. */
static MLI_NOINLINE void *realloc_slow(void *old, size_t n)
{
	if (!old)
		return malloc(n);
	if (n == 0) {
		mli_user_free(old);
		return NULL;
	}
	if (n > (size_t)PTRDIFF_MAX)
		return mli_enomem();
	if (mli_is_sampled(old))
		return mli_resize_sampled(old, n, 0);
	size_t have = mli_je_sallocx(old, 0);
	if (mli_shrink_interrupted(old, have, n, 0) == MLI_KEEP_OLD)
		return old;
	size_t grow;
	int ad = mli_admit_growth(have, n, 0, &grow);
	if (!ad)
		return mli_enomem();
	void *p;
	if (ad == MLI_SAMPLE && (p = mli_prof_alloc(n, 0, false)) != NULL) {
		memcpy(p, old, have);
		mli_je_free(old);
		return p;
	}
	if (ad == MLI_ADMIT && mli_moves_in_steps(old, have, n, 0))
		p = MLI_RESIZING(mli_move_big(old, have, n, 0));
	else
		p = MLI_RESIZING(mli_je_realloc(old, n));
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
	if (mli_likely(old && n && !mli_is_sampled(old))) {
		/* Charge n up front if it fits the grant; else, if no limit could
		 * refuse even all of n (the room the limits leave), charge the
		 * growth afterwards. Either way the growth (mli_growth_charge) is
		 * learnt from jemalloc's counters, to which its realloc adds the
		 * new block's usable size and the old one's (moved or not): no
		 * lookup of the block before. Only a limit near takes realloc_slow's exact path. What
		 * was charged beyond the growth is given back without undoing a
		 * grant cut by a signal handler meanwhile (mli_give_back). */
		uint64_t after = 0;
		/* Looked at first: a big buffer's realloc is over the grant,
		 * and the take would wrap and be undone (two read-modify-
		 * writes of the word, 12 instructions in all). The take
		 * itself stays one instruction, so a signal handler between
		 * the look and it changes nothing the take does not see. */
		bool charged = mli_tls.left > n && mli_take(n, &after);
		if (charged || (!mli_tls.poked && mli_within_headroom(n))) {
			const uint64_t *alloc = mli_tls.be_alloc,
				       *dealloc = mli_tls.be_dealloc;
			uint64_t a0 = *alloc, d0 = *dealloc;
			void *p = MLI_RESIZING(mli_je_realloc(old, n));
			uint64_t got = *alloc - a0, have = *dealloc - d0;
			uint64_t grow = p ? mli_growth_charge(have, got, n) : 0;
			if (charged) {
				if (n > grow)
					mli_give_back(n - grow, after);
			} else if (grow)
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
		return mli_enomem();
	return realloc(old, n);
}

static bool pow2(size_t a)
{
	return a && !(a & (a - 1));
}

/* The aligned forms share this: align is a valid power of two. */
void *mli_aligned(size_t align, size_t n)
{
	if (align < 16)
		align = 16; /* as glibc: never less than 16-byte aligned */
	size_t charge = mli_aligned_charge(n, align);
	int ad = mli_admit(charge);
	if (!ad)
		return mli_enomem();
	void *p = mli_get_block(ad, n, align, false);
	if (!p)
		mli_uncharge(charge);
	else
		mli_block_made();
	return p;
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	if (!pow2(align) || align % sizeof(void *))
		return EINVAL;
	int saved = errno;
	void *p = mli_aligned(align, n);
	if (!p)
		return ENOMEM;
	errno = saved;
	*out = p;
	return 0;
}

/* glibc before 2.38 serves aligned_alloc as memalign (any alignment,
 * rounded up to a power of two; 0 is malloc's); 2.38 and later refuse an
 * alignment that is not a power of two with EINVAL. As the running glibc
 * does: aligned_alloc(24, 48) succeeded under Debian 12's 2.36 and failed
 * under the library (a held-out check). */
EXPORT void *memalign(size_t align, size_t n);

static bool glibc_before_2_38(void)
{
	static int old; /* 0: not known yet, 1: before 2.38, 2: 2.38 or later */
	int v = __atomic_load_n(&old, __ATOMIC_RELAXED);
	if (!v) {
		const char *s = gnu_get_libc_version();
		char *end;
		long major = strtol(s, &end, 10), minor = *end == '.' ? strtol(end + 1, NULL, 10) : 0;
		v = major < 2 || (major == 2 && minor < 38) ? 1 : 2;
		__atomic_store_n(&old, v, __ATOMIC_RELAXED);
	}
	return v == 1;
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
	if (!pow2(align)) {
		if (glibc_before_2_38())
			return memalign(align, n);
		errno = EINVAL;
		return NULL;
	}
	return mli_aligned(align, n);
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
	return mli_aligned(a, n);
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
	return mli_aligned(page_size(), n);
}

EXPORT void *pvalloc(size_t n)
{
	size_t ps = page_size(), r;
	if (__builtin_add_overflow(n, ps - 1, &r))
		return mli_enomem();
	r &= ~(ps - 1);
	return mli_aligned(ps, r ? r : ps);
}

/* C23. The size is only a hint; a wrong one must not corrupt the heap, so it
 * is not passed on to sdallocx. */
EXPORT void free_sized(void *p, size_t size)
{
	(void)size;
	mli_user_free(p);
}

EXPORT void free_aligned_sized(void *p, size_t align, size_t size)
{
	(void)align;
	(void)size;
	mli_user_free(p);
}

/* Whose malloc the program gets, at start-up: a malloc(24) through the
 * name the program binds, invisible to the limits (a callout: neither
 * counted nor refused), served by this library's jemalloc or not (the
 * thread's allocated bytes in jemalloc's counter). LD_PRELOAD=
 * libtcmalloc.so:libmemlimits.so gave tcmalloc every malloc (its heap grown
 * with sbrk, not counted: 200 MiB under a 50M limit, no word), and
 * valgrind's tools that replace malloc call their own at this library's
 * address (a vgpreload_TOOL object is loaded; not with --tool=none). */
static int find_vgpreload(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	const char *n = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;
	n = n ? n + 1 : info->dlpi_name;
	if (n && !strncmp(n, "vgpreload_", 10) && strncmp(n, "vgpreload_core", 14)) {
		*(bool *)data = true;
		return 1;
	}
	return 0;
}

struct order {
	uintptr_t a, b;	 /* two addresses */
	int ia, ib, i; /* the index of the object holding each, in load order */
};

static int find_order(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	struct order *o = data;
	for (int k = 0; k < info->dlpi_phnum; k++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[k];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
		if (o->a >= lo && o->a < hi && o->ia < 0)
			o->ia = o->i;
		if (o->b >= lo && o->b < hi && o->ib < 0)
			o->ib = o->i;
	}
	o->i++;
	return 0;
}

/* The definition a program's reference binds: the first in the search
 * order (load order: the program, the preloads, their libraries) that is
 * unversioned or of the version programs ask for. dlsym finds the first
 * unversioned or default one, dlvsym the first of that version; glibc's
 * libc_malloc_debug defines only malloc@GLIBC_2.2.5, which dlsym skips, and
 * with MALLOC_CHECK_ set it serves programs from glibc's own heap (400 MiB
 * under a 50M limit, exit 0: a held-out check). */
static void *lookup(const char *name)
{
	void *d = dlsym(RTLD_DEFAULT, name);
#if defined(__x86_64__) && defined(__GLIBC__)
	void *v = dlvsym(RTLD_DEFAULT, name, "GLIBC_2.2.5");
	if (v && d && v != d) {
		struct order o = { (uintptr_t)v, (uintptr_t)d, -1, -1, 0 };
		dl_iterate_phdr(find_order, &o);
		if (o.ia >= 0 && (o.ib < 0 || o.ia < o.ib))
			return v;
	}
#endif
	return d;
}

int mli_be_foreign_malloc(const char **path)
{
	/* By the version programs bind: glibc's libc_malloc_debug defines
	 * only malloc@GLIBC_2.2.5, which an unversioned lookup skips, and with
	 * MALLOC_CHECK_ set it serves programs from glibc's own heap (400 MiB
	 * under a 50M limit, exit 0: a held-out check). */
	void *(*m)(size_t) = (void *(*)(size_t))lookup("malloc");
	void (*f)(void *) = (void (*)(void *))lookup("free");
	struct mli_thread *t = &mli_tls;
	*path = "";
	if (!m || !f || !t->be_alloc || t->in_engine)
		return MLI_MALLOC_OURS;
	mli_callout_begin(t, MLI_CALLOUT_INVISIBLE);
	uint64_t before = __atomic_load_n(t->be_alloc, __ATOMIC_RELAXED);
	void *p = m(24);
	uint64_t after = __atomic_load_n(t->be_alloc, __ATOMIC_RELAXED);
	f(p);
	mli_callout_end(t, MLI_CALLOUT_INVISIBLE);
	if (!p || after - before >= 24)
		return MLI_MALLOC_OURS;
	bool valgrind = false;
	dl_iterate_phdr(find_vgpreload, &valgrind);
	Dl_info info, exe;
	if (valgrind || !dladdr((void *)m, &info) || !info.dli_fname)
		return valgrind ? MLI_MALLOC_TOOL : MLI_MALLOC_LIBRARY;
	*path = info.dli_fname;
	return dladdr((void *)getauxval(AT_PHDR), &exe) && exe.dli_fbase == info.dli_fbase
		? MLI_MALLOC_PROGRAM : MLI_MALLOC_LIBRARY;
}
