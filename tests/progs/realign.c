/* realign: a block of 80 MB moved to a 2 MiB alignment by jemalloc's
 * rallocx (the library's, looked up) without growing; prints "maxrss=KiB"
 * (the process's peak resident set), exit 3 if the contents or the
 * alignment are wrong. Under a 100M limit both blocks were held (155 MiB:
 * a held-out check). test_programs, realloc_growth_resident_bounded. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

int main(void)
{
	void *(*mallocx)(size_t, int) = (void *(*)(size_t, int))dlsym(RTLD_DEFAULT, "mallocx");
	void *(*rallocx)(void *, size_t, int) =
		(void *(*)(void *, size_t, int))dlsym(RTLD_DEFAULT, "rallocx");
	if (!mallocx || !rallocx)
		return 2;
	const size_t n = 80u << 20, two = 2u << 20;
	char *p = mallocx(n, 0);
	if (p && ((uintptr_t)p & (two - 1)) == 0) { /* aligned by chance: another */
		char *q = mallocx(n, 0);
		free(p);
		p = q;
	}
	if (!p || ((uintptr_t)p & (two - 1)) == 0)
		return 2;
	for (size_t i = 0; i < n; i += 4096)
		p[i] = (char)(i >> 12);
	char *q = rallocx(p, n, 21 /* MALLOCX_LG_ALIGN(21) */);
	if (!q || ((uintptr_t)q & (two - 1)))
		return 3;
	for (size_t i = 0; i < n; i += 4096)
		if (q[i] != (char)(i >> 12))
			return 3;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("maxrss=%ld\n", ru.ru_maxrss);
	free(q);
	return 0;
}
