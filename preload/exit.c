/* exit.c: _exit and _Exit, which end the process without exit()'s
 * handlers: dash ends every shell so, and forked children end so. Its
 * report must still be written, a process of a process tree (core/tree.c)
 * must give its share back, or the tree's file outlives it, and
 * MEMLIMITS_LIMIT_STATUS must apply.
 * Async-signal-safe, as _exit is: leaving
 * the tree only writes to the shared segment and makes system calls. */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <unistd.h>

#include "../core/internal.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT __attribute__((noreturn)) void _exit(int status)
{
	status = mli_limit_status_of(status);
	mli_report_quick_exit();
	mli_tree_exiting();
	for (;;)
		syscall(SYS_exit_group, status);
}

EXPORT __attribute__((noreturn)) void _Exit(int status)
	__attribute__((alias("_exit")));
