/* say.c: where the library's own messages go (breach lines, the report to
 * stderr, warnings): the stderr the process started with, and nowhere
 * else.
 *
 * fd 2 is not always that file. A program may close it and open a file
 * that takes the number (a data file got the report appended to it), start
 * with it closed (`2>&-`), point it elsewhere for a while (dup2 of
 * /dev/null onto it), or close it before exit: coreutils' close_stdout
 * does in an exit handler, tar, xz and mawk in main. The file fd 2 is at
 * start-up is recorded (device, inode, birth time where the file system
 * keeps one, ctime for a device, whether it was open for writing, its
 * path), and a message goes to the first of:
 *   1. fd 2, while it is that file;
 *   2. fd 1, if it is that file (`2>&1`: the same open file, offset
 *      shared);
 *   3. a copy of fd 2 taken when exit() began (a report to stderr): exit()
 *      runs the exiting thread's thread_local destructors before any exit
 *      handler, so one registered on the main thread takes it then;
 *   4. the file reopened by its path and found to be the same (a regular
 *      file, appended to; a terminal; /dev/null);
 *   5. nowhere: a pipe or socket the program closed cannot be reached
 *      again, and whatever fd 2 has become may be a file the user did not
 *      name.
 * No copy is held while the program runs: a pipe's reader would never see
 * EOF after the program closed its end (a daemon's `$(cmd 2>&1)` would
 * hang), and a program that lists its descriptors (python's fd tests, a
 * daemon closing all of them) would find one it did not open. The birth
 * time tells a file from another that reuses a deleted one's inode. A
 * reopened file has an offset of its own: what the program writes later
 * through its own, unappended, descriptor may overwrite a line written so.
 * A write to a pipe whose reader is gone fails with EPIPE without raising
 * SIGPIPE: a message must not kill the process it is about. System calls
 * only, safe where messages come from: the allocation path, signal
 * handlers, exit. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

struct id {
	dev_t dev;
	ino_t ino;
	struct statx_timestamp born, changed;
	bool has_born;
	mode_t mode;
};

enum { UNKNOWN, KNOWN, NONE };
static int state;             /* of the start-up stderr */
static struct id err;
static bool writable;         /* fd 2 was open for writing */
static char path[PATH_MAX];   /* its path, "" if it has none to reopen */
static pid_t owner;           /* the process that recorded (not a vfork child) */
static int copy = -1;         /* taken when exit() began */

static bool id_of(int fd, struct id *id)
{
	struct statx x;
	if (fd < 0 || statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_BTIME,
			    &x) != 0)
		return false;
	id->dev = makedev(x.stx_dev_major, x.stx_dev_minor);
	id->ino = x.stx_ino;
	id->has_born = x.stx_mask & STATX_BTIME;
	id->born = x.stx_btime;
	id->changed = x.stx_ctime;
	id->mode = x.stx_mode;
	return true;
}

static bool same_time(struct statx_timestamp a, struct statx_timestamp b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static bool same(int fd)
{
	struct id now;
	if (!id_of(fd, &now) || now.dev != err.dev || now.ino != err.ino)
		return false;
	if (err.has_born)
		return now.has_born && same_time(now.born, err.born);
	/* A device node's ctime changes with its owner and mode only: a
	 * terminal given to another session since has another. */
	return !S_ISCHR(err.mode) || same_time(now.changed, err.changed);
}

static bool can_write(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl >= 0 && (fl & O_ACCMODE) != O_RDONLY;
}

extern int __cxa_thread_atexit_impl(void (*fn)(void *), void *obj,
				    void *dso);
extern void *__dso_handle;

static void exit_begins(void *unused)
{
	(void)unused;
	/* Not in a vfork child, which shares this memory but not the fd
	 * table with its parent. */
	if (copy >= 0 || getpid() != owner || !same(2))
		return;
	int fd = fcntl(2, F_DUPFD_CLOEXEC, 10);
	copy = fd >= 0 ? fd : fcntl(2, F_DUPFD_CLOEXEC, 3);
}

void mli_say_start(bool copy_at_exit)
{
	owner = getpid();
	if (!id_of(2, &err)) {
		state = NONE;
		return;
	}
	writable = can_write(2);
	ssize_t n = readlink("/proc/self/fd/2", path, sizeof path - 1);
	path[n > 0 && n < (ssize_t)sizeof path && path[0] == '/' ? n : 0] = 0;
	__atomic_store_n(&state, KNOWN, __ATOMIC_RELEASE);
	/* From the constructor, on the main thread (it allocates, through the
	 * engine, which is ready). */
	if (copy_at_exit)
		__cxa_thread_atexit_impl(exit_begins, NULL, &__dso_handle);
}

void mli_say_forked(void)
{
	owner = getpid();
}

/* The descriptor to write to, *opened if the caller must close it; -1:
 * nowhere. */
static int where(bool *opened)
{
	*opened = false;
	int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
	if (s == UNKNOWN)
		return 2; /* before start-up: the program has not run yet */
	if (s == NONE || !writable)
		return -1;
	if (same(2))
		return 2;
	if (same(1) && can_write(1))
		return 1;
	if (copy >= 0 && same(copy))
		return copy;
	if (!path[0] || !(S_ISCHR(err.mode) || S_ISREG(err.mode)))
		return -1;
	/* Non-blocking for the open only (a terminal's), then blocking, as
	 * fd 2 was. */
	int fd = open(path, O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -1;
	if (!same(fd)) {
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, O_WRONLY | O_APPEND);
	*opened = true;
	return fd;
}

void mli_say(const char *p, size_t n)
{
	bool opened;
	int fd = where(&opened);
	if (fd < 0)
		return;
	sigset_t pipe_sig, old, pending;
	sigemptyset(&pipe_sig);
	sigaddset(&pipe_sig, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_sig, &old);
	bool had = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
	mli_write_all(fd, p, n);
	if (!had && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
		const struct timespec now = { 0, 0 };
		sigtimedwait(&pipe_sig, NULL, &now);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (opened)
		close(fd);
}
