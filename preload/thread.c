/* thread.c: registers every new thread when it starts, before its first
 * allocation, so that a thread that only frees (a consumer) is still counted
 * in the live heap. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>

#include "../core/internal.h"

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *,
			 void *(*)(void *), void *);

struct start {
	void *(*fn)(void *);
	void *arg;
};

static void *trampoline(void *p)
{
	struct start s = *(struct start *)p;
	mli_be_free(p);
	mli_thread_start();
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
