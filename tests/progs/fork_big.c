/* fork_big N MIB [_Fork]: N processes of one tree (run under memlimit) ask
 * for a block of MIB MiB at the same moment (all wake on one pipe's end of
 * file) and hold it a while. Prints "got K" (how many were given theirs).
 * With _Fork, the children are made by glibc's _Fork (no atfork handlers)
 * instead of fork; with syscall, by syscall(SYS_fork). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>

pid_t _Fork(void);

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int n = atoi(argv[1]);
	size_t size = (size_t)atol(argv[2]) << 20;
	int go[2], res[2];
	if (pipe(go) || pipe(res))
		return 1;
	int bare = argc > 3 && strcmp(argv[3], "_Fork") == 0;
	int sys = argc > 3 && strcmp(argv[3], "syscall") == 0;
	for (int i = 0; i < n; i++)
		if ((bare ? _Fork() : sys ? (pid_t)syscall(SYS_fork) : fork()) == 0) {
			close(go[1]);
			char c;
			if (read(go[0], &c, 1) < 0)
				_exit(2);
			void *p = malloc(size);
			if (p)
				memset(p, 1, 4096);
			c = p ? '1' : '0';
			if (write(res[1], &c, 1) != 1)
				_exit(2);
			usleep(300000);
			_exit(0);
		}
	usleep(200000); /* all waiting */
	close(go[0]);
	close(go[1]); /* end of file: all wake */
	int got = 0;
	for (int i = 0; i < n; i++) {
		char c = '0';
		if (read(res[0], &c, 1) == 1)
			got += c == '1';
	}
	while (wait(NULL) > 0)
		;
	printf("got %d\n", got);
	return 0;
}
