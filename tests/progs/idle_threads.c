/* idle_threads N[xROUNDS][f]: starts N threads that each allocate a block and
 * wait, then ends them (ROUNDS times, 1 by default), and prints "made M"
 * for each round (M: how many pthread_create accepted) and "rss KIB" (the
 * process's resident memory with the first round's threads alive). With
 * "f", the first round's threads up, a forked child asks for 25 MiB and
 * prints "child malloc ok" or "child malloc refused" (the parent's threads
 * are not in it). test_meters, threads_counted. */
#include <sys/wait.h>
#include <unistd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_barrier_t up;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int round_over;

static void *idle(void *arg)
{
	(void)arg;
	void *volatile p = malloc(1);
	pthread_barrier_wait(&up);
	pthread_mutex_lock(&lock);
	while (!round_over)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	free(p);
	return NULL;
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, res = 0;
	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &res) != 2)
		res = -1;
	fclose(f);
	return res * 4;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100;
	const char *x = argc > 1 ? strchr(argv[1], 'x') : NULL;
	int rounds = x ? atoi(x + 1) : 1;
	pthread_t *th = calloc((size_t)n, sizeof *th);
	if (!th)
		return 2;
	for (int r = 0; r < rounds; r++) {
		int made = 0;
		round_over = 0;
		for (; made < n; made++) {
			/* Started one at a time: each has its block before the next. */
			pthread_barrier_init(&up, NULL, 2);
			int e = pthread_create(&th[made], NULL, idle, NULL);
			if (e) {
				pthread_barrier_destroy(&up);
				break;
			}
			pthread_barrier_wait(&up);
			pthread_barrier_destroy(&up);
		}
		printf("made %d\n", made);
		if (r == 0)
			printf("rss %ld\n", rss_kib());
		fflush(stdout);
		if (r == 0 && argc > 1 && strchr(argv[1], 'f')) {
			pid_t pid = fork();
			if (pid == 0) {
				char *volatile p = malloc(25 << 20);
				printf("child malloc %s\n", p ? "ok" : "refused");
				fflush(stdout);
				_exit(0);
			}
			if (pid > 0)
				waitpid(pid, NULL, 0);
		}
		pthread_mutex_lock(&lock);
		round_over = 1;
		pthread_cond_broadcast(&cond);
		pthread_mutex_unlock(&lock);
		for (int i = 0; i < made; i++)
			pthread_join(th[i], NULL);
	}
	return 0;
}
