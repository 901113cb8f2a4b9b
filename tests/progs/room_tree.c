/* room_tree hold MIB | fill: for tests/tree.sh. hold: mallocs and touches
 * MIB MiB, says "held", and waits to be killed. fill: mallocs 1 MiB blocks
 * until one is refused, then 8000-byte blocks until one is, and prints how
 * many KiB the small ones got after the big refusal (the room a memory
 * limit leaves a runtime's collector). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "hold")) {
		for (long i = 0; i < atol(argv[2]); i++)
			memset(malloc(1 << 20), 1, 1 << 20);
		printf("held\n");
		fflush(stdout);
		pause();
		return 0;
	}
	void *p;
	while ((p = malloc(1 << 20)) != NULL)
		memset(p, 1, 1 << 20);
	long small = 0;
	while ((p = malloc(8000)) != NULL) {
		memset(p, 1, 8000);
		small += 8000;
	}
	printf("small %ld KiB\n", small >> 10);
	return 0;
}
