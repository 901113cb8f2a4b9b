/* xthread.c: two threads, producer and consumer. The producer allocates
 * ITEMS objects of random sizes 16..512 bytes (fixed seed), writes into
 * them and hands them through a bounded single-producer single-consumer
 * ring; the consumer reads and frees them: every free is a cross-thread
 * free. Each side publishes its position every BATCH objects (and before it
 * waits), so that the hand-off costs little per object; a side that finds
 * the ring full (empty) spins briefly, then sleeps
 * on a futex until the other side has made half a ring of progress, so that
 * waiting costs few system calls and few instructions (under callgrind too).
 * Prints a checksum.
 *
 *     xthread ITEMS [RING=1024] [SEED=1] */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

#define SPIN 200
#define BATCH 64

static void **ring;
static size_t ring_n; /* power of two */
static long items;
static uint64_t seed;
/* Own cache lines: the producer writes head, the consumer tail. */
static _Alignas(64) size_t head;
static _Alignas(64) size_t tail;
/* Sleeping sides: a flag and an event counter (the futex word) each. */
static _Alignas(64) uint32_t c_sleep, c_seq; /* consumer waits for items */
static _Alignas(64) uint32_t p_sleep, p_seq; /* producer waits for room */
static _Alignas(64) uint64_t consumed_sum;

static void futex_wait(uint32_t *w, uint32_t val)
{
	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Waits until ready(arg) holds: spins, then sleeps on *seq with *sleep set.
 * The other side, once it made half a ring of progress, bumps *seq and
 * wakes it (sequentially consistent flag and data: no lost wake-up). */
static void wait_until(int (*ready)(size_t), size_t arg, uint32_t *sleep,
		       uint32_t *seq)
{
	for (int i = 0; i < SPIN; i++) {
		if (ready(arg))
			return;
		__builtin_ia32_pause();
	}
	for (;;) {
		uint32_t s = __atomic_load_n(seq, __ATOMIC_SEQ_CST);
		__atomic_store_n(sleep, 1, __ATOMIC_SEQ_CST);
		if (ready(arg)) {
			__atomic_store_n(sleep, 0, __ATOMIC_SEQ_CST);
			return;
		}
		futex_wait(seq, s);
		__atomic_store_n(sleep, 0, __ATOMIC_SEQ_CST);
		if (ready(arg))
			return;
	}
}

static void wake(uint32_t *sleep, uint32_t *seq, int enough)
{
	if (__atomic_load_n(sleep, __ATOMIC_SEQ_CST) && enough) {
		__atomic_add_fetch(seq, 1, __ATOMIC_SEQ_CST);
		futex_wake(seq);
	}
}

static int has_room(size_t h)
{
	return h - __atomic_load_n(&tail, __ATOMIC_SEQ_CST) < ring_n;
}

static int has_item(size_t t)
{
	return __atomic_load_n(&head, __ATOMIC_SEQ_CST) != t;
}

/* Makes items before h visible; wakes the consumer if it sleeps and half
 * a ring is ready (or this is the last batch). */
static void publish_head(size_t h, int last)
{
	__atomic_store_n(&head, h, __ATOMIC_SEQ_CST);
	wake(&c_sleep, &c_seq,
	     last || h - __atomic_load_n(&tail, __ATOMIC_SEQ_CST) >= ring_n / 2);
}

/* Gives back the slots before t; wakes the producer if it sleeps and half
 * a ring is free. */
static void publish_tail(size_t t)
{
	__atomic_store_n(&tail, t, __ATOMIC_SEQ_CST);
	wake(&p_sleep, &p_seq,
	     __atomic_load_n(&head, __ATOMIC_SEQ_CST) - t <= ring_n / 2);
}

static void *producer(void *arg)
{
	(void)arg;
	struct rng r;
	rng_seed(&r, seed);
	size_t h = 0;
	for (long k = 0; k < items; k++) {
		size_t n = (size_t)rng_range(&r, 16, 512);
		uint64_t *p = malloc(n);
		if (!p)
			exit(1);
		p[0] = (uint64_t)k;
		((unsigned char *)p)[n - 1] = 1;
		if (!has_room(h)) {
			publish_head(h, 1);
			wait_until(has_room, h, &p_sleep, &p_seq);
		}
		ring[h & (ring_n - 1)] = p;
		h++;
		if (h % BATCH == 0 || k == items - 1)
			publish_head(h, k == items - 1);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	(void)arg;
	size_t t = 0;
	uint64_t sum = 0;
	for (long k = 0; k < items; k++) {
		if (!has_item(t)) {
			publish_tail(t);
			wait_until(has_item, t, &c_sleep, &c_seq);
		}
		uint64_t *p = ring[t & (ring_n - 1)];
		t++;
		if (t % BATCH == 0)
			publish_tail(t);
		sum += p[0];
		free(p);
	}
	consumed_sum = sum;
	return NULL;
}

int main(int argc, char **argv)
{
	items = arg_long(argc, argv, 1, 10000000);
	long rn = arg_long(argc, argv, 2, 1024);
	seed = (uint64_t)arg_long(argc, argv, 3, 1);
	for (ring_n = 4 * BATCH; ring_n < (size_t)rn; ring_n <<= 1)
		;
	ring = calloc(ring_n, sizeof *ring);
	if (!ring)
		return 1;
	pthread_t pt, ct;
	if (pthread_create(&ct, NULL, consumer, NULL) ||
	    pthread_create(&pt, NULL, producer, NULL))
		return 1;
	pthread_join(pt, NULL);
	pthread_join(ct, NULL);
	free(ring);
	printf("%llu\n", (unsigned long long)consumed_sum);
	return 0;
}
