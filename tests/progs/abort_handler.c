/* abort_handler: a SIGABRT handler that says it ran, a malloc the limit
 * refuses (under MEMLIMITS_GLOBAL_MEMORY), then abort(). With "jump" the
 * handler siglongjmps back, and the program says "recovered" and exits 5;
 * else it returns, and abort ends the process. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sigjmp_buf back;
static int jump;

static void on_abrt(int sig)
{
	(void)sig;
	static const char m[] = "handler ran\n";
	if (write(1, m, sizeof m - 1) < 0)
		_exit(9);
	if (jump)
		siglongjmp(back, 1);
}

int main(int argc, char **argv)
{
	jump = argc > 1 && !strcmp(argv[1], "jump");
	signal(SIGABRT, on_abrt);
	void *volatile p = malloc((size_t)1 << 30);
	if (p)
		return 3; /* no limit refused it */
	if (sigsetjmp(back, 1)) {
		puts("recovered");
		return 5;
	}
	abort();
}
