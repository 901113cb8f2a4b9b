/* tree_churn SECS K: keeps K children running for SECS seconds, each filling
 * the tree's memory limit with 1 MiB blocks, freeing half and running on
 * for 0.2 s (nothing killed); then runs /bin/true. A process that left by
 * itself while another reaped its slot was counted out twice, the tree's
 * count of live processes fell to 0 with processes running, and the
 * segment was removed under them: later children exited 125 (4 runs of
 * 19). Prints "bad=N" (children that did not exit 0) and "true=S". */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void hog(void)
{
	void *b[256];
	int n = 0;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		void *p = n < 256 ? malloc(1 << 20) : NULL;
		if (p) {
			b[n++] = p;
		} else { /* refused: the tree reaps, then half is freed */
			for (int i = n / 2; i < n; i++)
				free(b[i]);
			n /= 2;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 200000000L);
	exit(0);
}

int main(int argc, char **argv)
{
	int secs = argc > 1 ? atoi(argv[1]) : 5, k = argc > 2 ? atoi(argv[2]) : 6;
	time_t end = time(NULL) + secs;
	int live = 0, bad = 0, st;
	while (time(NULL) < end) {
		while (live < k) {
			pid_t p = fork();
			if (p == 0)
				hog();
			if (p > 0)
				live++;
			else
				usleep(1000);
		}
		if (wait(&st) > 0) {
			live--;
			bad += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
		}
	}
	while (live > 0 && wait(&st) > 0) {
		live--;
		bad += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	pid_t p = fork();
	if (p == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(99);
	}
	waitpid(p, &st, 0);
	printf("bad=%d\ntrue=%d\n", bad, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	return 0;
}
