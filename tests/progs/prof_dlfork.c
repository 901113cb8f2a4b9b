/* prof_dlfork LIB: three threads load and unload LIB (dlopen, dlclose) in
 * a loop while the main thread forks 40 children in turn, each of which
 * allocates 200 blocks (sampled, under the profiler at a small interval)
 * and exits. A child forked while a thread held the loader's write lock
 * (inside dlopen or dlclose) inherited it held, and its first sample
 * waited for it for ever (glibc does not reset that lock in a fork child).
 * Exit 0 iff every child exited 0; the caller's time limit catches a hang. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *lib;
static volatile int stop;

static void *load_unload(void *arg)
{
	while (!stop) {
		void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			fprintf(stderr, "dlopen: %s\n", dlerror());
			exit(2);
		}
		free(malloc(1000));
		dlclose(h);
	}
	return arg;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	lib = argv[1];
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, load_unload, NULL);
	int bad = 0;
	for (int k = 0; k < 40; k++) {
		pid_t c = fork();
		if (c == 0) {
			void *q[200];
			for (int j = 0; j < 200; j++)
				q[j] = malloc((size_t)j * 100 + 1);
			for (int j = 0; j < 200; j++)
				free(q[j]);
			_exit(0);
		}
		int st;
		if (c < 0 || waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st))
			bad++;
	}
	stop = 1;
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	printf("children failed: %d\n", bad);
	return bad != 0;
}
