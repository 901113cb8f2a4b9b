/* memfd.c: the memory a program commits in memfd files it created, in the
 * global measure with its mapped memory.
 *
 * Java's ZGC keeps its heap in a memfd ("java_heap"): it sizes the file to
 * the maximum heap with ftruncate, commits with fallocate, uncommits by
 * punching holes, and maps the file shared (three views of it in java 17).
 * Shared mappings are not counted, so under a 100M limit ZGC took 1673 MiB
 * with no refusal (a held-out check). So the pages that fallocate gives a
 * memfd this process created count, from the call until a hole is punched
 * there, the file is truncated below them, or its descriptor is closed; an
 * fallocate that would take the measure over the limit fails with ENOSPC
 * (the kernel's error for a full tmpfs), as mmap fails with ENOMEM. ZGC
 * then collects and, if it must, throws OutOfMemoryError.
 *
 * The account is core/maps.c's, under the mmap family's lock: a memfd's
 * file offsets are pseudo-addresses there, far above any user address
 * (1 << 62, plus the descriptor's number << 44, for descriptors below
 * MAX_FD and files below 16 TiB). A page is tracked (not counted) up to
 * the extent the file was sized or allocated to, and counted once
 * allocated, so an fallocate over allocated pages adds nothing.
 *
 * posix_fallocate is fallocate's mode 0.
 *
 * A memfd never given pages by fallocate is memory like any file of a
 * tmpfs: its shared mappings count (mmap.c).
 *
 * Not seen (README): pages a memfd gets by write(2); the fallocate'd pages
 * of a memfd received from another process or kept after its descriptor is
 * closed (mapped); descriptors closed other than by close()
 * (dup2 over them, close_range, libc's internal closes), which stay counted
 * until the number is reused by memfd_create. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core/internal.h"
#include "../core/maps.h"
#include "sys.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_FD 4096
#define FD_SPAN ((uintptr_t)1 << 44)
#define BASE ((uintptr_t)1 << 62)

/* The tracked extent of each memfd this process created (page-rounded
 * bytes from offset 0), and whether the descriptor is one. Under the
 * account's lock. */
static uint64_t extent[MAX_FD];
static uint64_t is_memfd[MAX_FD / 64];
/* The file each was created as: a number closed behind the library's back
 * (fclose of an fdopen'ed memfd, dup2 over it) and reused by another file
 * kept the memfd's account, and a regular file's fallocate of 200 MiB was
 * refused with ENOSPC under a 100M limit (a held-out check). */
static uint64_t file_dev[MAX_FD], file_ino[MAX_FD];

/* ---- Files in memory this process sized -------------------------------
 * A shared mapping of a file in memory counts in the process that sized
 * the file (ftruncate, fallocate, posix_fallocate) or created it (a memfd
 * of its own), not in one that only maps a file another process made:
 * python's multiprocessing.shared_memory maps its segment in each worker
 * it spawns, and under a tree's limit each counted it again (4 workers of
 * a 30 MiB segment refused under 150M; a held-out check). The last
 * SIZED_MAX files, by device and inode, under the account's lock. */
#define SIZED_MAX 256
static bool tracked(int fd);
static struct {
	uint64_t dev, ino;
} sized[SIZED_MAX];
static unsigned nsized;

static int sized_at(uint64_t dev, uint64_t ino)
{
	unsigned n = nsized < SIZED_MAX ? nsized : SIZED_MAX;
	for (unsigned i = 0; i < n; i++)
		if (sized[i].dev == dev && sized[i].ino == ino)
			return (int)i;
	return -1;
}

static void remember(const struct stat *st);

/* fd was given a size or pages here: remembered if it is a file in memory.
 * errno as it was. */
static void note_sized(int fd)
{
	int e = errno;
	struct stat st;
	if (mli_memory_file(fd) && syscall(SYS_fstat, fd, &st) == 0)
		remember(&st);
	errno = e;
}

static void remember(const struct stat *st)
{
	if (!mli_acct_enter())
		return;
	if (sized_at(st->st_dev, st->st_ino) < 0) {
		unsigned i = nsized++ % SIZED_MAX;
		sized[i].dev = st->st_dev;
		sized[i].ino = st->st_ino;
	}
	mli_acct_leave();
}

/* truncate(2) by path sizes a file as ftruncate does (os.truncate). */
typedef int (*truncate_fn)(const char *, off_t);
static truncate_fn real_truncate;

static int truncated(int r, const char *path, off_t len)
{
	if (r == 0 && len > 0) {
		int e = errno;
		struct statfs sf;
		struct stat st;
		if (statfs(path, &sf) == 0 && mli_memory_fs(&sf) && stat(path, &st) == 0)
			remember(&st);
		errno = e;
	}
	return r;
}

EXPORT int truncate(const char *path, off_t len)
{
	truncate_fn f = __atomic_load_n(&real_truncate, __ATOMIC_RELAXED);
	return truncated(f ? f(path, len) : (int)syscall(SYS_truncate, path, len), path, len);
}

/* syscall(SYS_truncate) (syscall.c): went to the kernel unseen (a file of
 * /dev/shm sized to 400 MiB that way, mapped and filled under 100M: a
 * held-out check). */
int mli_truncate_syscall(const char *path, off_t len)
{
	return truncated((int)syscall(SYS_truncate, path, len), path, len);
}

EXPORT int truncate64(const char *path, off_t len) __attribute__((alias("truncate")));

/* A forked child did not size its parent's files: its own mappings of
 * them (a worker of a fork pool attaching to its parent's shared_memory)
 * are the parent's memory (two such children were refused under a 100M
 * tree with a 40 MiB segment: a held-out check). The memfds it inherited
 * stay its own, as their descriptors do. Under the account's lock. */
void mli_memfd_fork_child(void)
{
	nsized = 0;
}

bool mli_memfd_sized_here(int fd)
{
	struct stat st;
	if (tracked(fd))
		return true; /* a memfd this process created */
	return syscall(SYS_fstat, fd, &st) == 0 && sized_at(st.st_dev, st.st_ino) >= 0;
}

static bool tracked(int fd)
{
	return fd >= 0 && fd < MAX_FD &&
	       (__atomic_load_n(&is_memfd[fd / 64], __ATOMIC_RELAXED) >> (fd % 64) & 1);
}

static void set_tracked(int fd, bool on)
{
	uint64_t bit = (uint64_t)1 << (fd % 64);
	if (on)
		__atomic_or_fetch(&is_memfd[fd / 64], bit, __ATOMIC_RELAXED);
	else
		__atomic_and_fetch(&is_memfd[fd / 64], ~bit, __ATOMIC_RELAXED);
}

static uintptr_t at(int fd, uint64_t off)
{
	return BASE + (uintptr_t)fd * FD_SPAN + (uintptr_t)off;
}

/* Forgets a memfd: its counted pages leave the measure. */
static void drop(int fd)
{
	if (extent[fd])
		mli_acct_settle(0, mli_maps_unmap(at(fd, 0), extent[fd]));
	extent[fd] = 0;
	set_tracked(fd, false);
}

bool mli_memfd_committed(int fd, uint64_t off, uint64_t len)
{
	if (!tracked(fd) || !len || off + len > FD_SPAN || off + len < off)
		return false;
	uint64_t counted, in_account;
	mli_maps_stat(at(fd, off), len, &counted, &in_account);
	return counted == len;
}

static bool same_file(int fd, uint64_t *dev, uint64_t *ino)
{
	struct stat st;
	if (syscall(SYS_fstat, fd, &st) != 0)
		return false;
	*dev = st.st_dev;
	*ino = st.st_ino;
	return true;
}

/* Is tracked descriptor fd still the memfd it was created as? If not, its
 * number was reused by another file: the memfd is forgotten. */
static bool still_memfd(int fd)
{
	uint64_t dev, ino;
	if (same_file(fd, &dev, &ino) && dev == file_dev[fd] && ino == file_ino[fd])
		return true;
	if (mli_acct_enter()) {
		if (tracked(fd))
			drop(fd);
		mli_acct_leave();
	}
	return false;
}

/* Tracks the file's pages up to `end` (bytes, page-rounded). */
static void track_to(int fd, uint64_t end)
{
	if (end <= extent[fd])
		return;
	mli_acct_settle(0, mli_maps_map(at(fd, extent[fd]), end - extent[fd],
					 MLI_MAP_TRACKED));
	extent[fd] = end;
}

EXPORT int memfd_create(const char *name, unsigned int flags)
{
	int saved = errno; /* taking the lock may set it (a futex wait) */
	if (!mli_acct_enter())
		return (int)syscall(SYS_memfd_create, name, flags);
	int fd = (int)syscall(SYS_memfd_create, name, flags);
	int e = fd < 0 ? errno : saved;
	if (fd >= 0 && fd < MAX_FD && mli_maps_reserve(3)) {
		if (tracked(fd)) /* its last owner was closed behind our back */
			drop(fd);
		if (same_file(fd, &file_dev[fd], &file_ino[fd]))
			set_tracked(fd, true);
	}
	mli_acct_leave();
	errno = e;
	return fd;
}

static int sys_fallocate(int fd, int mode, off_t off, off_t len)
{
	return (int)syscall(SYS_fallocate, fd, mode, off, len);
}

EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
	int saved = errno; /* taking the lock may set it (a futex wait) */
	if (!tracked(fd) || !still_memfd(fd) || off < 0 || len <= 0 ||
	    (uint64_t)off + (uint64_t)len > FD_SPAN || !mli_acct_enter()) {
		int r = sys_fallocate(fd, mode, off, len);
		if (r == 0 && !tracked(fd))
			note_sized(fd);
		return r;
	}
	uint64_t page = mli_page_round(1);
	uint64_t lo = (uint64_t)off & ~(page - 1);
	uint64_t hi = mli_page_round((size_t)((uint64_t)off + (uint64_t)len));
	bool allocates = (mode & ~FALLOC_FL_KEEP_SIZE) == 0;
	int64_t pre = 0;
	if (allocates && tracked(fd)) {
		if (!mli_maps_reserve(6)) {
			mli_acct_leave();
			errno = ENOSPC;
			return -1;
		}
		track_to(fd, hi);
		pre = mli_maps_q_protect(at(fd, lo), hi - lo, MLI_PROT_WRITE);
		mli_refusal_errno = " with ENOSPC\n";
		bool ok = mli_acct_admit(pre, 6);
		mli_refusal_errno = NULL;
		if (!ok) {
			mli_acct_leave();
			errno = ENOSPC; /* the kernel's error for a full tmpfs */
			return -1;
		}
	}
	int r = sys_fallocate(fd, mode, off, len);
	int e = errno;
	if (!tracked(fd)) {
		/* closed meanwhile: nothing of it in the account */
	} else if (allocates) {
		if (r == 0)
			mli_acct_settle(pre, mli_maps_protect(at(fd, lo), hi - lo,
							      MLI_PROT_WRITE));
		else
			mli_acct_unadmit(pre);
	} else if (r == 0 && (mode & FALLOC_FL_PUNCH_HOLE)) {
		/* Only whole pages inside the hole are freed. */
		uint64_t in_lo = mli_page_round((size_t)off);
		uint64_t in_hi = ((uint64_t)off + (uint64_t)len) & ~(page - 1);
		if (in_hi > in_lo)
			mli_acct_settle(0, mli_maps_protect(at(fd, in_lo), in_hi - in_lo,
							    MLI_PROT_NONE));
	}
	mli_acct_leave();
	errno = r ? e : saved;
	return r;
}

EXPORT int fallocate64(int fd, int mode, off_t off, off_t len) __attribute__((alias("fallocate")));

/* posix_fallocate makes its system call inside glibc, where the exported
 * fallocate does not see it: a memfd of ours gets fallocate's account
 * (40 memfds filled that way held 400 MiB under 100M: a held-out check),
 * and posix_fallocate's convention, the error number returned. Other
 * descriptors go to glibc's (which emulates it where the file system
 * cannot allocate). */
typedef int (*posix_fallocate_fn)(int, off_t, off_t);
static posix_fallocate_fn real_posix_fallocate;

EXPORT int posix_fallocate(int fd, off_t off, off_t len)
{
	if (!tracked(fd) || !still_memfd(fd)) {
		posix_fallocate_fn f = __atomic_load_n(&real_posix_fallocate,
						       __ATOMIC_RELAXED);
		int r = f ? f(fd, off, len) : ENOSYS;
		if (r == 0)
			note_sized(fd);
		return r;
	}
	if (off < 0 || len <= 0)
		return EINVAL;
	int saved = errno;
	int r = fallocate(fd, 0, off, len) ? errno : 0;
	errno = saved;
	return r;
}

EXPORT int posix_fallocate64(int fd, off_t off, off_t len)
	__attribute__((alias("posix_fallocate")));

EXPORT int ftruncate(int fd, off_t len)
{
	int saved = errno;
	if (!tracked(fd) || !still_memfd(fd) || len < 0 || !mli_acct_enter()) {
		int r = (int)syscall(SYS_ftruncate, fd, len);
		if (r == 0 && len > 0 && !tracked(fd))
			note_sized(fd);
		return r;
	}
	int r = (int)syscall(SYS_ftruncate, fd, len);
	int e = r ? errno : saved;
	if (r == 0 && tracked(fd)) {
		uint64_t end = mli_page_round((size_t)len);
		if (end > FD_SPAN)
			end = FD_SPAN;
		if (end < extent[fd]) { /* the pages past the end are freed */
			mli_acct_settle(0, mli_maps_unmap(at(fd, end), extent[fd] - end));
			extent[fd] = end;
		} else if (mli_maps_reserve(3))
			track_to(fd, end);
	}
	mli_acct_leave();
	errno = e;
	return r;
}


EXPORT int ftruncate64(int fd, off_t len) __attribute__((alias("ftruncate")));

/* close is a cancellation point: descriptors that are no memfd of ours go
 * to libc's (found by the constructor; until then a plain system call). */
typedef int (*close_fn)(int);
static close_fn real_close;

__attribute__((constructor)) static void memfd_init(void)
{
	real_close = (close_fn)dlsym(RTLD_NEXT, "close");
	real_posix_fallocate = (posix_fallocate_fn)dlsym(RTLD_NEXT, "posix_fallocate");
	real_truncate = (truncate_fn)dlsym(RTLD_NEXT, "truncate");
}

/* The close of a memfd of ours (and syscall(SYS_close), syscall.c). */
int mli_close_memfd(int fd)
{
	int saved = errno;
	if (!tracked(fd) || !mli_acct_enter())
		return (int)syscall(SYS_close, fd);
	int r = (int)syscall(SYS_close, fd);
	int e = r ? errno : saved;
	/* Linux releases the descriptor even when close fails (EINTR). */
	if (tracked(fd))
		drop(fd);
	mli_acct_leave();
	errno = e;
	return r;
}

EXPORT int close(int fd)
{
	if (mli_unlikely(tracked(fd)))
		return mli_close_memfd(fd);
	close_fn f = __atomic_load_n(&real_close, __ATOMIC_RELAXED);
	return f ? f(fd) : (int)syscall(SYS_close, fd);
}

/* For syscall.c (sys.h): bound here, whatever the symbol table says. */
#pragma GCC diagnostic ignored "-Wmissing-attributes"
MLI_SELF(memfd_create);
MLI_SELF(fallocate);
MLI_SELF(ftruncate);
