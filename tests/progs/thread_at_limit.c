/* thread_at_limit: run with MEMLIMITS_GLOBAL_MEMORY=64M. Threads and a
 * memory limit (core/engine.c mli_thread_may_start, internal.h
 * mli_start_grace):
 *  - a thread started before the memory reaches the limit, and running
 *    only after: its first 64 KiB (allocated or mapped) are admitted, so
 *    that a runtime's thread start-up does not fail half way (CPython
 *    3.11 then hung); beyond them it is refused as any thread;
 *  - with the memory at the limit, pthread_create fails with EAGAIN;
 *    once memory is freed, it succeeds again.
 * Exit 0 iff all hold; prints what it saw. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static pthread_barrier_t go;
static int failures;

static void check(int ok, const char *what)
{
	printf("%s: %s\n", what, ok ? "ok" : "FAILED");
	failures += !ok;
}

static void *late(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&go); /* the memory is at the limit now */
	void *a = malloc(16 * KiB);
	void *m = mmap(NULL, 16 * KiB, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *b = malloc(24 * KiB);
	check(a && m != MAP_FAILED && b,
	      "a thread that starts at the limit gets its first 64 KiB");
	void *c = malloc(100 * KiB);
	check(c == NULL, "and is refused beyond them");
	free(a);
	free(b);
	free(c);
	if (m != MAP_FAILED)
		munmap(m, 16 * KiB);
	return NULL;
}

static void *nothing(void *arg)
{
	return arg;
}

int main(void)
{
	pthread_barrier_init(&go, NULL, 2);
	pthread_t t;
	if (pthread_create(&t, NULL, late, NULL) != 0)
		return 2;
	/* Fill the memory up to the limit. */
	size_t n = 0, cap = 4096;
	void **held = calloc(cap, sizeof *held);
	while (held && n < cap && (held[n] = malloc(64 * KiB)) != NULL)
		memset(held[n++], 1, 64 * KiB);
	printf("holding %zu KiB\n", n * 64);
	pthread_barrier_wait(&go);
	pthread_join(t, NULL);

	pthread_t u;
	int r = pthread_create(&u, NULL, nothing, NULL);
	check(r == EAGAIN, "pthread_create at the limit fails with EAGAIN");
	if (r == 0)
		pthread_join(u, NULL);
	for (size_t i = 0; i < n; i++)
		free(held[i]);
	r = pthread_create(&u, NULL, nothing, NULL);
	check(r == 0, "pthread_create succeeds once memory is freed");
	if (r == 0)
		pthread_join(u, NULL);
	free(held);
	return failures != 0;
}
