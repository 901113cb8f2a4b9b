/* tidlock.h: a lock whose futex word holds its holder's thread id (0: free;
 * MLI_TIDLOCK_WAITERS set when a thread may wait). The holder is set by the
 * compare-and-exchange that takes it, so "this thread holds it" has no
 * window: a fork from a signal handler can tell a hold of its own thread
 * from a wait for another's (mmap.c's account lock, exec.c's shell lock).
 * No allocation; not a cancellation point (syscall(2) never is). */
#ifndef MLI_TIDLOCK_H
#define MLI_TIDLOCK_H

#include <linux/futex.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MLI_TIDLOCK_WAITERS (1 << 30)

static inline void mli_tidlock_take(int *w, int me)
{
	int c = 0;
	if (__atomic_compare_exchange_n(w, &c, me, false, __ATOMIC_ACQUIRE,
					__ATOMIC_RELAXED))
		return;
	for (;;) {
		if (c == 0) { /* free: taken, others may still wait */
			if (__atomic_compare_exchange_n(w, &c, me | MLI_TIDLOCK_WAITERS, false,
							__ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
				return;
			continue;
		}
		if (!(c & MLI_TIDLOCK_WAITERS) &&
		    !__atomic_compare_exchange_n(w, &c, c | MLI_TIDLOCK_WAITERS, false,
						 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			continue;
		syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, c | MLI_TIDLOCK_WAITERS, NULL, NULL, 0);
		c = __atomic_load_n(w, __ATOMIC_RELAXED);
	}
}

static inline bool mli_tidlock_held_by(const int *w, int me)
{
	return (__atomic_load_n(w, __ATOMIC_RELAXED) & ~MLI_TIDLOCK_WAITERS) == me;
}

static inline void mli_tidlock_give(int *w)
{
	if (__atomic_exchange_n(w, 0, __ATOMIC_RELEASE) & MLI_TIDLOCK_WAITERS)
		syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

#endif
