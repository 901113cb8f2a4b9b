/* uncounted.h: memory shared with forked children that the global measure
 * does not count, for a benchmark's own bookkeeping: a memfd's pages that
 * fallocate did not commit (anonymous mappings count, shared or not).
 * Include after _GNU_SOURCE. */
#ifndef UNCOUNTED_H
#define UNCOUNTED_H

#include <sys/mman.h>
#include <unistd.h>

static inline void *uncounted_shared(size_t n)
{
	int fd = memfd_create("bench", 0);
	if (fd < 0 || ftruncate(fd, (off_t)n) != 0)
		return MAP_FAILED;
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	close(fd);
	return p;
}

#endif
