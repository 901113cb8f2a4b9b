/* mmap.c: the exported mmap family, which keeps the account of the memory
 * the program maps itself (core/maps.c) and asks the engine (core/mapped.h)
 * before a call makes more of it counted.
 *
 * Counted: private anonymous pages made writable through these calls: by
 * mmap with PROT_WRITE (MAP_NORESERVE or not), or by mprotect/pkey_mprotect
 * with PROT_WRITE on pages the account holds (a reservation committed).
 * PROT_NONE uncounts them (decommitted); read-only or executable keeps them
 * as they were (the kernel's commit charge stays too, and a W^X toggle of a
 * JIT's code is then never refused). munmap, an mmap over them, and mremap
 * do what they do to the mappings. Shared anonymous mappings, shared
 * mappings of files in memory (tmpfs: map_kind) and System V segments
 * (sysvshm.c) count the same way, but while readable as well as writable
 * (map_kind); other file mappings are never in the account.
 *
 * Every call takes the account's lock and holds it across the system call,
 * so that the account changes in the order the kernel's mappings did: a
 * munmap and another thread's mmap that gets the same addresses cannot be
 * recorded the other way round. These calls are no cancellation points, and
 * the lock is a futex, so a long munmap does not make waiters spin. A call
 * that would count more bytes is admitted first; if the engine refuses, it
 * fails as the kernel fails it (MAP_FAILED or -1, errno ENOMEM), so that the
 * runtime takes its own out-of-memory path.
 *
 * A call from a signal handler that interrupted this thread while it held
 * the lock (or while it was inside the engine) bypasses the account: it is
 * made and not recorded. What that costs: a mapping made there is not
 * counted, and counted pages it unmaps stay counted until their addresses
 * are mapped or unmapped through these calls again.
 *
 * The system calls are made directly (syscall(2)), not through libc's
 * functions: these may run before any constructor, in a signal handler,
 * and from the library's own code, with no dlsym. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../core/internal.h"
#include "../core/mapped.h"
#include "../core/maps.h"
#include "sys.h"
#include "tidlock.h"

#define EXPORT __attribute__((visibility("default")))

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* ---- The raw calls ------------------------------------------------------ */

void *mli_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

int mli_sys_munmap(void *addr, size_t len)
{
	return (int)syscall(SYS_munmap, addr, len);
}

int mli_sys_mprotect(void *addr, size_t len, int prot)
{
	return (int)syscall(SYS_mprotect, addr, len, prot);
}

static void *sys_mremap(void *old, size_t old_len, size_t new_len, int flags,
			void *to)
{
	return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, to);
}

void *mli_sys_mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *to = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		to = va_arg(ap, void *);
		va_end(ap);
	}
	return sys_mremap(old, old_len, new_len, flags, to);
}

int mli_sys_madvise(void *addr, size_t len, int advice)
{
	return (int)syscall(SYS_madvise, addr, len, advice);
}

/* glibc's pkey_mprotect with pkey -1 is mprotect (for kernels without
 * protection keys). */
static int sys_pkey_mprotect(void *addr, size_t len, int prot, int pkey)
{
	if (pkey == -1)
		return mli_sys_mprotect(addr, len, prot);
	return (int)syscall(SYS_pkey_mprotect, addr, len, prot, pkey);
}

/* ---- The account's lock -------------------------------------------------- */

/* A tid lock (tidlock.h): the holder is in the word, set by the compare-
 * and-exchange that takes it, so a fork from a signal handler knows
 * whether its thread holds the lock or was waiting for another's: such a
 * fork took the wait for a hold, and its child had the lock held by a
 * thread it does not have (160 of 200 _Fork children hung, 15 of 30 fork
 * children: a held-out check). */
static int acct_lock;
/* This thread holds the lock or is taking it: a signal handler's call must
 * bypass the account rather than wait for its own thread. */
static __thread uint8_t acct_held __attribute__((tls_model("initial-exec")));
/* This thread's id (0: not read yet; a forked child reads its own). */
static __thread int acct_tid __attribute__((tls_model("initial-exec")));

static int me(void)
{
	if (!acct_tid)
		acct_tid = (int)syscall(SYS_gettid);
	return acct_tid;
}

static void lock_take(void)
{
	mli_tidlock_take(&acct_lock, me());
}

static bool lock_owned(void)
{
	return mli_tidlock_held_by(&acct_lock, me());
}

static void lock_give(void)
{
	mli_tidlock_give(&acct_lock);
}

/* In a forked child, whose thread has an id of its own: a lock this thread
 * held is held under that id. */
static void lock_forked(void)
{
	bool mine = lock_owned();
	acct_tid = 0;
	if (mine)
		__atomic_store_n(&acct_lock, me(), __ATOMIC_RELAXED);
}

/* The caller's cancellation state while it holds the lock: disabled, as
 * a refusal's breach line is written with write(2), a cancellation point;
 * a thread cancelled there left the lock held and every later mapping call
 * of the process waited for ever (20 of 20: a held-out check). */
static __thread int acct_cancel __attribute__((tls_model("initial-exec")));

/* false: bypass the account (see the top of the file). */
bool mli_acct_enter(void)
{
	if (acct_held || mli_tls.in_engine)
		return false;
	acct_held = 1;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &acct_cancel);
	lock_take();
	mli_tls.in_acct = 1;
	return true;
}

void mli_acct_leave(void)
{
	mli_tls.in_acct = 0;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	lock_give();
	pthread_setcancelstate(acct_cancel, NULL);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	acct_held = 0;
	/* Memory-pressure callbacks of a threshold this call crossed: now that
	 * the lock is released. */
	mli_after_call();
}

/* fork: the lock is taken around it, so that the child's account is the
 * parent's as it was at the fork, and released on both sides. These
 * handlers are registered after the engine's (this file's constructor runs
 * after core/engine.c's, which is linked first), so they run before them:
 * the lock order is this lock, then the engine's, as in a call that
 * charges bytes. */
static __thread uint8_t fork_took __attribute__((tls_model("initial-exec")));
static __thread uint8_t fork_held __attribute__((tls_model("initial-exec")));

static void fork_prepare(void)
{
	/* A fork from a signal handler that interrupted this thread inside
	 * the lock: the child's copy of this thread will release it. One
	 * that interrupted its wait for the lock takes it here; the wait
	 * goes on after the handler. */
	fork_took = !lock_owned();
	if (fork_took) {
		fork_held = acct_held;
		acct_held = 1;
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		lock_take();
	}
}

static void fork_parent(void)
{
	if (fork_took) {
		lock_give();
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		acct_held = fork_held;
		mli_after_call();
	}
}

static void fork_child(void)
{
	lock_forked();
	mli_dontfork_child(); /* alone in the child: the lock is this thread's */
	mli_memfd_fork_child();
	if (fork_took) {
		__atomic_store_n(&acct_lock, 0, __ATOMIC_RELAXED);
		acct_held = fork_held;
	}
}

/* Bytes the lock's holder admitted for its call and has not settled (a
 * child forked in between gives them back: mli_acct_child_alone). */
static int64_t held_pre;

/* A child made without the atfork handlers (_Fork, syscall(SYS_fork),
 * clone without CLONE_VM), alone in it: the marked ranges (dontfork.c)
 * leave its measure. If another thread of the parent held the lock at the
 * fork, the child has it held by no thread: its first mmap waited for ever
 * (29 of 30 such children of a parent whose threads mapped: a held-out
 * check). Then the child takes the lock over, and the holder's call, which
 * never ends there, is undone as far as it is known: its admitted bytes go
 * back; if it was changing the account, the account is emptied (what the
 * child inherited is then not counted; the parent's is). If this thread
 * holds it (a signal handler that interrupted its call forked), the call
 * ends in the child as in the parent; if it was waiting for the lock, the
 * wait ends once the lock is released here. Async-signal-safe. */
void mli_acct_child_alone(void)
{
	lock_forked();
	if (lock_owned())
		return;
	int c = 0;
	if (!__atomic_compare_exchange_n(&acct_lock, &c, me(), false, __ATOMIC_ACQUIRE,
					 __ATOMIC_RELAXED)) {
		__atomic_store_n(&acct_lock, me(), __ATOMIC_RELAXED);
		if (mli_maps_whole()) {
			mli_acct_unadmit(held_pre);
		} else {
			mli_maps_forget();
			mli_mapped_sub((uint64_t)mli_mapped_bytes());
		}
		held_pre = 0;
	}
	mli_dontfork_child();
	mli_memfd_fork_child();
	__atomic_store_n(&acct_lock, 0, __ATOMIC_RELEASE);
}

__attribute__((constructor)) static void mmap_init(void)
{
	mli_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- Helpers ------------------------------------------------------------- */

size_t mli_page_round(size_t len)
{
	static size_t page;
	size_t p = __atomic_load_n(&page, __ATOMIC_RELAXED);
	if (!p) {
		p = getauxval(AT_PAGESZ);
		if (!p)
			p = 4096;
		__atomic_store_n(&page, p, __ATOMIC_RELAXED);
	}
	/* A length that does not round is refused by the kernel: 0 makes
	 * the account's side of the call a no-op. */
	return len > SIZE_MAX - (p - 1) ? 0 : (len + p - 1) & ~(p - 1);
}

/* /dev/zero (the character device 1:5) maps as anonymous memory, private
 * or shared as asked: the kernel makes it so. */
static bool dev_zero(int fd)
{
	struct stat st;
	return fd >= 0 && syscall(SYS_fstat, fd, &st) == 0 && S_ISCHR(st.st_mode) &&
	       st.st_rdev == makedev(1, 5);
}

/* Is fd a file of a file system in memory (tmpfs: POSIX shared memory
 * in /dev/shm, a memfd; hugetlbfs; ramfs; secretmem, memfd_secret's: 400
 * MiB of it went uncounted under 100M, a held-out check)? Its pages are
 * memory, whoever maps them. */
#ifndef SECRETMEM_MAGIC
#define SECRETMEM_MAGIC 0x5345434d
#endif
bool mli_memory_fs(const struct statfs *sf)
{
	return sf->f_type == TMPFS_MAGIC || sf->f_type == HUGETLBFS_MAGIC ||
	       sf->f_type == RAMFS_MAGIC || sf->f_type == SECRETMEM_MAGIC;
}

bool mli_memory_file(int fd)
{
	struct statfs sf;
	return fd >= 0 && syscall(SYS_fstatfs, fd, &sf) == 0 && mli_memory_fs(&sf);
}

/* Anonymous mappings are in the account, private or shared (python's
 * mmap.mmap(-1, n) is shared: 416 MiB under 100M, a held-out check; a
 * database's shared buffers), and shared mappings of files in memory,
 * which are the same pages by another name (python's
 * multiprocessing.shared_memory, shm_open, a memfd mapped and closed:
 * 400 MiB under 100M before they counted), in the process that sized or
 * created the file (memfd.c). A shared one is the memory of the process
 * that made it, not of its forked children (dontfork.c).
 * *file: a mapping of a file in memory, which the caller drops from the
 * account if memfd.c counts the file's pages itself.
 * A shared mapping counts while it is readable, not only writable: a read
 * of a page of shared memory (shmem) not yet made makes it, where a
 * private mapping's read maps the zero page (a shared anonymous mapping,
 * a memfd's, mapped PROT_READ and read through held 400 MiB under 100M: a
 * held-out check). */
static enum mli_map_kind map_kind(int prot, int flags, int fd, bool *shared,
				  bool *file)
{
	int type = flags & MAP_TYPE;
	*shared = type == MAP_SHARED || type == MAP_SHARED_VALIDATE;
	*file = false;
	if (type != MAP_PRIVATE && !*shared)
		return MLI_MAP_OTHER;
	if (!(flags & MAP_ANONYMOUS) && !dev_zero(fd)) {
		if (!*shared || !mli_memory_file(fd))
			return MLI_MAP_OTHER;
		*file = true;
	}
	if (*shared)
		prot = prot & (PROT_READ | PROT_WRITE | PROT_EXEC) ? PROT_WRITE : 0;
	return prot & PROT_WRITE ? MLI_MAP_COUNTED : MLI_MAP_TRACKED;
}

static enum mli_prot_kind prot_kind(int prot)
{
	prot &= PROT_READ | PROT_WRITE | PROT_EXEC;
	return prot & PROT_WRITE ? MLI_PROT_WRITE
	       : prot == PROT_NONE ? MLI_PROT_NONE : MLI_PROT_KEEP;
}

/* Admits the bytes the query says the call would add (none if it adds
 * none). false: refused, or no room in the account; errno is then ENOMEM
 * and the caller fails without making the call. */
bool mli_acct_admit(int64_t pre, size_t ranges)
{
	if (!mli_maps_reserve(ranges) || (pre > 0 && !mli_mapped_charge((uint64_t)pre))) {
		errno = ENOMEM;
		return false;
	}
	/* After the charge: a child forked in between keeps it (over, not
	 * under). */
	__atomic_store_n(&held_pre, pre > 0 ? pre : 0, __ATOMIC_RELEASE);
	return true;
}

static void pre_settled(void)
{
	__atomic_store_n(&held_pre, 0, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* After the call: what the account's update changed, against what was
 * admitted. The update never adds more than its query said, because the
 * lock kept the account as the query saw it and each query bounds its
 * update from above (exact where the addresses are known, the whole
 * growth where the kernel chooses them); the last branch is for safety. */
void mli_acct_settle(int64_t pre, int64_t d)
{
	int64_t charged = pre > 0 ? pre : 0;
	pre_settled();
	if (d < charged)
		mli_mapped_sub((uint64_t)(charged - d));
	else if (d > charged)
		mli_mapped_charge((uint64_t)(d - charged));
}

void mli_acct_unadmit(int64_t pre)
{
	pre_settled();
	if (pre > 0)
		mli_mapped_sub((uint64_t)pre);
}

/* ---- The interposers ------------------------------------------------------ */

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	int saved = errno; /* taking the lock may set it (a futex wait) */
	bool shared, file;
	enum mli_map_kind k = map_kind(prot, flags, fd, &shared, &file);
	errno = saved;
	if (!mli_acct_enter())
		return mli_sys_mmap(addr, len, prot, flags, fd, off);
	if (file && (!mli_memfd_sized_here(fd) ||
		     (off >= 0 && mli_memfd_committed(fd, (uint64_t)off, mli_page_round(len)))))
		k = MLI_MAP_OTHER;
	size_t rlen = mli_page_round(len);
	/* MAP_FIXED: exactly there. Otherwise (a hint, MAP_FIXED_NOREPLACE,
	 * which old kernels take as a hint) addresses the kernel chooses,
	 * which hold nothing of the account's unless it missed an unmap. */
	int64_t pre = (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) == MAP_FIXED
			      ? mli_maps_q_map((uintptr_t)addr, rlen, k)
		      : k == MLI_MAP_COUNTED ? (int64_t)rlen : 0;
	if (!mli_acct_admit(pre, 6)) {
		mli_acct_leave();
		return MAP_FAILED;
	}
	void *r = mli_sys_mmap(addr, len, prot, flags, fd, off);
	if (r == MAP_FAILED) {
		int e = errno;
		mli_acct_unadmit(pre);
		mli_acct_leave();
		errno = e;
		return r;
	}
	mli_acct_settle(pre, mli_maps_map((uintptr_t)r, rlen, k));
	mli_dontfork_forget((uintptr_t)r, rlen);
	if (shared && k != MLI_MAP_OTHER)
		mli_dontfork_shared((uintptr_t)r, rlen);
	mli_acct_leave();
	errno = saved;
	return r;
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off) __attribute__((alias("mmap")));
/* glibc's private names (GLIBC_PRIVATE), which a lookup by name finds:
 * dlsym(libc, "__mmap") mapped 400 MiB under 100M (a held-out check). */
EXPORT void *__mmap(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off) __attribute__((alias("mmap"), copy(mmap)));

EXPORT int munmap(void *addr, size_t len)
{
	int saved = errno;
	if (!mli_acct_enter())
		return mli_sys_munmap(addr, len);
	if (!mli_acct_admit(0, 6)) {
		mli_acct_leave();
		return -1;
	}
	int r = mli_sys_munmap(addr, len);
	int e = errno;
	if (r == 0) {
		mli_acct_settle(0, mli_maps_unmap((uintptr_t)addr, mli_page_round(len)));
		mli_dontfork_forget((uintptr_t)addr, mli_page_round(len));
	}
	mli_acct_leave();
	errno = r == 0 ? saved : e;
	return r;
}

EXPORT int __munmap(void *addr, size_t len) __attribute__((alias("munmap"), copy(munmap)));

/* mprotect and pkey_mprotect. A call the kernel fails after changing part
 * of the range (a hole in it: ENOMEM) leaves the account as it was. */
static int protect(void *addr, size_t len, int prot, int pkey)
{
	int saved = errno;
	if (!mli_acct_enter())
		return sys_pkey_mprotect(addr, len, prot, pkey);
	size_t rlen = mli_page_round(len);
	enum mli_prot_kind p = prot_kind(prot);
	/* Readable shared memory counts (map_kind); over a range that is only
	 * partly shared, its private pages count too (over, not under). */
	if (p == MLI_PROT_KEEP && mli_dontfork_is_shared((uintptr_t)addr, rlen))
		p = MLI_PROT_WRITE;
	int64_t pre = mli_maps_q_protect((uintptr_t)addr, rlen, p);
	if (!mli_acct_admit(pre, 6)) {
		mli_acct_leave();
		return -1;
	}
	int r = sys_pkey_mprotect(addr, len, prot, pkey);
	int e = errno;
	if (r == 0)
		mli_acct_settle(pre, mli_maps_protect((uintptr_t)addr, rlen, p));
	else
		mli_acct_unadmit(pre);
	mli_acct_leave();
	errno = r == 0 ? saved : e;
	return r;
}

EXPORT int mprotect(void *addr, size_t len, int prot)
{
	return protect(addr, len, prot, -1);
}

EXPORT int __mprotect(void *addr, size_t len, int prot) __attribute__((alias("mprotect"), copy(mprotect)));

EXPORT int pkey_mprotect(void *addr, size_t len, int prot, int pkey)
{
	return protect(addr, len, prot, pkey);
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *to = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		to = va_arg(ap, void *);
		va_end(ap);
	}
	int saved = errno;
	if (!mli_acct_enter())
		return sys_mremap(old, old_len, new_len, flags, to);
	uintptr_t o = (uintptr_t)old;
	size_t ol = mli_page_round(old_len), nl = mli_page_round(new_len);
	bool dontunmap = flags & MREMAP_DONTUNMAP;
	int64_t pre;
	if (flags & MREMAP_FIXED) {
		pre = mli_maps_q_remap(o, ol, nl, (uintptr_t)to, dontunmap);
	} else {
		/* In place, or (MREMAP_MAYMOVE) moved where the kernel chooses. */
		pre = mli_maps_q_remap(o, ol, nl, o, dontunmap);
		if (flags & MREMAP_MAYMOVE) {
			int64_t moved = mli_maps_q_remap(o, ol, nl, MLI_MAPS_ANYWHERE,
							 dontunmap);
			pre = moved > pre ? moved : pre;
		}
	}
	if (!mli_acct_admit(pre, 10 + (dontunmap ? mli_maps_ranges_in(o, ol) : 0))) {
		mli_acct_leave();
		return MAP_FAILED;
	}
	void *r = sys_mremap(old, old_len, new_len, flags, to);
	int e = errno;
	if (r != MAP_FAILED) {
		mli_acct_settle(pre, mli_maps_remap(o, ol, nl, (uintptr_t)r, dontunmap));
		mli_dontfork_moved(o, ol, (uintptr_t)r, nl, dontunmap);
	} else
		mli_acct_unadmit(pre);
	mli_acct_leave();
	errno = r != MAP_FAILED ? saved : e;
	return r;
}

/* For syscall.c (sys.h): bound here, whatever the symbol table says. */
#pragma GCC diagnostic ignored "-Wmissing-attributes"
MLI_SELF(mmap);
MLI_SELF(munmap);
MLI_SELF(mprotect);
MLI_SELF(pkey_mprotect);
MLI_SELF(mremap);
