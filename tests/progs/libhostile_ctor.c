/* libhostile_ctor.so: a library that allocates in its constructor and
 * destructor, for dlopen/dlclose loops (tests/progs/hostile_dl.c).
 *
 * The constructor measures its own allocations with ml_stats: they must
 * raise this thread's thread_allocated by exactly HOSTILE_CTOR_BYTES plus
 * the growth of one realloc (the new block's usable size minus the old
 * one's, see ml_limit_allocations). It also creates a pthread key whose value
 * for this thread is a malloc'd block, and touches a thread-local array
 * (dynamic TLS, which glibc allocates with malloc). The destructor frees
 * what the constructor kept, allocates and frees once more, deletes the key
 * and counts itself in the caller's counter (hostile_ctor_set_counter). */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

#define HOSTILE_CTOR_BYTES (1000 + 2000 + 3000 + 100)

static __attribute__((noinline)) void *xmalloc(size_t n)
{
	void *p = malloc(n);
	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}

static void *kept;
static pthread_key_t key;
static int key_ok;
static int *dtor_counter;
static __thread char tls_buf[8192];

/* What the constructor saw: the growth of thread_allocated across its own
 * allocations, and what it should have been. */
uint64_t hostile_ctor_counted, hostile_ctor_expected;
int hostile_ctor_failed; /* an allocation returned NULL, or ml_stats failed */

__attribute__((constructor)) static void lib_ctor(void)
{
	struct ml_stats a, b;
	if (ml_stats(&a) != ML_OK)
		hostile_ctor_failed = 1;
	void *p = xmalloc(1000);
	void *q = calloc(2, 1000);
	kept = xmalloc(3000);
	size_t have = q ? malloc_usable_size(q) : 0;
	void *q2 = q ? realloc(q, 5000) : NULL;
	if (q2)
		q = q2;
	if (pthread_key_create(&key, free) == 0) {
		key_ok = 1;
		pthread_setspecific(key, xmalloc(100));
	} else
		xmalloc(100); /* keep the count the same; leaks 100 bytes */
	if (ml_stats(&b) != ML_OK)
		hostile_ctor_failed = 1;
	if (!p || !q || !q2 || !kept)
		hostile_ctor_failed = 1;
	hostile_ctor_counted = b.thread_allocated - a.thread_allocated;
	size_t now = q2 ? malloc_usable_size(q2) : 0;
	hostile_ctor_expected = HOSTILE_CTOR_BYTES + (now > have ? now - have : 0);
	free(p);
	free(q);
	memset(tls_buf, 1, sizeof tls_buf); /* after the measurement */
}

__attribute__((destructor)) static void lib_dtor(void)
{
	free(kept);
	void *p = xmalloc(500);
	free(p);
	if (key_ok) {
		free(pthread_getspecific(key));
		pthread_setspecific(key, NULL);
		pthread_key_delete(key);
	}
	if (dtor_counter)
		++*dtor_counter;
}

void hostile_ctor_set_counter(int *c)
{
	dtor_counter = c;
}

uint64_t hostile_ctor_bytes(void)
{
	return HOSTILE_CTOR_BYTES;
}

/* Allocates n bytes from library code. */
void *hostile_ctor_alloc(size_t n)
{
	return xmalloc(n);
}

/* Touches this thread's copy of the thread-local array (allocated on first
 * use) and sets its key value; both are freed when the thread exits. */
int hostile_ctor_touch_tls(void)
{
	memset(tls_buf, 2, sizeof tls_buf);
	if (key_ok && !pthread_getspecific(key))
		pthread_setspecific(key, xmalloc(64));
	return tls_buf[100];
}
