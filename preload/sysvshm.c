/* sysvshm.c: System V shared memory in the global measure. A segment
 * attached with shmat is a shared mapping of a file in memory (the
 * kernel's shm file system), counted as mmap.c counts a shared anonymous
 * mapping: by its size, in the process that attaches it, from shmat to
 * shmdt (or an munmap or a mapping placed over it), attached SHM_RDONLY
 * too (a read of a page not yet made makes it: 400 MiB under 100M, a
 * held-out check); not in forked children, which inherit the
 * attachment (dontfork.c). Before, a program could hold any amount that
 * way under a limit (shmget of 400 MiB, attached and written, under 100M).
 *
 * shmdt names only the address: the size of each attachment is kept here,
 * under the account's lock, for the last MAX_ATTACHED of them (an older
 * one's shmdt leaves it counted until its addresses are unmapped or mapped
 * again: over, not under). The calls go to the kernel directly, as glibc's
 * do; syscall(SYS_shmat) and syscall(SYS_shmdt) come here too (syscall.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core/internal.h"
#include "../core/maps.h"
#include "sys.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_ATTACHED 256

/* Under the account's lock; at[i] == 0: a free entry. */
static struct {
	uintptr_t at;
	size_t len;
} attached[MAX_ATTACHED];
static unsigned next_slot; /* where to record when every entry is taken */

static void record(uintptr_t at, size_t len)
{
	unsigned i;
	for (i = 0; i < MAX_ATTACHED; i++)
		if (!attached[i].at || attached[i].at == at)
			break;
	if (i == MAX_ATTACHED)
		i = next_slot++ % MAX_ATTACHED;
	attached[i].at = at;
	attached[i].len = len;
}

EXPORT void *shmat(int id, const void *addr, int flags)
{
	int saved = errno;
	struct shmid_ds ds;
	/* The size; a segment this process cannot read it cannot attach
	 * either, and the kernel's shmat says why. */
	if (syscall(SYS_shmctl, id, IPC_STAT, &ds) != 0 || !mli_acct_enter()) {
		errno = saved;
		return (void *)syscall(SYS_shmat, id, addr, flags);
	}
	size_t len = mli_page_round(ds.shm_segsz);
	uintptr_t want = (uintptr_t)addr;
	if (flags & SHM_RND)
		want &= ~((uintptr_t)SHMLBA - 1);
	/* At an address, SHM_REMAP replaces what is there (as MAP_FIXED);
	 * without it, the kernel fails an address in use. */
	int64_t pre = want && (flags & SHM_REMAP)
			      ? mli_maps_q_map(want, len, MLI_MAP_COUNTED) : (int64_t)len;
	if (!mli_acct_admit(pre, 6)) {
		mli_acct_leave();
		return (void *)-1;
	}
	void *r = (void *)syscall(SYS_shmat, id, addr, flags);
	if (r == (void *)-1) {
		int e = errno;
		mli_acct_unadmit(pre);
		mli_acct_leave();
		errno = e;
		return r;
	}
	mli_acct_settle(pre, mli_maps_map((uintptr_t)r, len, MLI_MAP_COUNTED));
	mli_dontfork_forget((uintptr_t)r, len);
	mli_dontfork_shared((uintptr_t)r, len);
	record((uintptr_t)r, len);
	mli_acct_leave();
	errno = saved;
	return r;
}

EXPORT int shmdt(const void *addr)
{
	int saved = errno;
	if (!mli_acct_enter())
		return (int)syscall(SYS_shmdt, addr);
	if (!mli_acct_admit(0, 6)) { /* no room in the account to split a range */
		mli_acct_leave();
		return -1;
	}
	int r = (int)syscall(SYS_shmdt, addr);
	int e = errno;
	for (unsigned i = 0; r == 0 && i < MAX_ATTACHED; i++)
		if (attached[i].at == (uintptr_t)addr) {
			mli_acct_settle(0, mli_maps_unmap(attached[i].at, attached[i].len));
			mli_dontfork_forget(attached[i].at, attached[i].len);
			attached[i].at = 0;
			break;
		}
	mli_acct_leave();
	errno = r == 0 ? saved : e;
	return r;
}

/* For syscall.c (sys.h): bound here, whatever the symbol table says. */
#pragma GCC diagnostic ignored "-Wmissing-attributes"
MLI_SELF(shmat);
MLI_SELF(shmdt);
