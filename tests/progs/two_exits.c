/* two_exits: threads call exit() at the same moment, as perl's threads do
 * when they run out of memory together (undefined in C11, common in
 * practice): two, or the number given as an argument. With the argument
 * "big", the main thread first asks for 8 MiB (a limit under that refuses
 * it); with "mix", every other thread calls _exit(1); with "quick", they
 * call quick_exit(1); with "abort", every other thread calls abort();
 * with "abortjump", one thread's abort() is left by its SIGABRT handler's
 * siglongjmp, and then main exits (status 1).
 * test_outputs, exits_at_once, many_exits_at_once, abort_and_exit. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_barrier_t b;
static int how; /* 0: exit, 1: every other _exit, 2: quick_exit, 3: every
		 * other abort */

static void *t(void *a)
{
	int i = (int)(long)a;
	pthread_barrier_wait(&b);
	if (how == 2)
		quick_exit(1);
	if (how == 1 && i % 2)
		_exit(1);
	if (how == 3 && i % 2)
		abort();
	exit(1);
}

static sigjmp_buf jump_out;

static void jump_away(int sig)
{
	(void)sig;
	siglongjmp(jump_out, 1);
}

static void *abort_and_survive(void *a)
{
	(void)a;
	signal(SIGABRT, jump_away);
	if (!sigsetjmp(jump_out, 1))
		abort();
	return NULL;
}

int main(int argc, char **argv)
{
	int n = 2, big = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "big"))
			big = 1;
		else if (!strcmp(argv[i], "mix"))
			how = 1;
		else if (!strcmp(argv[i], "quick"))
			how = 2;
		else if (!strcmp(argv[i], "abort"))
			how = 3;
		else if (!strcmp(argv[i], "abortjump")) {
			pthread_t a;
			pthread_create(&a, 0, abort_and_survive, 0);
			pthread_join(a, 0);
			exit(1);
		}
		else
			n = atoi(argv[i]);
	}
	pthread_t x[64];
	if (n < 1 || n > 64)
		return 2;
	char *volatile p = malloc(big ? 8 << 20 : 1 << 20);
	if (p)
		memset(p, 1, 1 << 20);
	pthread_barrier_init(&b, 0, (unsigned)n);
	for (int i = 0; i < n; i++)
		pthread_create(&x[i], 0, t, (void *)(long)i);
	pthread_join(x[0], 0);
	return 0;
}
