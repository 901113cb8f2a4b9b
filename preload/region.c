/* region.c: where sampled blocks live, and the free() that notices them.
 *
 * The profiler must learn when a tracked block is freed, but in the default
 * library free() is jemalloc's own and costs nothing extra. So the profiler
 * lives in a second build, libmemlimits-prof.so (MLI_PROF_BUILD), whose
 * free first checks whether the pointer lies in a reserved, aligned address
 * range of REGION_BITS bits, where sampled blocks (one per
 * MEMLIMITS_SAMPLE_INTERVAL bytes on average) live instead of in jemalloc:
 * four instructions. (A GNU ifunc choosing at load would make ld.so warn
 * "Relink libc.so.6" in every program, since libc is relocated first.)
 *
 * Blocks are slots of a power-of-two number of pages, carved from the range
 * by a bump pointer and recycled through per-class free lists, under one
 * spin lock (sampled allocations are rare). A 64-byte header before each
 * block holds its size and the profiler's record of it. The lock is a leaf
 * (rules in core/output.c): no system call under it. A signal handler
 * whose thread holds it (the thread-local `holding`) does not wait: a slot
 * it frees is queued on a lock-free list that the next holder files, and
 * a block it allocates comes from jemalloc, untracked. The lock is taken
 * around fork (mli_be_sample_fork).
 *
 * The range is the whole aligned window of 2^REGION_BITS bytes when the
 * address space allows (reserving it takes twice that for a moment). Under
 * `ulimit -v` it is a smaller range inside one window, down to 16 MiB:
 * other mappings may then share the window, so a pointer with the window's
 * tag is the profiler's only if it lies in the range, and the slow side of
 * free hands the others to jemalloc. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core/internal.h"
#include "jemalloc.h"
#include "sys.h"

#define EXPORT __attribute__((visibility("default")))
#define REGION_BITS 34 /* 16 GiB of address space, never of memory;
			* also in alloc.c and tracking_free */
#define PAGE 4096
#define NCLASS 23      /* slots of 2^0 .. 2^22 pages (16 GiB) */

/* p >> REGION_BITS of every region block; no user pointer has it until the
 * region exists (addresses stay below 2^47). */
uint64_t mli_region_tag = UINT64_MAX;
static char *region_base;
static size_t region_size;             /* bytes reserved from region_base */
#define WINDOW ((size_t)1 << REGION_BITS)
#define MIN_REGION ((size_t)16 << 20)
static uintptr_t region_next;          /* bump pointer, offset from base */
/* A free slot begins with its list link. */
struct free_slot {
	struct free_slot *next;
	size_t dirty; /* bytes from its start that blocks have used and that
		       * were kept as they were, not returned to the system */
};
static struct free_slot *free_slots[NCLASS]; /* per-class free slots */
#define CACHE_DIRTY ((size_t)64 << 20)
static size_t cached_dirty;            /* dirty bytes of free slots */
static int region_lock;
static __thread int holding;           /* this thread holds or takes it */
static struct free_slot *pending;      /* freed by handlers (lock-free) */
static int64_t region_live;            /* usable bytes of live blocks (atomic) */
/* A sampled request that did not fit, until the caller knows whether
 * jemalloc served it (mli_region_unplaced). */
static __thread size_t unplaced;

static bool lock_region(void)
{
	if (holding)
		return false;
	holding = 1;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	mli_spin_lock(&region_lock);
	return true;
}

static void unlock_region(void)
{
	mli_spin_unlock(&region_lock);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	holding = 0;
}

static unsigned class_of(size_t slot)
{
	unsigned c = 0;
	while (((size_t)PAGE << c) < slot)
		c++;
	return c;
}

/* Under the lock: files the slots that handlers freed meanwhile. */
static void file_pending(void)
{
	struct free_slot *f = __atomic_exchange_n(&pending, NULL, __ATOMIC_ACQUIRE);
	while (f) {
		struct free_slot *next = f->next;
		unsigned c = (unsigned)f->dirty; /* a pending slot's class, see below */
		f->dirty = 0;
		f->next = free_slots[c];
		free_slots[c] = f;
		f = next;
	}
}

/* Around fork, from core/output.c's handlers, in their order. */
void mli_be_sample_fork(int phase)
{
	static bool took;
	if (phase == 0)
		took = lock_region();
	else if (took)
		unlock_region();
}


static void *reserve(void *at, size_t size, int flags)
{
	void *p = mli_sys_mmap(at, size, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | flags, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* size bytes of address space inside one window, or NULL. */
static char *reserve_in_window(size_t size)
{
	char *p = reserve(NULL, size, 0);
	if (!p)
		return NULL;
	uintptr_t last = (uintptr_t)p + size - 1;
	if (((uintptr_t)p >> REGION_BITS) == (last >> REGION_BITS))
		return p;
	/* It straddles two windows: try again from the boundary it crosses,
	 * then just below it. */
	mli_sys_munmap(p, size);
	uintptr_t edge = last & ~(uintptr_t)(WINDOW - 1);
	uintptr_t at[2] = { edge, edge - size };
	for (int i = 0; i < 2; i++) {
		p = reserve((void *)at[i], size, MAP_FIXED_NOREPLACE);
		if (p && (uintptr_t)p == at[i])
			return p;
		if (p) /* a kernel without NOREPLACE */
			mli_sys_munmap(p, size);
	}
	return NULL;
}

int mli_be_sample_init(void)
{
	if (region_base)
		return 0;
	size_t size = WINDOW;
	/* Reserve two windows' worth, keep the aligned one: address space only. */
	char *p = reserve(NULL, 2 * WINDOW, 0);
	if (p) {
		uintptr_t a = ((uintptr_t)p + WINDOW - 1) & ~(uintptr_t)(WINDOW - 1);
		if (a > (uintptr_t)p)
			mli_sys_munmap(p, a - (uintptr_t)p);
		mli_sys_munmap((char *)a + WINDOW, (uintptr_t)p + WINDOW - a);
		p = (char *)a;
	} else {
		for (; size >= MIN_REGION; size /= 4)
			if ((p = reserve_in_window(size)))
				break;
		if (!p)
			return -1;
	}
	region_base = p;
	region_size = size;
	__atomic_store_n(&mli_region_tag, (uintptr_t)p >> REGION_BITS,
			 __ATOMIC_RELEASE);
	return 0;
}

/* Once, when a sampled block was left out of the profile: served by
 * jemalloc because it did not fit in the range. */
static void say_full(size_t n)
{
	static int said;
	if (__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
		return;
	char text[200];
	struct mli_buf b = { text, 0, sizeof text };
	mli_buf_str(&b, "memlimits: a sampled block of ");
	mli_buf_size(&b, n);
	mli_buf_str(&b, " does not fit in the profiler's range (");
	mli_buf_size(&b, region_size);
	mli_buf_str(&b, "): it and any others are served untracked, outside"
			" the profile\n");
	mli_say(b.p, b.len);
}

/* After a sampled request fell back to jemalloc (get_block in alloc.c): p
 * is what jemalloc gave. A request that did not fit is worth a message
 * only if it was served: a request no allocator could serve
 * (malloc(PTRDIFF_MAX)) fails anyway, and must not use up the once-only
 * message that a real one needs. */
void mli_region_unplaced(const void *p)
{
	size_t n = unplaced;
	unplaced = 0;
	if (n && p)
		say_full(n);
}

struct hdr {
	uint64_t magic;
	size_t size;       /* usable: what jemalloc would give the request */
	size_t slot;       /* bytes of the slot */
	char *slot_start;
	size_t dirty;      /* the slot's bytes that blocks have used */
	struct mli_sampled rec; /* the profiler's record */
};
_Static_assert(sizeof(struct hdr) <= 64, "the header must fit in 64 bytes");
#define HDR_MAGIC 0x6d6c7361u

static struct hdr *hdr_of(const void *p)
{
	return (struct hdr *)((char *)p - 64);
}

/* Exact: in the range, not only in its window. */
bool mli_region_owns(const void *p)
{
	return ((uintptr_t)p >> REGION_BITS) ==
		       __atomic_load_n(&mli_region_tag, __ATOMIC_RELAXED) &&
	       (uintptr_t)p - (uintptr_t)region_base < region_size;
}

void *mli_be_sample_alloc(size_t n, size_t align, bool zero,
			  struct mli_sampled **rec)
{
	if (!region_base || holding)
		return NULL; /* a signal handler of the lock's holder: untracked */
	/* The block gets the usable size jemalloc would give the same request,
	 * so that malloc_usable_size, realloc's growth and the heap measure are
	 * the same whether or not the block was sampled. */
	int lg = 0;
	while (((size_t)1 << lg) < align)
		lg++;
	size_t usable = mli_je_nallocx(n ? n : 1, align > 16 ? lg : 0);
	if (!usable)
		return NULL; /* no allocator could serve it */
	if (n > region_size / 4) {
		unplaced = n;
		return NULL;
	}
	if (align < 64)
		align = 64;
	size_t need = 64 + usable + (align > 64 ? align : 0);
	unsigned c = 0;
	while (((size_t)PAGE << c) < need)
		c++;
	if (c >= NCLASS)
		return NULL;
	size_t slot = (size_t)PAGE << c;
	if (!lock_region())
		return NULL;
	file_pending();
	char *s = (char *)free_slots[c];
	size_t dirty = 0;
	bool fresh = false;
	if (s) {
		free_slots[c] = ((struct free_slot *)s)->next;
		dirty = ((struct free_slot *)s)->dirty;
		cached_dirty -= dirty;
	} else if (((region_next + slot - 1) & ~(uintptr_t)(slot - 1)) + slot <=
		   region_size) {
		/* Slots of one class are aligned to their size. */
		region_next = (region_next + slot - 1) & ~(uintptr_t)(slot - 1);
		s = region_base + region_next;
		region_next += slot;
		fresh = true;
	} else {
		/* The range is used up (a small one, under ulimit -v): a free
		 * slot of a larger class serves, whole. */
		for (unsigned k = c + 1; k < NCLASS && !s; k++)
			if ((s = (char *)free_slots[k]) != NULL) {
				slot = (size_t)PAGE << k;
				free_slots[k] = ((struct free_slot *)s)->next;
				dirty = ((struct free_slot *)s)->dirty;
				cached_dirty -= dirty;
			}
	}
	unlock_region();
	if (fresh && mli_sys_mprotect(s, slot, PROT_READ | PROT_WRITE) != 0)
		return NULL; /* the slot is lost: address space only */
	if (!s) {
		unplaced = n;
		return NULL;
	}
	char *p = (char *)(((uintptr_t)s + 64 + align - 1) & ~(uintptr_t)(align - 1));
	size_t end = (size_t)(p - s) + usable;
	if (zero && dirty > (size_t)(p - s))
		memset(p, 0, (dirty < end ? dirty : end) - (size_t)(p - s));
	struct hdr *h = hdr_of(p);
	h->magic = HDR_MAGIC;
	h->size = usable;
	h->slot = slot;
	h->slot_start = s;
	h->dirty = dirty > end ? dirty : end;
	memset(&h->rec, 0, sizeof h->rec);
	__atomic_fetch_add(&region_live, (int64_t)usable, __ATOMIC_RELAXED);
	mli_mem_base_add((int64_t)usable);
	mli_mem_settle(&mli_tls); /* the admitted block is in the measure */
	*rec = &h->rec;
	return p;
}

size_t mli_be_sample_size(const void *p)
{
	return hdr_of(p)->size;
}

struct mli_sampled *mli_be_sample_record(const void *p)
{
	return &hdr_of(p)->rec;
}

void mli_region_release(void *p)
{
	struct hdr *h = hdr_of(p);
	if (h->magic != HDR_MAGIC)
		return; /* not a block: leak rather than corrupt */
	char *s = h->slot_start;
	unsigned c = class_of(h->slot);
	__atomic_fetch_sub(&region_live, (int64_t)h->size, __ATOMIC_RELAXED);
	mli_mem_base_add(-(int64_t)h->size);
	h->magic = 0;
	/* Keep up to CACHE_DIRTY bytes of freed slots as they are, for reuse
	 * without page faults (calloc zeroes what was used); give the memory
	 * of the others back, which also zeroes it. Counted by the bytes used,
	 * not by the slot: a 4.1 MiB block has an 8 MiB slot. */
	size_t dirty = (h->dirty + PAGE - 1) & ~(size_t)(PAGE - 1);
	struct free_slot *f = (struct free_slot *)s;
	if (!lock_region()) {
		/* A signal handler of the lock's holder: the memory goes back
		 * (a clean slot), and the slot is filed by the next holder; its
		 * class travels in `dirty` meanwhile. */
		mli_sys_madvise(s, dirty, MADV_DONTNEED);
		f->dirty = c;
		struct free_slot *head = __atomic_load_n(&pending, __ATOMIC_RELAXED);
		do
			f->next = head;
		while (!__atomic_compare_exchange_n(&pending, &head, f, true,
						    __ATOMIC_RELEASE, __ATOMIC_RELAXED));
		return;
	}
	bool keep = cached_dirty + dirty <= CACHE_DIRTY;
	if (!keep) {
		unlock_region();
		mli_sys_madvise(s, dirty, MADV_DONTNEED); /* no system call under the lock */
		dirty = 0;
		lock_region(); /* cannot fail: the first one did not */
	}
	cached_dirty += dirty;
	f->dirty = dirty;
	f->next = free_slots[c];
	free_slots[c] = f;
	unlock_region();
}

/* realloc in place: the block takes the usable size jemalloc would give n
 * (flags: jemalloc's), as its realloc would, so that later growth is
 * counted from the same base with or without sampling. It shrinks always;
 * it grows while the new size fits in its slot, which is a power of two
 * of pages: a buffer grown by small steps is copied once per doubling
 * here, where jemalloc copies it about four times (its large size classes
 * are four per doubling). */
bool mli_be_sample_resize(void *p, size_t n, int flags)
{
	struct hdr *h = hdr_of(p);
	size_t usable = mli_je_nallocx(n ? n : 1, flags);
	size_t off = (size_t)((char *)p - h->slot_start);
	if (!usable || usable > h->slot - off)
		return false;
	if (usable > h->size && n <= h->size)
		return true; /* a shrink that jemalloc's class would round up */
	int64_t d = (int64_t)usable - (int64_t)h->size;
	__atomic_fetch_add(&region_live, d, __ATOMIC_RELAXED);
	mli_mem_base_add(d);
	mli_mem_settle(&mli_tls); /* the admitted growth is in the measure */
	h->size = usable;
	if (off + usable > h->dirty)
		h->dirty = off + usable;
	return true;
}

int64_t mli_be_sample_live(void)
{
	return __atomic_load_n(&region_live, __ATOMIC_RELAXED);
}

/* ---- free and malloc_usable_size, chosen at load ------------------------ */

/* The slow side of the tracking free: a pointer in the region's window. */
__attribute__((used)) void mli_free_sampled(void *p)
{
	if (!mli_region_owns(p)) {
		mli_je_free(p); /* another mapping in a shared window */
		return;
	}
	mli_prof_freed(p);
	mli_region_release(p);
}

#ifdef MLI_PROF_BUILD
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((naked, used)) static void tracking_free(void *p)
{
	__asm__("movq %rdi, %rax\n\t"
		"shrq $34, %rax\n\t"
		"cmpq mli_region_tag(%rip), %rax\n\t"
		"jne mli_je_free\n\t"
		"jmp mli_free_sampled\n\t");
}
_Static_assert(REGION_BITS == 34, "tracking_free's shift");
#else
static void tracking_free(void *p)
{
	if (mli_region_owns(p))
		mli_free_sampled(p);
	else
		mli_je_free(p);
}
#endif

static size_t tracking_usable_size(void *p)
{
	return p && mli_region_owns(p) ? mli_be_sample_size(p)
				       : mli_je_malloc_usable_size(p);
}
#endif /* MLI_PROF_BUILD */

/* Which build this is: the profiling build exports the tracking free. */
bool mli_be_free_tracking(void)
{
#ifdef MLI_PROF_BUILD
	return true;
#else
	return false;
#endif
}

#ifdef MLI_PROF_BUILD
EXPORT void free(void *p) __attribute__((alias("tracking_free")));
EXPORT size_t malloc_usable_size(void *p)
	__attribute__((alias("tracking_usable_size")));
#endif
