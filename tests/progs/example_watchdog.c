/* example_watchdog.c: cancel a runaway computation after a deadline.
 *
 * The computation runs as a task under a token (ml_limit_with_token). A
 * watchdog thread waits for it; if the deadline passes first, the watchdog
 * sets the token. The computation's next allocation then fails: malloc
 * returns NULL, the computation takes its ordinary out-of-memory path and
 * returns, and ml_limit_with_token reports ML_TOKEN_LIMIT. Nothing is killed
 * and nothing leaks: the caller frees what the computation built.
 *
 * Build and run (memlimits.h is installed as <memlimits.h>; in this tree it
 * is shim/memlimits.h):
 *
 *     cc -O2 -pthread example_watchdog.c -o example_watchdog -ldl
 *     LD_PRELOAD=/path/to/libmemlimits.so ./example_watchdog
 *
 * Exit status: 0 if the watchdog cancelled the computation, 1 otherwise. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "shim/memlimits.h"

#define DEADLINE_MS 100
/* A task is interrupted at an allocation. One that stops allocating (stuck
 * in a loop, blocked in I/O) cannot be, so the watchdog gives it this long
 * to react before giving up on the whole process. */
#define GRACE_MS 5000

/* ---- The runaway computation ------------------------------------------- */

/* A search that remembers every state it visits. Its state space is, for all
 * practical purposes, infinite: left alone, it would run until the machine
 * runs out of memory. */
struct node {
	struct node *next;
	uint64_t state;
};

struct search {
	struct node *visited; /* every state seen, newest first */
	unsigned long nodes;
};

static void *runaway_search(void *arg)
{
	struct search *s = arg;
	uint64_t state = 1;
	for (;;) {
		/* Some work per state. */
		for (int i = 0; i < 1000; i++)
			state = state * 6364136223846793005u + 1442695040888963407u;
		struct node *n = malloc(sizeof *n);
		if (!n)
			break; /* out of memory, or cancelled: stop cleanly */
		n->state = state;
		n->next = s->visited;
		s->visited = n;
		s->nodes++;
	}
	return s;
}

static void free_search(struct search *s)
{
	while (s->visited) {
		struct node *n = s->visited;
		s->visited = n->next;
		free(n);
	}
}

/* ---- The watchdog ------------------------------------------------------- */

struct watch {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;        /* the computation returned */
	bool cancelled;   /* the watchdog set the token */
	ml_token *token;
};

static struct timespec in_ms(long ms)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

/* Waits until the computation is done or `until` passes. Returns done. */
static bool wait_done(struct watch *w, const struct timespec *until)
{
	while (!w->done)
		if (pthread_cond_timedwait(&w->cond, &w->lock, until) == ETIMEDOUT)
			break;
	return w->done;
}

static void *watchdog(void *arg)
{
	struct watch *w = arg;
	struct timespec deadline = in_ms(DEADLINE_MS);
	pthread_mutex_lock(&w->lock);
	if (!wait_done(w, &deadline)) {
		printf("watchdog: %d ms deadline passed, cancelling\n", DEADLINE_MS);
		w->cancelled = true;
		/* Lock-free and async-signal-safe: could be a signal handler too. */
		ml_token_set(w->token);
		struct timespec grace = in_ms(GRACE_MS);
		if (!wait_done(w, &grace)) {
			fprintf(stderr, "watchdog: the computation does not stop; "
					"giving up\n");
			_exit(2);
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* ---- Putting it together ------------------------------------------------ */

int main(void)
{
	/* ML_INVALID means the engine was already started (a MEMLIMITS_*
	 * variable does that): fine. */
	ml_status st = ml_start();
	if (st != ML_OK && st != ML_INVALID) {
		printf("memlimits: %s\n", ml_status_string(st));
		return 1;
	}

	struct watch w = { .token = ml_token_create() };
	if (!w.token) {
		printf("cannot create a token\n");
		return 1;
	}
	pthread_mutex_init(&w.lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w.cond, &ca);
	pthread_condattr_destroy(&ca);

	pthread_t th;
	if (pthread_create(&th, NULL, watchdog, &w) != 0) {
		printf("cannot start the watchdog\n");
		return 1;
	}

	struct search s = { 0 };
	st = ml_limit_with_token(w.token, runaway_search, &s, NULL);

	pthread_mutex_lock(&w.lock);
	w.done = true;
	pthread_cond_signal(&w.cond);
	pthread_mutex_unlock(&w.lock);
	pthread_join(th, NULL);

	printf("search stopped after %lu states: %s\n", s.nodes,
	       ml_status_string(st));
	/* The task returned normally, so what it built is ours to free. */
	free_search(&s);
	ml_token_destroy(w.token);
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);

	if (st == ML_TOKEN_LIMIT && w.cancelled) {
		printf("runaway computation cancelled by the watchdog\n");
		return 0;
	}
	printf("the computation was not cancelled as expected\n");
	return 1;
}
