/* out_misc MODE: small programs for the output tests (tests/test_outputs.c).
 *   unplaced   (profiling build, every byte sampled, under ulimit -v) asks
 *              for PTRDIFF_MAX bytes, which no allocator serves, then for
 *              100 MiB, which jemalloc serves but the profiler's range (a
 *              small one under ulimit -v) cannot hold: only the second is
 *              worth memlimits' "does not fit" message. Prints what each
 *              malloc returned.
 *   abort-in-handler  calls abort() with a SIGABRT handler that calls
 *              abort() again, once (every time would recurse for ever, with
 *              or without memlimits): the report is written once, and the
 *              process dies of SIGABRT.
 *   chdir DIR  changes to DIR and exits: a relative MEMLIMITS_REPORT stays
 *              where the process started.
 *   hog-abort  allocates 1 MiB blocks until malloc fails, then calls
 *              abort() itself (an assert-like end).
 *   jit        allocates from code in anonymous memory, unmapped before
 *              exit: a profile frame that no object holds (dladdr fails).
 *   cancel-callback  (profiling build) a thread is cancelled while its
 *              profiler callback sleeps (a cancellation point); then
 *              ml_memprof_stop must return, not wait for that callback.
 *   fork-callback  (profiling build) main forks while another thread's
 *              callback runs; ml_memprof_stop in the child must return.
 *   breach-exec  (under a 50M limit, profiled) holds 30 MiB from
 *              held_before_exec, is refused 100 MiB, then execs itself as
 *              "breach-again", which holds 10 MiB from held_after_exec and
 *              is refused 200 MiB: the breach profile must stay the first
 *              image's.
 * The last two print "stopped N" (N: the ml_status) and arm alarm(10). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim/memlimits.h"

static void *volatile sink;

static void again(int sig)
{
	static volatile sig_atomic_t once;
	(void)sig;
	if (!once++)
		abort();
}

/* Calls malloc(n) from code in anonymous memory, which no object holds. */
static void *via_jit(size_t n)
{
	static const unsigned char code[] = {
		0x48, 0x83, 0xec, 0x08, /* sub $8, %rsp */
		0xff, 0xd6,             /* call *%rsi */
		0x48, 0x83, 0xc4, 0x08, /* add $8, %rsp */
		0xc3,                   /* ret */
	};
	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return NULL;
	memcpy(page, code, sizeof code);
	if (mprotect(page, 4096, PROT_READ | PROT_EXEC) != 0)
		return NULL;
	void *(*stub)(size_t, void *(*)(size_t)) =
		(void *(*)(size_t, void *(*)(size_t)))page;
	void *p = stub(n, malloc);
	munmap(page, 4096);
	return p;
}

/* A tracker whose alloc callback, in the thread marked `slow`, sleeps. */
static _Thread_local int slow;
static atomic_int in_callback;

static void *slow_alloc(const ml_sample *s, void *data)
{
	(void)s;
	(void)data;
	if (slow) {
		atomic_store(&in_callback, 1);
		usleep(300 * 1000); /* a cancellation point */
	}
	return NULL;
}

static void *sampled_thread(void *arg)
{
	(void)arg;
	slow = 1;
	sink = malloc(100); /* sampled: the rate is 1 */
	for (;;)
		pthread_testcancel();
	return NULL;
}

static int callback_mode(bool fork_it)
{
	alarm(10);
	static const ml_tracker tr = { slow_alloc, NULL, NULL };
	ml_status st = ml_memprof_start(1.0, 8, &tr);
	if (st != ML_OK) {
		printf("start %d\n", (int)st);
		return 1;
	}
	pthread_t t;
	pthread_create(&t, NULL, sampled_thread, NULL);
	while (!atomic_load(&in_callback))
		usleep(1000);
	if (!fork_it) {
		pthread_cancel(t); /* while the callback sleeps */
		pthread_join(t, NULL);
		printf("stopped %d\n", (int)ml_memprof_stop());
		return 0;
	}
	pid_t pid = fork(); /* while the other thread's callback runs */
	if (pid == 0) {
		printf("stopped %d\n", (int)ml_memprof_stop());
		fflush(stdout);
		_exit(0);
	}
	int status;
	waitpid(pid, &status, 0);
	pthread_cancel(t);
	pthread_join(t, NULL);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

__attribute__((noinline)) static void *held_before_exec(size_t n)
{
	char *p = malloc(n);
	if (p)
		memset(p, 1, n);
	return p;
}

__attribute__((noinline)) static void *held_after_exec(size_t n)
{
	char *p = malloc(n);
	if (p)
		memset(p, 1, n);
	return p;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	if (strcmp(mode, "breach-exec") == 0) {
		sink = held_before_exec(30 << 20);
		if (!sink || held_before_exec(100 << 20))
			return 3; /* no breach */
		execl("/proc/self/exe", argv[0], "breach-again", (char *)NULL);
		return 4;
	}
	if (strcmp(mode, "breach-again") == 0) {
		sink = held_after_exec(10 << 20);
		return !sink || held_after_exec(200 << 20) ? 3 : 0;
	}
	if (strcmp(mode, "unplaced") == 0) {
		sink = malloc(PTRDIFF_MAX);
		printf("huge %s\n", sink ? "served" : "null");
		sink = malloc(100 << 20);
		printf("100MiB %s\n", sink ? "served" : "null");
		free(sink);
		return 0;
	}
	if (strcmp(mode, "abort-in-handler") == 0) {
		signal(SIGABRT, again);
		abort();
	}
	if (strcmp(mode, "chdir") == 0 && argc > 2)
		return chdir(argv[2]) == 0 ? 0 : 1;
	if (strcmp(mode, "hog-abort") == 0) {
		for (int i = 0; i < 4096; i++) {
			char *p = malloc(1 << 20);
			if (!p)
				abort();
			memset(p, 1, 4096);
		}
		return 4;
	}
	if (strcmp(mode, "jit") == 0) {
		for (int i = 0; i < 64; i++)
			sink = via_jit(1000); /* kept: live bytes too */
		return 0;
	}
	if (strcmp(mode, "cancel-callback") == 0)
		return callback_mode(false);
	if (strcmp(mode, "fork-callback") == 0)
		return callback_mode(true);
	fprintf(stderr, "usage: out_misc unplaced|abort-in-handler|chdir DIR|hog-abort|jit"
			"|cancel-callback|fork-callback|breach-exec\n");
	return 2;
}
