/* say.c: where the library's own messages go (breach lines, the report to
 * stderr, warnings): the stderr the process started with, and nowhere
 * else.
 *
 * fd 2 is not always that file. A program may close it and open a file
 * that takes the number (a data file got the report appended to it), or
 * start with it closed (`2>&-`), or close it before exit: coreutils'
 * close_stdout does in an exit handler, tar, xz and mawk in main. So the
 * file fd 2 is at start-up is recorded (its device, inode and path), and a
 * message goes:
 *   1. to fd 2 while it is still that file;
 *   2. else to a copy of it taken when exit() began, if there is one:
 *      exit() runs the exiting thread's thread_local destructors before any
 *      exit handler, so one registered on the main thread takes a
 *      close-on-exec copy of fd 2 then (for a report to stderr). Not
 *      earlier: a copy held while the program runs would keep a pipe open
 *      after the program closed its end (a daemon's `$(cmd 2>&1)` would
 *      never see EOF);
 *   3. else to the file reopened by its path, for a terminal, a device
 *      (/dev/null) or a regular file (appended to), if it is the same file;
 *   4. else nowhere: a pipe or socket the program closed cannot be reached
 *      again, and writing to whatever fd 2 has become could clobber a file
 *      the user did not name.
 * A program that redirects its own stderr (dup2 onto fd 2, freopen) keeps
 * the messages on the file it was started with. All of it is system calls
 * only, safe where the messages come from: the allocation path, signal
 * handlers, exit. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

enum { UNKNOWN, KNOWN, NONE };
static int state;             /* of the start-up stderr */
static dev_t dev;
static ino_t ino;
static mode_t mode;
static char path[256];        /* its path, "" if it has none to reopen */
static pid_t owner;           /* the process that recorded (not a vfork child) */
static int copy = -1;         /* taken when exit() began */

static bool same(int fd)
{
	struct stat st;
	return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == dev &&
	       st.st_ino == ino;
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
	if (fd < 0)
		fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
	copy = fd;
}

void mli_say_start(bool copy_at_exit)
{
	struct stat st;
	owner = getpid();
	if (fstat(2, &st) != 0) {
		state = NONE;
		return;
	}
	dev = st.st_dev;
	ino = st.st_ino;
	mode = st.st_mode;
	ssize_t n = readlink("/proc/self/fd/2", path, sizeof path - 1);
	path[n > 0 && path[0] == '/' ? n : 0] = 0;
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
	if (s == NONE)
		return -1;
	if (same(2))
		return 2;
	if (copy >= 0 && same(copy))
		return copy;
	if (!path[0] || !(S_ISCHR(mode) || S_ISREG(mode)))
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
	mli_write_all(fd, p, n);
	if (opened)
		close(fd);
}
