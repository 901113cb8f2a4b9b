/* libqexit.so: registers an at_quick_exit handler from its constructor,
 * which may run before memlimits' own (tests/tree.sh, quick_exit). */
#include <stdio.h>
#include <stdlib.h>

static void lib_handler(void)
{
	puts("lib handler ran");
	fflush(stdout);
}

__attribute__((constructor)) static void register_early(void)
{
	at_quick_exit(lib_handler);
}
