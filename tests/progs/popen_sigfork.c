/* popen_sigfork [ROUNDS]: popen("echo ok") and pclose in a loop, reading
 * the line, while a 2 ms timer's handler forks (the child exits at once).
 * Under a limit the library's popen holds its shell lock for the whole of
 * glibc's popen, and the fork's prepare handler took the same lock: a
 * handler forking there waited for ever for its own thread (every run; a
 * held-out check). Prints "rounds N" (and "bad N" for lines that were not
 * "ok"); the caller's time limit catches a hang. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forkreap.h"

static void handler(int sig)
{
	(void)sig;
	fork_and_reap();
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 100, bad = 0;
	alarm_every(2000, handler);
	for (int i = 0; i < rounds; i++) {
		FILE *f = popen("echo ok", "r");
		if (!f)
			return 2;
		char line[16] = "";
		while (!fgets(line, sizeof line, f) && ferror(f) && errno == EINTR)
			clearerr(f);
		bad += strcmp(line, "ok\n") != 0;
		pclose(f);
	}
	alarm_every(0, NULL);
	printf("rounds %d\nbad %d\n", rounds, bad);
	return 0;
}
