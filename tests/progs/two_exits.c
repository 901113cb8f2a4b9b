/* two_exits: threads call exit() at the same moment, as perl's threads do
 * when they run out of memory together (undefined in C11, common in
 * practice): two, or the number given as an argument. With the argument
 * "big", the main thread first asks for 8 MiB (a limit under that refuses
 * it). test_outputs, exits_at_once and many_exits_at_once. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_barrier_t b;

static void *t(void *a)
{
	(void)a;
	pthread_barrier_wait(&b);
	exit(1);
}

int main(int argc, char **argv)
{
	int n = 2, big = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "big"))
			big = 1;
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
		pthread_create(&x[i], 0, t, 0);
	pthread_join(x[0], 0);
	return 0;
}
