/* fork_budget: a tree's allocation budget across fork and exit
 * (tests/tree.sh).
 *   fork_budget spend N: the parent allocates 100 bytes (drawing a
 *     reservation of the tree's budget), then starts N children one after
 *     another; each allocates 64 KiB blocks until one is refused (at most
 *     48) and _exits. Prints "got BYTES", what the children got in all.
 *   fork_budget return N: N children one after another each allocate 1 MiB,
 *     free it and end (exit, or _exit for the odd ones); then the parent
 *     allocates 1 MiB blocks until one is refused. Prints "parent MIB". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	int n = atoi(argv[2]);
	int spend = strcmp(argv[1], "spend") == 0;
	char *volatile first = malloc(100);
	int fds[2];
	if (!first || pipe(fds) != 0)
		return 1;
	size_t total = 0;
	for (int i = 0; i < n; i++) {
		pid_t c = fork();
		if (c < 0)
			return 1;
		if (c == 0) {
			if (spend) {
				size_t got = 0;
				for (int k = 0; k < 48; k++) {
					char *volatile b = malloc(64 << 10);
					if (!b)
						break;
					got += 64 << 10;
				}
				if (write(fds[1], &got, sizeof got) != sizeof got)
					_exit(1);
				_exit(0);
			}
			char *b = malloc(1 << 20);
			if (!b)
				_exit(1);
			memset(b, 1, 1 << 20);
			free(b);
			if (i % 2)
				_exit(0);
			exit(0);
		}
		int st;
		if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st))
			return 1;
		size_t got;
		if (spend && read(fds[0], &got, sizeof got) == sizeof got)
			total += got;
	}
	if (spend) {
		printf("got %zu\n", total);
		return 0;
	}
	size_t mib = 0;
	while (malloc(1 << 20))
		mib++;
	printf("parent %zu\n", mib);
	return 0;
}
