/* free_idle: run under MEMLIMITS_GLOBAL_MEMORY=200M. 140 blocks of 1 MiB
 * are written and freed, then a thousand small blocks are made (within the
 * thread's grant: no slow path) and the program waits, as a runtime that
 * frees its data and then idles does. Under a memory limit what jemalloc
 * keeps resident is bounded to a quarter of the limit; the look at it came
 * only at the thread's next slow path, which such a program never reaches:
 * python's 140 MiB stayed resident (a held-out check; glibc's malloc gave
 * them back). Prints "rss_mib N" (VmRSS after the small blocks) and "kept_mib
 * N" (mallinfo2's keepcost: jemalloc's dirty and muzzy bytes). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB ((size_t)1 << 20)

static long rss_kib(void)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "VmRSS:", 6))
			v = atol(line + 6);
	fclose(f);
	return v;
}

int main(void)
{
	static char *b[140];
	for (int i = 0; i < 140; i++) {
		if (!(b[i] = malloc(MiB)))
			return 2;
		memset(b[i], 1, MiB);
	}
	for (int i = 0; i < 140; i++)
		free(b[i]);
	static void *small[1000];
	for (int i = 0; i < 1000; i++)
		small[i] = malloc(24);
	long rss = rss_kib();
	struct mallinfo2 mi = mallinfo2();
	printf("rss_mib %ld\nkept_mib %zu\n", rss / 1024, mi.keepcost / MiB);
	for (int i = 0; i < 1000; i++)
		free(small[i]);
	return 0;
}
