/* daemonize CMD: daemon(3) (glibc's own fork, then the parent's _exit),
 * then, in the daemon, runs CMD with sh after 0.3 s. tests/tree.sh: the
 * daemon must still be counted in the tree when its parent has left. */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2 || daemon(1, 1) != 0)
		return 2;
	struct timespec t = { 0, 300000000 };
	nanosleep(&t, NULL);
	execl("/bin/sh", "sh", "-c", argv[1], (char *)NULL);
	return 127;
}
