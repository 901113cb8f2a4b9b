/* prof_hot [hog]: an ordinary C program (it knows nothing of memlimits)
 * with known allocation hot spots, for MEMLIMITS_PROFILE:
 *   hot_keep_live   48 MiB in 64 KiB blocks, kept live to the end: the top
 *                   site for live bytes;
 *   hot_churn      256 MiB in 32 KiB blocks, each freed at once: the top
 *                   site for bytes allocated, nothing live;
 *   hot_strings      8 MiB through strdup (a function of libc: the frame
 *                   is in a shared library), kept live;
 *   hot_small        4 MiB in 100-byte blocks, freed.
 * "hog": allocates 256 KiB blocks from hot_hog until malloc fails (a limit),
 * keeping them, after 2 MiB of other live data from hot_small_live; prints
 * how many it got; exits 0 if malloc failed, 1 if it never did. Prints a checksum so that nothing
 * is optimised away. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *keep[1 << 14];
static size_t nkeep;
static unsigned long sum;

#define NOINLINE __attribute__((noinline, noclone))

NOINLINE static void hot_keep_live(void)
{
	for (int i = 0; i < 48 * 16; i++) {
		char *p = malloc(64 << 10);
		if (!p)
			exit(3);
		p[i] = 1;
		keep[nkeep++] = p;
	}
	__asm__ volatile("" ::: "memory");
}

NOINLINE static void hot_churn(void)
{
	for (int i = 0; i < 256 * 32; i++) {
		volatile char *p = malloc(32 << 10);
		if (!p)
			exit(3);
		p[i % (32 << 10)] = 2;
		sum += (unsigned long)p[0];
		free((void *)p);
	}
	__asm__ volatile("" ::: "memory");
}

NOINLINE static void hot_strings(void)
{
	static char s[1024];
	memset(s, 'x', sizeof s - 1);
	for (int i = 0; i < 8 * 1024; i++) {
		s[i % 1000] = (char)('a' + i % 26);
		char *p = strdup(s);
		if (!p)
			exit(3);
		keep[nkeep++] = p;
	}
	__asm__ volatile("" ::: "memory");
}

NOINLINE static void hot_small(void)
{
	for (int i = 0; i < 40 * 1024; i++) {
		volatile char *p = malloc(100);
		if (!p)
			exit(3);
		p[0] = (char)i;
		sum += (unsigned long)p[0];
		free((void *)p);
	}
	__asm__ volatile("" ::: "memory");
}

NOINLINE static void hot_small_live(void)
{
	for (int i = 0; i < 2 * 1024; i++) {
		char *p = malloc(1024);
		if (!p)
			exit(3);
		p[0] = 1;
		keep[nkeep++] = p;
	}
	__asm__ volatile("" ::: "memory");
}

static size_t nhog;

NOINLINE static int hot_hog(void)
{
	static void *hog[1 << 16];
	for (size_t i = 0; i < sizeof hog / sizeof hog[0]; i++) {
		char *p = malloc(256 << 10);
		if (!p)
			return 0;
		nhog++;
		memset(p, 3, 256 << 10);
		hog[i] = p;
	}
	return 1;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "hog") == 0) {
		hot_small_live();
		int never_failed = hot_hog();
		printf("hog done %d blocks %zu\n", never_failed, nhog);
		return never_failed;
	}
	hot_small();
	hot_keep_live();
	hot_churn();
	hot_strings();
	printf("sum %lu kept %zu\n", sum, nkeep);
	return 0;
}
