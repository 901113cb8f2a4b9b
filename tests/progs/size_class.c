/* size_class: run with MEMLIMITS_GLOBAL_MEMORY=100M (alone or under the
 * wrapper's tree). A limit sees the block a request gets, not only the
 * bytes asked for: jemalloc serves 101200291 bytes (xz -9e's dictionary,
 * 96.5 MiB) with a 112 MiB block, which took the measure 12 MiB over the
 * limit. Each form (malloc, calloc, posix_memalign, realloc growing a
 * 1 MiB block) of that request must be refused, a 90 MiB request (a 96
 * MiB block) admitted, and the peak of the measure must stay within the
 * limit. Exit 0 iff all hold; prints what it saw.
 * `size_class hold MIB SECONDS` only holds MIB MiB, touched, for SECONDS:
 * with it, tests/tree.sh runs the checks under a tree's limit (130M, 20
 * MiB held by another process: the 112 MiB block is over, the request
 * and the 96 MiB block are not). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim/memlimits.h"

#define MiB ((size_t)1 << 20)
#define LIMIT (100 * MiB)
#define REQ ((size_t)101200291)

static int failures;

static void refused(const char *what, void *p)
{
	printf("%s(%zu): %s\n", what, REQ, p ? "admitted" : "refused");
	if (p) {
		printf("FAILED: its block is over the limit\n");
		failures++;
		free(p);
	}
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "hold") == 0) {
		size_t n = strtoul(argv[2], NULL, 10) * MiB;
		char *p = malloc(n);
		if (!p)
			return 1;
		memset(p, 1, n);
		sleep((unsigned)atoi(argv[3]));
		free(p);
		return 0;
	}
	refused("malloc", malloc(REQ));
	refused("calloc", calloc(1, REQ));
	void *a = NULL;
	if (posix_memalign(&a, 4096, REQ) != 0)
		a = NULL;
	refused("posix_memalign", a);
	char *small = malloc(MiB);
	char *grown = small ? realloc(small, REQ) : NULL;
	refused("realloc", grown);
	free(small);

	void *fits = malloc(90 * MiB);
	printf("malloc(90 MiB): %s\n", fits ? "admitted" : "refused");
	if (!fits) {
		printf("FAILED: a 96 MiB block fits under the limit\n");
		failures++;
	}
	free(fits);

	struct ml_stats s;
	ml_stats(&s);
	printf("peak %lld KiB, limit %zu KiB\n", (long long)(s.peak_bytes >> 10),
	       LIMIT >> 10);
	if (s.peak_bytes > (int64_t)LIMIT) {
		printf("FAILED: the peak is over the limit\n");
		failures++;
	}
	return failures != 0;
}
