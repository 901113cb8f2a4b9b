/* tree_hog THREADS: THREADS threads each allocate 4 KiB blocks (touched)
 * until malloc fails, then the process prints its memory (ml_stats live +
 * mapped bytes) and keeps it until stdin closes. For the overshoot bound of
 * a process tree's limit. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim/memlimits.h"

static void *hog(void *arg)
{
	(void)arg;
	void **list = NULL;
	for (;;) {
		void **p = malloc(4096);
		if (!p)
			break;
		memset(p, 1, 4096);
		*p = list;
		list = p;
	}
	return list;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;
	pthread_t th[64];
	for (int i = 0; i < n && i < 64; i++)
		pthread_create(&th[i], NULL, hog, NULL);
	for (int i = 0; i < n && i < 64; i++)
		pthread_join(th[i], NULL);
	struct ml_stats s;
	ml_stats(&s);
	printf("%lld\n", (long long)(s.live_bytes + s.mapped_bytes));
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
