/* fork.c: glibc's _Fork (2.34), a fork that runs no atfork handler (for
 * async-signal-safe code that forks, then execs or works alone). The tree's
 * handler is one this library needs in every child: without it a child
 * kept its parent's share of the tree's budget and wrote its own memory
 * there, over its parent's, so that the tree's total missed one of them
 * (a held-out check: three _Fork children each got 60 MiB under a 100M
 * tree; fork_big's eight 8 MiB blocks under 20M were all given, fork's
 * children got two). The child takes a share of its own, as after fork.
 * The engine's other handlers are not run, as glibc runs none of libc's:
 * a multi-threaded parent's _Fork child may only call async-signal-safe
 * functions, malloc not among them. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/types.h>

#include "../core/internal.h"

typedef pid_t (*fork_fn)(void);
static fork_fn real_fork;

__attribute__((constructor)) static void fork_init(void)
{
	real_fork = (fork_fn)dlsym(RTLD_NEXT, "_Fork");
}

__attribute__((visibility("default"))) pid_t _Fork(void)
{
	fork_fn f = __atomic_load_n(&real_fork, __ATOMIC_RELAXED);
	if (!f) { /* a libc without _Fork: nobody calls it then */
		errno = ENOSYS;
		return -1;
	}
	pid_t pid = f();
	if (pid == 0)
		mli_tree_fork_child();
	return pid;
}
