/* dontfork.c: the mappings that leave a forked child's account. Mappings
 * marked MADV_DONTFORK are not in the child: RDMA libraries, DPDK and QEMU
 * mark their buffers so; the child kept the parent's 80 MiB in its measure
 * and was refused 40 MiB under a 100M limit, its memory nearly empty (a
 * held-out check). Shared anonymous mappings are in the child, but they are
 * the parent's memory, counted there: a child that counted them too would
 * count them twice in a tree, and have its parent's share taken from its
 * own limit.
 *
 * Both kinds of range are kept here, under the account's lock (mmap.c):
 * added by madvise(MADV_DONTFORK) or a shared mmap, cut by MADV_DOFORK (the
 * marks), munmap and a mapping made over them, moved with a range mremap
 * moves (the kernel moves the mark, and the shared pages). At most
 * MLI_MARKS_MAX ranges of each (core/marks.c): past that, they are not
 * followed (their pages stay in the child's measure, over, not under). */
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

/* Under the account's lock. */
static struct mli_marks marked_ranges; /* MADV_DONTFORK */
static struct mli_marks shared_ranges; /* shared anonymous mappings */
static struct mli_marks *const sets[] = { &marked_ranges, &shared_ranges };
#define NSETS (sizeof sets / sizeof sets[0])

void mli_dontfork_forget(uintptr_t lo, size_t len)
{
	for (size_t i = 0; i < NSETS; i++)
		mli_marks_forget(sets[i], lo, lo + len);
}

void mli_dontfork_shared(uintptr_t lo, size_t len)
{
	mli_marks_add(&shared_ranges, lo, lo + len);
}

/* Counted bytes a forked child would not have in its measure (fork.c: mli_fork_begin). */
uint64_t mli_dontfork_counted(void)
{
	uint64_t sum = 0;
	if (!mli_acct_enter())
		return 0;
	for (size_t i = 0; i < NSETS; i++)
		for (int j = 0; j < sets[i]->n; j++) {
			uint64_t c, tracked;
			mli_maps_stat(sets[i]->r[j].lo, sets[i]->r[j].hi - sets[i]->r[j].lo,
				      &c, &tracked);
			sum += c;
		}
	mli_acct_leave();
	return sum;
}

/* Is any of [lo, lo+len) a shared mapping the account holds? */
bool mli_dontfork_is_shared(uintptr_t lo, size_t len)
{
	return mli_marks_touch(&shared_ranges, lo, lo + len);
}

void mli_dontfork_moved(uintptr_t from, size_t from_len, uintptr_t to, size_t to_len,
			bool keep_old)
{
	for (size_t i = 0; i < NSETS; i++) {
		bool was = mli_marks_cover(sets[i], from, from + from_len);
		if (!keep_old)
			mli_marks_forget(sets[i], from, from + from_len);
		mli_marks_forget(sets[i], to, to + to_len);
		if (was)
			mli_marks_add(sets[i], to, to + to_len);
	}
}

/* In a forked child, from mmap.c's handler: the marked ranges are not
 * there, the shared ones are its parent's. */
void mli_dontfork_child(void)
{
	for (size_t i = 0; i < NSETS; i++) {
		const struct mli_mark *r = sets[i]->r;
		for (int j = 0; j < sets[i]->n; j++)
			mli_acct_settle(0, mli_maps_unmap(r[j].lo, r[j].hi - r[j].lo));
		sets[i]->n = 0;
	}
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
			mli_marks_forget(&marked_ranges, (uintptr_t)addr,
					 (uintptr_t)addr + rlen);
	}
	mli_acct_leave();
	errno = r == 0 ? saved : e;
	return r;
}

EXPORT int __madvise(void *addr, size_t len, int advice) __attribute__((alias("madvise"), copy(madvise)));

/* For syscall.c (sys.h): bound here, whatever the symbol table says. */
#pragma GCC diagnostic ignored "-Wmissing-attributes"
MLI_SELF(madvise);
