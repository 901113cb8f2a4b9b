/* memfd_commit: the pattern of java's ZGC heap. A memfd sized to 4 GiB
 * with ftruncate, committed by fallocate in 8 MiB steps until refused,
 * each step then mapped shared twice into reserved address space (the
 * mappings of a committed memfd do not count: its pages do); then an fallocate over committed pages, a punched
 * hole, a truncation and the close, each followed by the mapped bytes the
 * library counts. Prints "name value" lines (MiB unless said).
 *
 *   memfd_commit libc|syscall|posix   the calls through libc's functions,
 *                               through syscall(2) as HotSpot makes them, or
 *                               the commits by posix_fallocate */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim/memlimits.h"

#define MiB (1L << 20)
static int raw;

static double mapped(void)
{
	struct ml_stats s;
	ml_stats(&s);
	return (double)s.mapped_bytes / MiB;
}

static int posix;

static int falloc(int fd, int mode, off_t off, off_t len)
{
	if (posix && mode == 0) {
		int e = posix_fallocate(fd, off, len);
		errno = e;
		return e ? -1 : 0;
	}
	return raw ? (int)syscall(SYS_fallocate, fd, mode, off, len)
		   : fallocate(fd, mode, off, len);
}

int main(int argc, char **argv)
{
	raw = argc > 1 && strcmp(argv[1], "syscall") == 0;
	posix = argc > 1 && strcmp(argv[1], "posix") == 0;
	double before = mapped();
	int fd = raw ? (int)syscall(SYS_memfd_create, "heap", MFD_CLOEXEC)
		     : memfd_create("heap", MFD_CLOEXEC);
	if (fd < 0 || (raw ? syscall(SYS_ftruncate, fd, 4096 * MiB)
			   : ftruncate(fd, 4096 * MiB))) {
		perror("memfd");
		return 1;
	}
	printf("sized %.1f\n", mapped() - before);
	int reserve = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	char *v1 = mmap(NULL, 1024 * MiB, PROT_NONE, reserve, -1, 0);
	char *v2 = mmap(NULL, 1024 * MiB, PROT_NONE, reserve, -1, 0);
	if (v1 == MAP_FAILED || v2 == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	long got = 0;
	int err = 0;
	while (got < 1024 * MiB) {
		if (falloc(fd, 0, got, 8 * MiB)) {
			err = errno;
			break;
		}
		for (int i = 0; i < 2; i++)
			if (mmap((i ? v2 : v1) + got, 8 * MiB, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_FIXED, fd, got) == MAP_FAILED) {
				perror("mmap view");
				return 1;
			}
		memset(v1 + got, 1, 8 * MiB); /* resident now */
		got += 8 * MiB;
	}
	printf("committed %ld\nrefused_enospc %d\ncounted %.1f\n", got / MiB,
	       err == ENOSPC, mapped() - before);
	if (falloc(fd, 0, 0, 16 * MiB) != 0) /* committed already: adds nothing */
		printf("recommit_failed %d\n", errno);
	printf("after_recommit %.1f\n", mapped() - before);
	falloc(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 16 * MiB);
	printf("after_hole %.1f\n", mapped() - before);
	printf("recommit_hole %d\n", falloc(fd, 0, 0, 8 * MiB) == 0);
	printf("after_refill %.1f\n", mapped() - before);
	munmap(v1, 1024 * MiB);
	munmap(v2, 1024 * MiB);
	if (raw ? syscall(SYS_ftruncate, fd, 4 * MiB) : ftruncate(fd, 4 * MiB))
		perror("ftruncate");
	printf("after_truncate %.1f\n", mapped() - before);
	if (raw)
		syscall(SYS_close, fd);
	else
		close(fd);
	printf("after_close %.1f\n", mapped() - before);
	return 0;
}
