/* cancel_map: run under MEMLIMITS_GLOBAL_MEMORY=64M. A thread with a
 * cancellation pending (deferred) maps 200 MiB, which is refused; the
 * breach line was written with write(2), a cancellation point, while the
 * mapped-memory account's lock was held: the thread was cancelled there,
 * the lock stayed held, and the main thread's next mmap waited for ever
 * (20 of 20: a held-out check). Prints "main mmap ok". */
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>

static volatile int go;

static void *thread(void *arg)
{
	while (!go)
		; /* no cancellation point */
	mmap(NULL, 200 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pthread_testcancel();
	return arg;
}

int main(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, thread, NULL))
		return 2;
	pthread_cancel(t);
	go = 1;
	void *r;
	pthread_join(t, &r);
	if (r != PTHREAD_CANCELED)
		return 3;
	void *p = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 4;
	puts("main mmap ok");
	return 0;
}
