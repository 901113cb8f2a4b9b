/* realloc_grow FACTOR_PERCENT STEP_KIB [rallocx [FLAGS]]: grows one buffer
 * by realloc (or by jemalloc's rallocx with MALLOCX_ZERO and FLAGS, a number
 * such as 0x100 for MALLOCX_TCACHE_NONE, the library's rallocx, whose new
 * bytes must be zero: exit 3 if not), each time by FACTOR_PERCENT of
 * its size or STEP_KIB, whichever is more, writing every byte, until the
 * call fails; prints "reached=MiB maxrss=KiB" (its size then, and the
 * process's peak resident set). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

int main(int argc, char **argv)
{
	size_t pct = argc > 1 ? strtoul(argv[1], NULL, 10) : 12;
	size_t step = (argc > 2 ? strtoul(argv[2], NULL, 10) : 64) << 10;
	void *(*rallocx)(void *, size_t, int) = NULL;
	if (argc > 3 && !strcmp(argv[3], "rallocx") &&
	    !(rallocx = (void *(*)(void *, size_t, int))dlsym(RTLD_DEFAULT, "rallocx")))
		return 2;
	int flags = 0x40 /* MALLOCX_ZERO */ | (argc > 4 ? (int)strtol(argv[4], NULL, 0) : 0);
	char *b = NULL;
	size_t have = 0;
	for (;;) {
		size_t more = have * pct / 100 > step ? have * pct / 100 : step;
		char *p = rallocx && b ? rallocx(b, have + more, flags)
				       : realloc(b, have + more);
		if (!p)
			break;
		for (size_t i = 0; rallocx && b && i < more; i += 4096)
			if (p[have + i])
				return 3;
		memset(p + have, 'x', more);
		b = p;
		have += more;
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("reached=%zu maxrss=%ld\n", have >> 20, ru.ru_maxrss);
	free(b);
	return 0;
}
