/* exit_forkers LIB MICROS: exit() while two threads fork in a loop and two
 * allocate, with a library (LIB: libexitplug.so) whose destructor frees.
 * The library's fork handlers were unregistered by glibc at its exit
 * (__cxa_finalize), and a fork then between its prepare and parent
 * handlers left the library's locks held: the destructor's free spun for
 * ever (7 of 30 runs under the profiler). A hang is the caller's timeout. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void *volatile sink;

static void *forker(void *arg)
{
	(void)arg;
	for (;;) {
		pid_t p = fork();
		if (p == 0)
			_exit(0);
		if (p > 0)
			waitpid(p, NULL, 0);
	}
	return NULL;
}

static void *allocer(void *arg)
{
	(void)arg;
	void *keep[32] = { 0 };
	for (unsigned i = 0;; i++) {
		unsigned k = i % 32;
		free(keep[k]);
		keep[k] = malloc(16 + (i * 37) % 20000);
		sink = keep[k];
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3 || !dlopen(argv[1], RTLD_NOW)) {
		fprintf(stderr, "exit_forkers LIB MICROS: %s\n", argc < 3 ? "" : dlerror());
		return 2;
	}
	pthread_t t;
	for (int i = 0; i < 2; i++) {
		pthread_create(&t, NULL, forker, NULL);
		pthread_create(&t, NULL, allocer, NULL);
	}
	usleep((useconds_t)atoi(argv[2]));
	exit(0);
}
