/* cow_fork MIB N: makes a block of MIB MiB and writes it, then forks N
 * children that each write over their copy of it (copy on write: MIB MiB
 * each, allocating nothing) and wait until all are forked. Prints
 * "forked K" (the children made; a refused fork is skipped). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	size_t size = strtoul(argv[1], NULL, 10) << 20;
	int n = atoi(argv[2]), forked = 0, go[2];
	char *p = malloc(size);
	if (!p || pipe(go) != 0)
		return 1;
	memset(p, 1, size);
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0)
			continue;
		if (pid == 0) {
			close(go[1]);
			memset(p, 2, size);
			char c;
			_exit(read(go[0], &c, 1) < 0); /* the parent's end of file */
		}
		forked++;
	}
	close(go[1]);
	while (wait(NULL) > 0)
		;
	printf("forked %d\n", forked);
	return 0;
}
