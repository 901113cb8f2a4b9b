/* memfd_reused: a memfd with 1 MiB committed is closed behind the library's
 * back (fclose of fdopen; or "dup2": another file dup2'ed over it), and
 * its number then names a regular file, which gets 200 MiB by
 * posix_fallocate and fallocate. Under a 100M limit the memfd's account
 * stayed with the number and both were refused with ENOSPC (a held-out
 * check): disk files are no memory. Prints "posix_fallocate E" and
 * "fallocate E" (0, or the error number). Run in a directory it may write. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int m = memfd_create("reused", 0);
	if (m < 0 || fallocate(m, 0, 0, 1 << 20) != 0)
		return 2;
	int fd;
	if (argc > 1 && !strcmp(argv[1], "dup2")) {
		int f = open("memfd_reused.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (f < 0 || dup2(f, m) != m)
			return 2;
		close(f);
		fd = m;
	} else {
		FILE *f = fdopen(m, "w");
		if (!f)
			return 2;
		fclose(f); /* glibc's own close of the descriptor */
		fd = open("memfd_reused.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fd != m)
			return 3; /* the number is not reused: nothing to check */
	}
	printf("posix_fallocate %d\n", posix_fallocate(fd, 0, 200 << 20));
	printf("fallocate %d\n", fallocate(fd, 0, 0, 200 << 20) ? errno : 0);
	close(fd);
	unlink("memfd_reused.dat");
	return 0;
}
