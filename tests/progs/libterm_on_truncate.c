/* libterm_on_truncate: preloaded in front of libmemlimits.so, sends the
 * process SIGTERM from inside the library's report writing (its ftruncate
 * of the report file, between the open that creates it and the write),
 * when MLT_TERM_ON_TRUNCATE is set. A multiprocessing pool's worker gets
 * SIGTERM just so as it exits; the report must still be whole. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

int ftruncate(int fd, off_t len)
{
	static int (*real)(int, off_t);
	if (!real)
		real = (int (*)(int, off_t))dlsym(RTLD_NEXT, "ftruncate");
	if (getenv("MLT_TERM_ON_TRUNCATE"))
		raise(SIGTERM);
	return real(fd, len);
}
