/* libexitplug: a library whose destructor frees (at exit, from _dl_fini),
 * for tests/progs/exit_forkers.c. */
#include <stdlib.h>
#include <string.h>

static char *buf[8];

__attribute__((constructor)) static void init(void)
{
	for (int i = 0; i < 8; i++) {
		buf[i] = malloc(1000 * (size_t)(i + 1));
		if (buf[i])
			memset(buf[i], 1, 100);
	}
}

__attribute__((destructor)) static void fini(void)
{
	for (int i = 0; i < 8; i++)
		free(buf[i]);
}
