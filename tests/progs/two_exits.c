/* two_exits: two threads call exit() at the same moment, as perl's threads
 * do when they run out of memory together (undefined in C11, common in
 * practice). With an argument, the main thread first asks for 8 MiB (a
 * limit under that refuses it). test_outputs, exits_at_once. */
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
	(void)argv;
	pthread_t x, y;
	char *volatile p = malloc(argc > 1 ? 8 << 20 : 1 << 20);
	if (p)
		memset(p, 1, 1 << 20);
	pthread_barrier_init(&b, 0, 2);
	pthread_create(&x, 0, t, 0);
	pthread_create(&y, 0, t, 0);
	pthread_join(x, 0);
	return 0;
}
