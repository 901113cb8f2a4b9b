/* prog_hog: mallocs 1 MiB blocks (kept) until malloc returns NULL, then
 * prints "null" and exits 3. Gives up after 1024 blocks (1 GiB of address
 * space, never touched) with "no limit" and exit 4, so that it cannot run
 * away when no limit applies. Used by tests/test_programs.c. */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
	for (int i = 0; i < 1024; i++) {
		void *p = malloc(1 << 20);
		if (!p) {
			printf("null\n");
			fflush(stdout);
			exit(3);
		}
	}
	printf("no limit\n");
	return 4;
}
