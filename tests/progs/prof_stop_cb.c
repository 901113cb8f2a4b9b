/* prof_stop_cb: callbacks of ml_memprof_start that stop the profiler and
 * start it again, in three threads at once. A stop inside a callback waited
 * for the other threads' callbacks in flight, which could be waiting in
 * their own stop: all threads spun for ever (4 runs of 5). Prints "done"
 * and exits 0; a hang is the test's timeout. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

static void *on_alloc(const ml_sample *s, void *data);
static const ml_tracker tracker = { on_alloc, NULL, NULL };

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)s, (void)data;
	ml_memprof_stop();
	ml_memprof_start(0.01, 8, &tracker);
	return (void *)1;
}

static void *churn(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20000; i++) {
		void *volatile q = malloc(1000);
		free(q);
	}
	return NULL;
}

int main(void)
{
	if (ml_memprof_start(0.01, 8, &tracker) != ML_OK)
		return 2;
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, churn, NULL);
	churn(NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ml_memprof_stop();
	printf("done\n");
	return 0;
}
