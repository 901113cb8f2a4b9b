/* quick_exit MIB STATUS: asks for a block of MIB MiB (over
 * MEMLIMITS_GLOBAL_MEMORY: a breach), registers an at_quick_exit handler
 * that prints "handler ran", and ends with quick_exit(STATUS). The library
 * must still write the report, apply MEMLIMITS_LIMIT_STATUS and leave the
 * tree, as at _exit, and keep STATUS otherwise. */
#include <stdio.h>
#include <stdlib.h>

static void handler(void)
{
	puts("handler ran");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	at_quick_exit(handler);
	void *volatile p = malloc((size_t)atol(argv[1]) << 20);
	printf("big block %s\n", p ? "given" : "refused");
	fflush(stdout);
	quick_exit(atoi(argv[2]));
}
