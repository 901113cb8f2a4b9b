/* libmmapsys.so: an mmap of its own that makes the system call through
 * syscall(2), as tcmalloc's does; preloaded before the library
 * (test_mapped, mmap_by_syscall_before_us). */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}
