/* jedecay.c: the dirty pages of an arena whose threads have all exited.
 *
 * When a thread exits and its arena is left with no thread, jemalloc 5.3
 * purges all of that arena's dirty pages at once (tcache_destroy calls
 * arena_decay with all = true), because nothing would ever decay them
 * otherwise: decay advances with the allocations of the arena's threads.
 * A program that keeps starting short threads (leakexit in make bench, a
 * thread per request) has its arenas emptied and refilled over and over:
 * every new thread faults its blocks' pages in again, 4.1k page faults
 * for 2,000 threads where glibc takes 1k, and 1.18x glibc's time.
 *
 * Here that purge is a normal decay step instead (only what the decay
 * curve says is due), and the arenas are owed a decay: the next slow
 * paths of any thread (mli_be_tick, every 64th of a thread, at most every
 * 100 ms in the process) run jemalloc's decay of all arenas, which for an
 * arena idle longer than dirty_decay_ms purges all its dirty pages. So a
 * dead arena's pages go back within the decay time, as a live arena's do,
 * as long as some thread allocates; under a memory limit a refusal purges
 * everything anyway (memory.c).
 *
 * The archive's tcache.o calls this instead of je_arena_decay (Makefile:
 * its reference renamed with objcopy); the other callers are unchanged. */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../core/internal.h"
#include "jemalloc.h"

extern void je_arena_decay(void *tsdn, void *arena, bool is_background_thread,
			   bool all);
void mli_je_tcache_decay(void *tsdn, void *arena, bool is_background_thread,
			 bool all);

uint64_t mli_be_tick_owed;   /* when a purge was last turned into a decay, or 0 */
static uint64_t last_tick;   /* when the arenas last decayed here */
static __thread uint32_t calls;

void mli_je_tcache_decay(void *tsdn, void *arena, bool is_background_thread,
			 bool all)
{
	if (all)
		__atomic_store_n(&mli_be_tick_owed, mli_now_ns(), __ATOMIC_RELAXED);
	je_arena_decay(tsdn, arena, is_background_thread, false);
}

/* How long after the last deferred purge the arenas may still hold pages
 * that decay has not yet returned: jemalloc's dirty_decay_ms, and a
 * second. */
static uint64_t decay_span(void)
{
	static uint64_t span;
	uint64_t s = __atomic_load_n(&span, __ATOMIC_RELAXED);
	if (!s) {
		ssize_t ms = 10000;
		size_t len = sizeof ms;
		mli_je_mallctl("opt.dirty_decay_ms", &ms, &len, NULL, 0);
		s = ((uint64_t)(ms > 0 ? ms : 0) + 1000) * 1000000u;
		__atomic_store_n(&span, s, __ATOMIC_RELAXED);
	}
	return s;
}

void mli_be_tick(void)
{
	if (++calls & 63)
		return;
	uint64_t owed = __atomic_load_n(&mli_be_tick_owed, __ATOMIC_RELAXED);
	uint64_t now = mli_now_ns();
	if (!owed || !mli_take_turn(&last_tick, now, 100000000u))
		return;
	/* jemalloc's locks are taken: no signal handler that allocates may
	 * run in this thread meanwhile (as mli_be_trim). */
	sigset_t sigs, old;
	sigfillset(&sigs);
	pthread_sigmask(SIG_BLOCK, &sigs, &old);
	mli_je_mallctl("arena.4096.decay", NULL, NULL, NULL, 0);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (now - owed > decay_span())
		__atomic_compare_exchange_n(&mli_be_tick_owed, &owed, 0, false,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}
