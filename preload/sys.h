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

#endif
