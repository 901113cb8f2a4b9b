/* sys.h: the memory-mapping system calls, made directly, for the library's
 * own mappings: the embedded jemalloc's (its references to mmap, munmap,
 * mprotect and mremap are renamed to these by objcopy, see
 * preload/jemalloc.syms) and the profiler's range (region.c). They bypass
 * the interposers of preload/mmap.c, so that the library's memory is never
 * counted as the program's mapped memory (jemalloc's is the heap already).
 * Same contract as the libc functions: -1 or MAP_FAILED with errno. */
#ifndef MLI_SYS_H
#define MLI_SYS_H

#include <stddef.h>
#include <sys/types.h>

void *mli_sys_mmap(void *addr, size_t len, int prot, int flags, int fd,
		   off_t off);
int mli_sys_munmap(void *addr, size_t len);
int mli_sys_mprotect(void *addr, size_t len, int prot);
void *mli_sys_mremap(void *old, size_t old_len, size_t new_len, int flags, ...);
int mli_sys_madvise(void *addr, size_t len, int advice);

/* The account's lock and its steps (preload/mmap.c), for the other calls
 * that change what is counted (memfd.c). enter: false if the call must
 * bypass the account (a signal handler inside it); admit: before the
 * system call, the bytes its query says it adds (false: refused, errno
 * ENOMEM); settle: after it succeeded, the update's change against what
 * was admitted; unadmit: after it failed. */
#include <stdbool.h>
#include <stdint.h>
bool mli_acct_enter(void);
void mli_acct_leave(void);
bool mli_acct_admit(int64_t pre, size_t ranges);
void mli_acct_settle(int64_t pre, int64_t d);
void mli_acct_unadmit(int64_t pre);
size_t mli_page_round(size_t len); /* up to whole pages, 0 on overflow */
/* close(2) for syscall(SYS_close): a memfd of the account's is forgotten
 * (memfd.c); not a cancellation point. */
int mli_close_memfd(int fd);
/* Has fallocate given memfd fd every page of [off, off+len), counted by
 * memfd.c? A mapping of them is then not counted (mmap.c): ZGC maps each
 * committed range three times. One with a page it did not give counts
 * whole (one page given made a 400 MiB mapping free: a held-out check).
 * Under the account's lock. */
bool mli_memfd_committed(int fd, uint64_t off, uint64_t len);
/* Did this process create memfd fd, or size the file in memory fd is
 * (ftruncate, fallocate)? Only then its shared mappings count (memfd.c). */
bool mli_memfd_sized_here(int fd);
void mli_memfd_fork_child(void); /* from mmap.c's fork handlers */
/* Is fd a file of a file system in memory (tmpfs, hugetlbfs, ramfs)?
 * Is sf such a file system? (mmap.c) */
bool mli_memory_file(int fd);
struct statfs;
bool mli_memory_fs(const struct statfs *sf);
/* This library's own mmap family (hidden aliases of its exported
 * functions), for syscall(2): called by name, the program's syscall(SYS_mmap)
 * reached whichever mmap the symbol table finds first, and tcmalloc's (a
 * library preloaded before this one), which makes that very call, recursed
 * until the stack overflowed. */
#include <sys/types.h>
void *mli_self_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int mli_self_munmap(void *addr, size_t len);
int mli_self_mprotect(void *addr, size_t len, int prot);
int mli_self_pkey_mprotect(void *addr, size_t len, int prot, int pkey);
/* brk.c: the brk system call's own convention (the break it leaves). */
unsigned long mli_brk_syscall(unsigned long to);
void *mli_self_mremap(void *old, size_t old_len, size_t new_len, int flags, ...);
int mli_self_memfd_create(const char *name, unsigned int flags);
int mli_self_fallocate(int fd, int mode, off_t off, off_t len);
int mli_self_ftruncate(int fd, off_t len);
int mli_truncate_syscall(const char *path, off_t len);
void *mli_self_shmat(int id, const void *addr, int flags);
int mli_self_shmdt(const void *addr);
int mli_self_madvise(void *addr, size_t len, int advice);
/* dontfork.c: ranges that leave a forked child's account (marked
 * MADV_DONTFORK, or shared), under the account's lock. */
void mli_dontfork_forget(uintptr_t lo, size_t len);
void mli_dontfork_shared(uintptr_t lo, size_t len);
bool mli_dontfork_is_shared(uintptr_t lo, size_t len);
uint64_t mli_dontfork_counted(void);
/* fork.c: mli_tree_fork_begin, if this process may fork under its tree's
 * limit; if not, false with errno ENOMEM, and the refusal is a breach. */
struct mli_tree_fork;
bool mli_fork_begin(struct mli_tree_fork *was);
void mli_dontfork_moved(uintptr_t from, size_t from_len, uintptr_t to, size_t to_len,
			bool keep_old);
void mli_dontfork_child(void);
void mli_acct_child_alone(void); /* mmap.c: a child made without atfork handlers */
void mli_threads_fork_child(void); /* thread.c: the other threads' charges go */
void mli_child_alone(void); /* fork.c: all of the above and the tree's, in such a child */
/* Defines mli_self_NAME as a hidden alias of the exported NAME, in NAME's
 * file (libc's declarations are leaf and nothrow, these plain: that file
 * ignores -Wmissing-attributes). */
#define MLI_SELF(name)                                   \
	extern __typeof__(name) mli_self_##name           \
		__attribute__((alias(#name), visibility("hidden")))

#endif
