/* realloc_grow FACTOR_PERCENT STEP_KIB: grows one buffer by realloc, each
 * time by FACTOR_PERCENT of its size or STEP_KIB, whichever is more,
 * writing every byte, until realloc fails; prints "reached=MiB maxrss=KiB"
 * (its size then, and the process's peak resident set). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

int main(int argc, char **argv)
{
	size_t pct = argc > 1 ? strtoul(argv[1], NULL, 10) : 12;
	size_t step = (argc > 2 ? strtoul(argv[2], NULL, 10) : 64) << 10;
	char *b = NULL;
	size_t have = 0;
	for (;;) {
		size_t more = have * pct / 100 > step ? have * pct / 100 : step;
		char *p = realloc(b, have + more);
		if (!p)
			break;
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
