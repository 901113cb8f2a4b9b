/* out_misc MODE: small programs for the output tests (tests/test_outputs.c).
 *   unplaced   (profiling build, every byte sampled, under ulimit -v) asks
 *              for PTRDIFF_MAX bytes, which no allocator serves, then for
 *              100 MiB, which jemalloc serves but the profiler's range (a
 *              small one under ulimit -v) cannot hold: only the second is
 *              worth memlimits' "does not fit" message. Prints what each
 *              malloc returned.
 *   abort-in-handler  calls abort() with a SIGABRT handler that calls
 *              abort() again, once (every time would recurse for ever, with
 *              or without memlimits): the report is written once, and the
 *              process dies of SIGABRT.
 *   chdir DIR  changes to DIR and exits: a relative MEMLIMITS_REPORT stays
 *              where the process started.
 *   hog-abort  allocates 1 MiB blocks until malloc fails, then calls
 *              abort() itself (an assert-like end). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *volatile sink;

static void again(int sig)
{
	static volatile sig_atomic_t once;
	(void)sig;
	if (!once++)
		abort();
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	if (strcmp(mode, "unplaced") == 0) {
		sink = malloc(PTRDIFF_MAX);
		printf("huge %s\n", sink ? "served" : "null");
		sink = malloc(100 << 20);
		printf("100MiB %s\n", sink ? "served" : "null");
		free(sink);
		return 0;
	}
	if (strcmp(mode, "abort-in-handler") == 0) {
		signal(SIGABRT, again);
		abort();
	}
	if (strcmp(mode, "chdir") == 0 && argc > 2)
		return chdir(argv[2]) == 0 ? 0 : 1;
	if (strcmp(mode, "hog-abort") == 0) {
		for (int i = 0; i < 4096; i++) {
			char *p = malloc(1 << 20);
			if (!p)
				abort();
			memset(p, 1, 4096);
		}
		return 4;
	}
	fprintf(stderr, "usage: out_misc unplaced|abort-in-handler|chdir DIR|hog-abort\n");
	return 2;
}
