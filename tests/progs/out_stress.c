/* out_stress MODE [ARG]: the hazards of the library's locks around its
 * output files (issue 12), each as a race that deadlocked the profiling
 * build. Run with libmemlimits-prof.so, MEMLIMITS_PROFILE set and a small
 * MEMLIMITS_SAMPLE_INTERVAL (tests/test_outputs.c does). A hang is caught
 * by alarm(): the process (or a forked child) dies of SIGALRM, which the
 * test counts as a failure.
 *
 *   fork N    three threads allocate (sampled) while main forks N times;
 *             each child allocates and calls exit(), which writes its
 *             report and profile. A child that inherited a lock held by
 *             one of the threads hangs.
 *   cancel    a thread allocates under MEMLIMITS_THREAD_ALLOCATIONS until
 *             its budget refuses, which writes the breach profile in that
 *             thread; main cancels it as soon as the breach file appears,
 *             then allocates (sampled). A thread that died inside the writer
 *             holding the profile's lock hangs main.
 *   dlopen LIB  a thread dlopens and dlcloses LIB (whose constructor
 *             allocates, sampled, under the loader's lock) while main calls
 *             exit(), which writes the profile and names its frames with
 *             dladdr (the loader's lock).
 *   signal [MS [IDLE]]  for MS milliseconds (default 1000), a thread
 *             allocates and frees sampled blocks while another
 *             thread interrupts it with a signal whose handler allocates
 *             and frees (sampled) blocks too: a handler that lands while its
 *             thread holds the region's or the profile's lock, or (with
 *             MEMLIMITS_GLOBAL_MEMORY, which measures the heap at every
 *             slow path, and IDLE idle threads, which make the measure
 *             longer) the registry's lock. Run it with
 *             MEMLIMITS_SAMPLE_INTERVAL=1: every block is then the
 *             profiler's, so the handler never interrupts one of jemalloc's
 *             own operations (a malloc in a handler that interrupted malloc
 *             is undefined with any malloc; the profiler's own jemalloc calls
 *             block signals).
 * "FAIL ..." on stderr for each failure; exit 0 iff none. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hostile.h"

#define NOINLINE __attribute__((noinline, noclone))

static NOINLINE void *xmalloc(size_t n)
{
	void *p = malloc(n);
	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}

/* Many distinct call stacks (2^depth), so that the profile has many sites
 * and writing it takes a while: a chain of calls through fa or fb chosen by
 * the bits of k. */
static NOINLINE void *fa(unsigned k, int d);
static NOINLINE void *fb(unsigned k, int d);
static NOINLINE void *fa(unsigned k, int d)
{
	void *p = d ? ((k & 1) ? fb : fa)(k >> 1, d - 1) : xmalloc(64 + k % 512);
	__asm__ volatile("" ::: "memory");
	return p;
}
static NOINLINE void *fb(unsigned k, int d)
{
	void *p = d ? ((k & 1) ? fb : fa)(k >> 1, d - 1) : xmalloc(32 + k % 256);
	__asm__ volatile("" ::: "memory");
	return p;
}

static atomic_ulong beat; /* progress of many_sites, for the signal mode */

static void many_sites(unsigned n, int depth)
{
	for (unsigned k = 0; k < n; k++) {
		free(fa(k, depth));
		atomic_fetch_add_explicit(&beat, 1, memory_order_relaxed);
	}
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static atomic_int stop;

/* Allocates and frees random small blocks, holding up to 64. */
static void *churn(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 0x9E3779B97F4A7C15ULL + 1;
	void *held[64] = { 0 };
	for (unsigned i = 0; !atomic_load(&stop); i++) {
		unsigned k = i % 64;
		free(held[k]);
		held[k] = xmalloc(1 + rnd(&seed) % 4096);
	}
	for (int k = 0; k < 64; k++)
		free(held[k]);
	return NULL;
}

/* ---- fork ------------------------------------------------------------------ */

static int mode_fork(int n)
{
	pthread_t t[3];
	for (uintptr_t i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, churn, (void *)(i + 1));
	int hung = 0, done = 0;
	for (int i = 0; i < n && !hung; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			fail("fork: %s", strerror(errno));
			break;
		}
		if (pid == 0) {
			alarm(5);
			for (int k = 0; k < 200; k++)
				free(xmalloc(1 + (size_t)k * 37));
			exit(0); /* the report and the profile, in the child */
		}
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		done++;
		if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM) {
			fail("child %d of %d hung (killed by its alarm)", i + 1, n);
			hung = 1;
		} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fail("child %d of %d: status 0x%x", i + 1, n, st);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	printf("fork: %d children\n", done);
	return 0;
}

/* ---- cancel ---------------------------------------------------------------- */

static void *hog(void *arg)
{
	(void)arg;
	many_sites(2048, 11);
	/* Then allocate until the thread's budget refuses: the breach writes
	 * the profile here, in this thread. */
	for (;;) {
		void *p = xmalloc(64 << 10);
		if (!p)
			break;
		((char *)p)[0] = 1; /* kept: the budget counts allocations anyway */
	}
	for (;;)
		pthread_testcancel(); /* the cancellation lands here after the write */
	return NULL;
}

static int mode_cancel(void)
{
	const char *prof = getenv("MEMLIMITS_PROFILE");
	if (!prof) {
		fail("MEMLIMITS_PROFILE is not set");
		return 1;
	}
	char breach[4096];
	/* %p in the name is this process's pid; otherwise the name as given or
	 * with .PID appended (the test passes a name with %p). */
	const char *pp = strstr(prof, "%p");
	if (pp)
		snprintf(breach, sizeof breach, "%.*s%d%s.breach", (int)(pp - prof), prof,
			 (int)getpid(), pp + 2);
	else
		snprintf(breach, sizeof breach, "%s.breach", prof);
	pthread_t t;
	pthread_create(&t, NULL, hog, NULL);
	struct stat st;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (stat(breach, &st) != 0) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > 20) {
			fail("no breach profile %s after 20 s", breach);
			return 1;
		}
	}
	pthread_cancel(t); /* lands while the thread writes the breach profile */
	pthread_join(t, NULL);
	/* Sampled allocations of this thread need the profile's lock. */
	many_sites(256, 8);
	printf("cancel: done\n");
	return 0;
}

/* ---- dlopen ---------------------------------------------------------------- */

static const char *dl_lib;

static void *dl_loop(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		void *h = dlopen(dl_lib, RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			fail("dlopen %s: %s", dl_lib, dlerror());
			return NULL;
		}
		dlclose(h);
	}
	return NULL;
}

static int mode_dlopen(const char *lib)
{
	dl_lib = lib;
	many_sites(2048, 11);
	pthread_t t;
	pthread_create(&t, NULL, dl_loop, NULL);
	usleep(2000 + (unsigned)(getpid() % 5000)); /* into the loop */
	exit(0); /* writes the profile while the thread is inside dlopen */
}

/* ---- signal ---------------------------------------------------------------- */

static void *volatile handler_block;
static atomic_ulong handled;

static void on_signal(int sig)
{
	(void)sig;
	int saved = errno;
	/* A sampled allocation and a sampled free, in the handler. */
	void *p = xmalloc(256);
	void *old = handler_block;
	handler_block = p;
	free(old);
	atomic_fetch_add(&handled, 1);
	errno = saved;
}

/* One signal at a time, and only once the thread has made progress of its
 * own since the last (a signal pending again at every sigreturn would
 * starve it), after a random delay within the thread's time per iteration,
 * so that the signals land all over its allocations and frees. */
static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void *kicker(void *arg)
{
	pthread_t victim = *(pthread_t *)arg;
	unsigned long sent = 0, last_beat = ~0UL;
	uint64_t seed = 0x9E3779B97F4A7C15ULL, last_t = 0, per_beat = 1000;
	while (!atomic_load(&stop)) {
		unsigned long b = atomic_load(&beat);
		if (atomic_load(&handled) < sent || b == last_beat)
			continue;
		uint64_t t = now_ns();
		if (last_t && b > last_beat)
			per_beat = (per_beat * 7 + (t - last_t) / (b - last_beat)) / 8;
		last_t = t;
		last_beat = b;
		uint64_t until = t + rnd(&seed) % (per_beat + 1);
		while (now_ns() < until && !atomic_load(&stop))
			;
		pthread_kill(victim, SIGUSR1);
		sent++;
	}
	return NULL;
}

static void *idle(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop))
		usleep(1000);
	return NULL;
}

static int mode_signal(int ms, int nidle)
{
	pthread_t idlers[256];
	if (nidle > 256)
		nidle = 256;
	for (int i = 0; i < nidle; i++)
		pthread_create(&idlers[i], NULL, idle, NULL);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	pthread_t self = pthread_self(), k;
	pthread_create(&k, NULL, kicker, &self);
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	unsigned long rounds = 0;
	do {
		many_sites(64, 6);
		rounds++;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 <
		 ms);
	atomic_store(&stop, 1);
	pthread_join(k, NULL);
	for (int i = 0; i < nidle; i++)
		pthread_join(idlers[i], NULL);
	printf("signal: %lu rounds\n", rounds);
	return 0;
}

int main(int argc, char **argv)
{
	alarm(30);
	say_crashes();
	const char *mode = argc > 1 ? argv[1] : "";
	int r;
	if (strcmp(mode, "fork") == 0)
		r = mode_fork(argc > 2 ? atoi(argv[2]) : 300);
	else if (strcmp(mode, "cancel") == 0)
		r = mode_cancel();
	else if (strcmp(mode, "dlopen") == 0 && argc > 2)
		r = mode_dlopen(argv[2]);
	else if (strcmp(mode, "signal") == 0)
		r = mode_signal(argc > 2 ? atoi(argv[2]) : 1000, argc > 3 ? atoi(argv[3]) : 0);
	else {
		fprintf(stderr, "usage: out_stress fork [N] | cancel | dlopen LIB | signal [MS [IDLE]]\n");
		return 2;
	}
	return r || atomic_load(&failures) ? 1 : 0;
}
