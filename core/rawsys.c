/* rawsys.c: the library's system calls, made by the instruction itself.
 * The library exports syscall() (preload/syscall.c, so that a program's
 * raw mmap or fallocate is counted as the libc function's is), so its own
 * calls must not go there: every engine object is built with
 * -Dsyscall=mli_syscall (Makefile). Same contract as syscall(2): -1 and
 * errno on failure. */
#include <errno.h>
#include <stdarg.h>

#undef syscall
long mli_syscall(long n, ...);

long mli_syscall(long n, ...)
{
	va_list ap;
	va_start(ap, n);
	long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
	long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
	va_end(ap);
#if defined(__x86_64__)
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = a6;
	long r;
	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	if (r < 0 && r > -4096) {
		errno = (int)-r;
		return -1;
	}
	return r;
#else
	extern long syscall(long, ...);
	return syscall(n, a1, a2, a3, a4, a5, a6);
#endif
}
