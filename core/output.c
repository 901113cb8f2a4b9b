/* output.c: every file the library writes (MEMLIMITS_REPORT and
 * MEMLIMITS_PROFILE): their names, the start-up checks, and how they are
 * opened and written. Also, below, the rules every lock of the library
 * keeps.
 *
 * ---- Names with several processes ----------------------------------------
 * Every process of a tree inherits the variables, and each writes its own
 * files at exit: with one name for all, the last to exit (usually the
 * parent) would leave its file and the others' would be lost. So:
 *  - `%p` in the value is replaced by the process id (as in core_pattern;
 *    `%%` is a `%`, and any other `%` sequence is an error): every process
 *    writes its own name;
 *  - without `%p`, the first process of the tree writes exactly the name
 *    given, and every other process writes NAME.PID: forked children, and
 *    programs started by a process that has the library loaded and had
 *    the same assignment (`MEMLIMITS_REPORT=r.json`) in its environment.
 *    A process tells which it is at start-up: by its pid (a forked child
 *    is not the process that started), and from its parent's
 *    /proc/PPID/environ and /proc/PPID/maps. When those cannot be read (a
 *    parent that is gone or belongs to another user) or the parent is
 *    init (an orphan), it takes NAME.PID: an unexpected name, never a
 *    clobbered file. A process that does not load the library (a
 *    `timeout` or `time` run without it) writes nothing and claims
 *    nothing.
 * jemalloc and gperftools put the pid in every name; here the common case,
 * one process, gets the very file it named, and a tree never loses one.
 * scripts/memlimit-report lists and merges a tree's files. Profiles add
 * their suffixes (.folded, .alloc.folded, then .breach, .soft or .peak)
 * after NAME or NAME.PID.
 * A relative name is made absolute at start-up, against the directory the
 * process starts in, so that a chdir does not move its files.
 *
 * ---- Opening -----------------------------------------------------------------
 * At start-up every name the process may write is checked: it must be a
 * regular file of this user with one link, a FIFO or a character device,
 * or not exist in a directory where this user can create it. A symbolic
 * link, a directory, another user's file, a missing directory or a
 * read-only one stops the program (exit 125, as a malformed size does)
 * with the variable, the file and the reason. The file is opened at write
 * time with O_NOFOLLOW (never a symlink, whoever put it there since),
 * O_NONBLOCK (a FIFO with no reader is an error, not a hang; cleared once
 * open for a regular file or a device; a FIFO keeps it, and a write waits
 * for room only while the reader takes something every 5 s: see
 * mli_file_write), O_CLOEXEC and O_NOCTTY, without O_TRUNC: a regular
 * file of the user's is truncated once opened, a FIFO or a device never
 * is. A write
 * error (ENOSPC from /dev/full, EIO) is said on stderr with the file and
 * the errno's name; SIGPIPE from a FIFO whose reader left is blocked and
 * consumed, so that it does not kill the program at its exit.
 *
 * ---- Locks -------------------------------------------------------------------
 * The library's locks within a process are mli_spin_lock:
 *   registry  core/thread.c     the thread list, retired totals, the peak
 *   profile   core/profile.c    the profile's table of call sites
 *   region    preload/region.c  the sampled blocks' free lists
 *   tokens    core/token.c      the token slots' free list
 *   watches   core/soft.c       ml_on_memory_pressure's registrations
 * (the process tree's slots take none: core/tree.c). They keep these
 * rules:
 *  1. Each lock is a leaf. A thread holding one takes no other lock: not
 *     another of these, not jemalloc's (it neither allocates nor frees),
 *     not the dynamic loader's (no dladdr, dl_iterate_phdr, dlsym: another
 *     thread inside dlopen holds that one while its constructors allocate
 *     and may wait for ours), not libc's (no stdio, no getenv). With no
 *     nesting there is no order to keep and no cycle with locks outside.
 *     The profile is written from a copy taken under the lock; its frames
 *     are named (symbols.c: the objects' files read, the loader called)
 *     and its files written after the lock is released. The peak
 *     profile's copy is made under the lock into a table allocated
 *     before it, and the old copy freed after.
 *  2. No cancellation point while a lock is held (no open, read, write,
 *     close, sleep): a thread cancelled there would die holding it. Writing
 *     a file (mli_file_open .. mli_file_close) also runs with cancellation
 *     disabled, so that a cancellation does not cut a file in half.
 *  3. fork: each lock is taken by a fork prepare handler (mli_atfork:
 *     pthread_atfork's, never unregistered at exit) and released in the
 *     parent and the child (registry: thread.c's handlers;
 *     profile and region: the handlers here), so the child never inherits
 *     one held by a thread it does not have. Before them, the handlers here
 *     close the unwinder's gate around dl_iterate_phdr, whose lock glibc
 *     does not reset in the child (unwind.c). Leaves again: any order of
 *     taking the locks is deadlock-free.
 *  4. Signals: a handler may allocate and free while its thread holds a
 *     lock. Registry: its takers mark the thread in the engine (in_engine),
 *     whose slow path then admits an allocation without locking, and the
 *     profiler does not refill a thread's grant from a callback run in it
 *     (prof.c). Profile and region: the holder is marked in a thread-local
 *     flag set before it takes the lock; a handler that finds its own
 *     thread marked does not wait: the profile queues the sample's update
 *     on a lock-free list that the next holder applies, the region queues
 *     a freed slot the same way, and a new sampled block is taken from
 *     jemalloc, untracked. A fork from such a handler skips the lock its
 *     own thread holds. The profile's own jemalloc calls run with signals
 *     blocked (jemalloc is not reentrant; ml_stats does the same).
 *  5. Asynchronous cancellation around allocation is undefined in POSIX
 *     (malloc is not async-cancel-safe) and not supported.
 * Waits that are not locks: the engine's start-up (init_state, once) and
 * the thread-exit key's creation (once) spin on another thread's progress,
 * bounded by it; ml_memprof_stop waits for callbacks in flight, which run
 * with cancellation disabled and are recounted in a fork child (prof.c).
 * The report at abort() takes the registry lock only if its thread is not
 * in the engine, and never jemalloc's (report.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "output.h"

#define NAME_MAX_LEN 4096

struct output {
	const char *var;       /* the variable's name */
	const char *value;     /* as given, in mli_eng.cfg */
	bool on;               /* a file is written */
	bool has_pid;          /* %p in the value */
	bool named;            /* without %p: this tree's first process */
	bool device;           /* a character device (/dev/null): every
				* process and every suffix writes it as named */
	char tmpl[NAME_MAX_LEN]; /* the value, absolute */
	char entry[NAME_MAX_LEN + 32]; /* VAR=tmpl, for the children */
};
static struct output outs[MLI_OUT_N];
static pid_t start_pid; /* a forked child has another pid */

/* ---- errno names ------------------------------------------------------------ */

static const struct {
	int e;
	const char *name, *text;
} errnos[] = {
	{ ENOSPC, "ENOSPC", "No space left on device" },
	{ EIO, "EIO", "Input/output error" },
	{ EDQUOT, "EDQUOT", "Disk quota exceeded" },
	{ EFBIG, "EFBIG", "File too large" },
	{ EPIPE, "EPIPE", "Broken pipe" },
	{ EACCES, "EACCES", "Permission denied" },
	{ EPERM, "EPERM", "Operation not permitted" },
	{ EROFS, "EROFS", "Read-only file system" },
	{ ENOENT, "ENOENT", "No such file or directory" },
	{ ENOTDIR, "ENOTDIR", "Not a directory" },
	{ EISDIR, "EISDIR", "Is a directory" },
	{ ELOOP, "ELOOP", "Too many levels of symbolic links" },
	{ ENAMETOOLONG, "ENAMETOOLONG", "File name too long" },
	{ ENXIO, "ENXIO", "No such device or address" },
	{ EAGAIN, "EAGAIN", "Resource temporarily unavailable" },
	{ EINTR, "EINTR", "Interrupted system call" },
	{ EMFILE, "EMFILE", "Too many open files" },
	{ ENFILE, "ENFILE", "Too many open files in system" },
	{ ENOMEM, "ENOMEM", "Cannot allocate memory" },
	{ EINVAL, "EINVAL", "Invalid argument" },
	{ EBADF, "EBADF", "Bad file descriptor" },
	{ ETXTBSY, "ETXTBSY", "Text file busy" },
	{ EEXIST, "EEXIST", "File exists" },
	{ EBUSY, "EBUSY", "Device or resource busy" },
	{ ESTALE, "ESTALE", "Stale file handle" },
	{ EOPNOTSUPP, "EOPNOTSUPP", "Operation not supported" },
};

void mli_buf_errno(struct mli_buf *b, int e)
{
	for (size_t i = 0; i < sizeof errnos / sizeof *errnos; i++)
		if (errnos[i].e == e) {
			mli_buf_str(b, errnos[i].name);
			mli_buf_str(b, " (");
			mli_buf_str(b, errnos[i].text);
			mli_buf_str(b, ")");
			return;
		}
	mli_buf_str(b, "errno ");
	mli_buf_i64(b, e);
}

/* ---- JSON ------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) ||
	    (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
		return 0; /* overlong, a surrogate, or past U+10FFFF */
	return len;
}

void mli_buf_json_str(struct mli_buf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	mli_buf_str(b, "\"");
	for (size_t i = 0; i < n;) {
		unsigned c = u[i];
		char t[8];
		if (c == '"' || c == '\\') {
			t[0] = '\\';
			t[1] = (char)c;
			t[2] = '\0';
			mli_buf_str(b, t);
			i++;
		} else if (c == '\n' || c == '\t' || c == '\r') {
			t[0] = '\\';
			t[1] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
			t[2] = '\0';
			mli_buf_str(b, t);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			static const char hex[] = "0123456789abcdef";
			memcpy(t, "\\u00", 4);
			t[4] = hex[c >> 4];
			t[5] = hex[c & 15];
			t[6] = '\0';
			mli_buf_str(b, t);
			i++;
		} else {
			size_t len = utf8_len(u + i, n - i);
			if (!len) {
				mli_buf_str(b, "\\ufffd");
				i++;
				continue;
			}
			memcpy(t, u + i, len);
			t[len] = '\0';
			mli_buf_str(b, t);
			i += len;
		}
	}
	mli_buf_str(b, "\"");
}

/* The pid in names and reports: as /proc sees it. In a pid namespace of
 * its own (`unshare -pf`, a sandbox) a process's getpid() is small and the
 * same in every such namespace: two of a tree, both PID 1, wrote one
 * r.1.json (a held-out check); /proc mounted outside gives the outer pid,
 * and the report says the same pid as its file's name. */
static long proc_pid(void)
{
	char t[24];
	ssize_t n = readlink("/proc/self", t, sizeof t - 1);
	char *end = NULL;
	long v = -1;
	if (n > 0) {
		t[n] = '\0';
		v = strtol(t, &end, 10);
	}
	return n > 0 && end && *end == '\0' && v > 0 ? v : (long)getpid();
}

static long status_field(pid_t pid, const char *field, bool second);

/* The parent's pid in the same namespace as proc_pid's. */
static long proc_ppid(void)
{
	if (proc_pid() == (long)getpid())
		return getppid();
	long pp = status_field(0, "\nPPid:", false);
	return pp >= 0 ? pp : getppid();
}

static void put_pid(struct mli_buf *b)
{
	mli_buf_i64(b, proc_pid());
}

const char *mli_proc_path(const char *name, char *buf, size_t n)
{
	static int thread_self = -1; /* known to exist: 1, not: 0 */
	struct stat st;
	if (thread_self < 0)
		thread_self = stat("/proc/thread-self", &st) == 0;
	struct mli_buf b = { buf, 0, n };
	mli_buf_str(&b, thread_self ? "/proc/thread-self/" : "/proc/self/");
	mli_buf_str(&b, name);
	buf[b.len < n ? b.len : n - 1] = '\0';
	return buf;
}

int mli_proc_open(const char *name)
{
	char p[64];
	return open(mli_proc_path(name, p, sizeof p), O_RDONLY | O_CLOEXEC);
}

void mli_buf_process_json(struct mli_buf *b)
{
	mli_buf_str(b, "\"pid\": ");
	mli_buf_i64(b, proc_pid());
	mli_buf_str(b, ", \"ppid\": ");
	mli_buf_i64(b, proc_ppid());
	mli_buf_str(b, ", \"command\": [");
	/* The arguments, up to the first 2 KiB of them. */
	char cmd[2048];
	size_t n = 0;
	bool more = false;
	int fd = mli_proc_open("cmdline");
	if (fd >= 0) {
		for (;;) {
			ssize_t got = read(fd, cmd + n, sizeof cmd - n);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				break;
			n += (size_t)got;
			if (n == sizeof cmd) {
				char c;
				more = read(fd, &c, 1) == 1;
				break;
			}
		}
		close(fd);
	}
	if (more) { /* not within a character: a U+FFFD for its first bytes */
		size_t k = n, cont = 0;
		while (k > 0 && cont < 3 && ((unsigned char)cmd[k - 1] & 0xC0) == 0x80) {
			k--;
			cont++;
		}
		unsigned char lead = k > 0 ? (unsigned char)cmd[k - 1] : 0;
		size_t need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
		if (need > cont)
			n = k - 1;
	}
	size_t i = 0;
	bool first = true;
	while (i < n) {
		size_t len = strnlen(cmd + i, n - i);
		if (!first)
			mli_buf_str(b, ", ");
		first = false;
		mli_buf_json_str(b, cmd + i, len);
		i += len + 1;
	}
	mli_buf_str(b, "]");
	if (more)
		mli_buf_str(b, ", \"command_truncated\": true");
}

/* ---- names -------------------------------------------------------------------- */

/* The name of `o`'s file for this process (or, if descendant, for a
 * process it starts), plus suffix. False if too long. */
static bool expand_for(const struct output *o, const char *suffix, char *out,
		       size_t cap, bool descendant)
{
	struct mli_buf b = { out, 0, cap };
	if (o->device) {
		mli_buf_str(&b, o->tmpl);
		return b.len + 1 < cap;
	}
	char one[2] = { 0, 0 };
	for (const char *p = o->tmpl; *p; p++) {
		if (*p == '%' && p[1] == 'p') {
			put_pid(&b);
			p++;
		} else if (*p == '%' && p[1] == '%') {
			mli_buf_str(&b, "%");
			p++;
		} else {
			one[0] = *p;
			mli_buf_str(&b, one);
		}
	}
	if (!o->has_pid && (descendant || !(o->named && getpid() == start_pid))) {
		mli_buf_str(&b, ".");
		put_pid(&b);
	}
	mli_buf_str(&b, suffix);
	return b.len + 1 < cap;
}

static bool expand(const struct output *o, const char *suffix, char *out,
		   size_t cap)
{
	return expand_for(o, suffix, out, cap, false);
}

/* Reads /proc/PID/FILE in chunks, calling eat on each byte; false if it
 * cannot be read to its end (or eat returned true: found). */
struct scan {
	bool found;
	size_t pos;    /* in the pattern */
	bool alive;    /* the current entry still matches */
	const char *a, *b; /* environ: "a=b\0"; maps: a is a substring */
	size_t alen;
	const char *abs; /* environ: b made absolute (or b) */
	char *val;       /* environ: the current entry's value (NAME_MAX_LEN) */
};

/* Is v, a value of the variable in another process's environment, the
 * same assignment as this process's? The same text, or, since a process
 * hands its children its relative name made absolute (name_for_children),
 * a relative v that this process's absolute name ends with. */
static bool same_assignment(const struct scan *s, const char *v)
{
	if (!strcmp(v, s->b) || !strcmp(v, s->abs))
		return true;
	size_t vl = strlen(v), al = strlen(s->abs);
	return v[0] != '/' && vl && al > vl && s->abs[al - vl - 1] == '/' &&
	       !strcmp(s->abs + al - vl, v);
}

static void eat_environ(struct scan *s, char c)
{
	/* Each NUL-terminated entry: "a=" then its value. */
	if (s->alive) {
		size_t p = s->pos;
		if (p < s->alen + 1) {
			char want = p < s->alen ? s->a[p] : '=';
			if (c == want)
				s->pos++;
			else
				s->alive = false;
		} else if (c == '\0') {
			s->val[p - s->alen - 1] = '\0';
			if (same_assignment(s, s->val))
				s->found = true;
		} else if (p - s->alen - 1 < NAME_MAX_LEN - 1) {
			s->val[p - s->alen - 1] = c;
			s->pos++;
		} else
			s->alive = false; /* longer than any name of ours */
	}
	if (c == '\0') {
		s->pos = 0;
		s->alive = true;
	}
}

static void eat_maps(struct scan *s, char c)
{
	/* The substring a anywhere; a[0] occurs only at its start. */
	if (c == s->a[s->pos]) {
		if (++s->pos == s->alen)
			s->found = true;
	} else
		s->pos = c == s->a[0];
}

static bool scan_proc(pid_t pid, const char *file, struct scan *s,
		      void (*eat)(struct scan *, char))
{
	char path[64];
	struct mli_buf pb = { path, 0, sizeof path };
	mli_buf_str(&pb, "/proc/");
	mli_buf_i64(&pb, pid);
	mli_buf_str(&pb, "/");
	mli_buf_str(&pb, file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool ok = true;
	char buf[1024];
	while (!s->found) {
		ssize_t got = read(fd, buf, sizeof buf);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			ok = false;
		if (got <= 0)
			break;
		for (ssize_t i = 0; i < got && !s->found; i++)
			eat(s, buf[i]);
	}
	close(fd);
	return ok;
}

/* A number field of /proc/PID/status (PID 0: self), as "\nPPid:" or
 * "\nUid:" (its first number, or with `second` the one after: the
 * effective uid), or -1. /proc's status is readable by all, and gives pids
 * in the pid namespace of the /proc mounted. */
static long status_field(pid_t pid, const char *field, bool second)
{
	char path[64], buf[2048];
	struct mli_buf pb = { path, 0, sizeof path };
	mli_buf_str(&pb, "/proc/");
	if (pid)
		mli_buf_i64(&pb, pid);
	else
		mli_buf_str(&pb, "self");
	mli_buf_str(&pb, "/status");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *u = strstr(buf, field), *end;
	if (!u)
		return -1;
	u += strlen(field);
	long v = strtol(u, &end, 10);
	if (second)
		v = strtol(u = end, &end, 10);
	return end > u ? v : -1;
}

/* Has an earlier process of the tree claimed the name? 1 if so, 0 if not,
 * -1 when that cannot be known (an ancestor is gone, belongs to another
 * user or user namespace, or this process was reparented to init, whose
 * real parent may have claimed it). The parent claimed it if it has the
 * library loaded and had the same `var=value` in its environment at its
 * start. A parent with the assignment but not the library (a static
 * launcher, `env -u LD_PRELOAD`, `timeout` run without it) claims
 * nothing and passes its parent's claim on: its parent is asked in turn
 * (a program started by a static launcher under bash took the exact
 * name, and bash, the tree's first, wrote over it at its exit: a
 * held-out check). A parent outside this process's pid namespace (getppid
 * is 0: `unshare -pf`) is found through /proc when /proc is the outer
 * namespace's; with the namespace's own /proc (a container's entrypoint)
 * there is none: the first. A parent that is PID 1 is asked too: it may
 * be the tree's first (a container's entrypoint, whose children were
 * taken for orphans); without the assignment it is init, and this
 * process an orphan. */
static int parent_claim(const char *var, const char *value, const char *abs)
{
	pid_t p = getppid();
	if (p == 0) { /* as /proc sees it */
		p = (pid_t)status_field(0, "\nPPid:", false);
		if (p <= 0)
			return 0; /* none there either: a container's first */
	}
	for (int depth = 0; depth < 64; depth++) {
		if (p <= 0)
			return -1;
		static char val[NAME_MAX_LEN]; /* start-up, or a write's refusal */
		struct scan e = { .a = var, .alen = strlen(var), .b = value,
				  .abs = abs, .val = val,
				  .alive = true };
		if (!scan_proc(p, "environ", &e, eat_environ))
			return -1;
		if (!e.found)
			return p == 1 ? -1 : 0;
		struct scan m = { .a = "/libmemlimits", .alen = strlen("/libmemlimits") };
		if (!scan_proc(p, "maps", &m, eat_maps))
			return -1;
		if (m.found)
			return 1;
		if (p == 1)
			return -1;
		p = (pid_t)status_field(p, "\nPPid:", false);
	}
	return -1;
}

/* The parent's effective user id, or -1. */
static long parent_euid(void)
{
	pid_t p = getppid();
	return p > 0 ? status_field(p, "\nUid:", true) : -1;
}

/* Is this process in a pid namespace other than the system's (a
 * container, `unshare -p`)? There PID 1 is the program the container
 * started, which may be the tree's first; in the system's it is init. The
 * initial namespace's inode is fixed (PROC_PID_INIT_INO). */
static bool in_a_child_pid_ns(void)
{
	char t[64];
	ssize_t n = readlink("/proc/self/ns/pid", t, sizeof t - 1);
	if (n <= 0)
		return false;
	t[n] = '\0';
	return strcmp(t, "pid:[4026531836]") != 0;
}

/* Did this process inherit the name from a process that could write it:
 * a parent that claims it, or one that runs as another user (a server
 * that dropped its privileges to run this one), whose environment cannot
 * be read (PID 1 too, in a container: its entrypoint)? Not an orphan (a
 * service that init started) nor a parent of the same user in another
 * user namespace (unshare -r). */
static bool inherited(const char *var, const char *value, const char *abs)
{
	/* In a tree (the wrapper's default), a process that found the segment
	 * made is not the first: whoever its parent is (PID 1 in a container
	 * whose entrypoint is the tree's first, which another user cannot
	 * read: such children died with 125; a held-out check). */
	if (mli_tree_joined())
		return true;
	int c = parent_claim(var, value, abs);
	if (c >= 0)
		return c == 1;
	pid_t pp = getppid();
	if (pp == 0 || (pp == 1 && !in_a_child_pid_ns()))
		return false;
	long pe = parent_euid();
	return pe >= 0 && pe != (long)geteuid();
}

/* ---- start-up checks ---------------------------------------------------------- */

static void output_message(const struct output *o, const char *name,
			   const char *what, int e, bool warn)
{
	char msg[NAME_MAX_LEN + 1300];
	struct mli_buf m = { msg, 0, sizeof msg };
	mli_buf_str(&m, warn ? "memlimits: warning: " : "memlimits: ");
	mli_buf_str(&m, o->var);
	mli_buf_str(&m, "='");
	mli_buf_str(&m, o->value);
	mli_buf_str(&m, "': ");
	if (name) {
		mli_buf_str(&m, "cannot write ");
		mli_buf_str(&m, name);
		mli_buf_str(&m, ": ");
	}
	mli_buf_str(&m, what);
	if (e) {
		mli_buf_str(&m, what[0] ? ": " : "");
		mli_buf_errno(&m, e);
	}
	if (!warn)
		mli_die(msg);
	mli_buf_str(&m, "; this process runs without it\n");
	mli_say(msg, m.len);
}

static void die_output(const struct output *o, const char *name,
		       const char *what, int e)
{
	output_message(o, name, what, e, false);
}

/* A file name this process cannot write: a configuration error (exit 125)
 * in the process the user started, but not in one of its descendants,
 * which inherited a name its ancestor could write: a server that drops
 * its privileges (CPython's subprocess with user=, tested by its own
 * suite) died with 125 at the exec of every child that runs as another
 * user. A descendant says so once and runs without that output. False. */
static bool refuse_output(struct output *o, const char *name, const char *what,
			  int e)
{
	output_message(o, name, what, e,
		       inherited(o->var, o->value, o->tmpl[0] ? o->tmpl : o->value));
	o->on = false;
	return false;
}

/* Kernel file systems (/proc, /sys, cgroup...) take no output. Root
 * passes every permission check, and /proc/x, /sys/x and /proc/self/status
 * (a regular file of root's) were accepted at start-up, the report lost at
 * exit (a held-out check). The kernel file system `path` is on (a file, or
 * the directory a file would be made in), or NULL. */
static const char *kernel_fs(const char *path)
{
	static const struct {
		long magic;
		const char *name;
	} fs[] = {
		{ 0x9fa0, "proc" },          { 0x62656572, "sysfs" },
		{ 0x27e0eb, "cgroup" },      { 0x63677270, "cgroup2" },
		{ 0x64626720, "debugfs" },   { 0x74726163, "tracefs" },
		{ 0x73636673, "securityfs" }, { (long)0xcafe4a11, "bpf" },
	};
	struct statfs sf;
	if (statfs(path, &sf) != 0)
		return NULL;
	for (size_t i = 0; i < sizeof fs / sizeof *fs; i++)
		if ((long)sf.f_type == fs[i].magic)
			return fs[i].name;
	return NULL;
}

static bool refuse_kernel_fs(struct output *o, const char *name, const char *fs)
{
	char what[200];
	struct mli_buf w = { what, 0, sizeof what };
	mli_buf_str(&w, "it is on a kernel file system (");
	mli_buf_str(&w, fs);
	mli_buf_str(&w, "), where memlimits writes nothing");
	return refuse_output(o, name, what, 0);
}

/* Can this process write `name` as mli_file_open will? refuse_output if
 * not. */
static bool check_name(struct output *o, const char *name)
{
	struct stat st;
	const char *kfs;
	if (lstat(name, &st) == 0) {
		char what[200];
		struct mli_buf w = { what, 0, sizeof what };
		if (S_ISLNK(st.st_mode))
			return refuse_output(o, name, "it is a symbolic link, which memlimits does not"
					    " follow (name the file itself)", 0);
		if (S_ISDIR(st.st_mode))
			return refuse_output(o, name, "it is a directory (a file name is expected)", 0);
		if (S_ISREG(st.st_mode)) {
			if (st.st_uid != geteuid()) {
				mli_buf_str(&w, "it belongs to user ");
				mli_buf_u64(&w, st.st_uid);
				mli_buf_str(&w, ", and memlimits replaces only files of its own"
						" user (");
				mli_buf_u64(&w, geteuid());
				mli_buf_str(&w, ")");
				return refuse_output(o, name, what, 0);
			}
			if (st.st_nlink > 1) {
				mli_buf_str(&w, "it has ");
				mli_buf_u64(&w, st.st_nlink);
				mli_buf_str(&w, " hard links, and memlimits does not truncate a"
						" file that has other names");
				return refuse_output(o, name, what, 0);
			}
			if ((kfs = kernel_fs(name)) != NULL)
				return refuse_kernel_fs(o, name, kfs);
		} else if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode))
			return refuse_output(o, name, "it is neither a regular file, a FIFO nor a"
					    " character device", 0);
		if (faccessat(AT_FDCWD, name, W_OK, AT_EACCESS) != 0)
			return refuse_output(o, name, "it is not writable", errno);
		return true;
	}
	int e = errno;
	if (e != ENOENT)
		return refuse_output(o, name, "", e);
	/* It will be created: in a directory that exists and that this
	 * process may write (a read-only file system says EROFS). */
	char dir[NAME_MAX_LEN];
	size_t len = strlen(name);
	while (len > 1 && name[len - 1] != '/')
		len--;
	if (len > 1)
		len--; /* the slash, unless the directory is / */
	memcpy(dir, name, len);
	dir[len] = '\0';
	char what[NAME_MAX_LEN + 100];
	struct mli_buf w = { what, 0, sizeof what };
	mli_buf_str(&w, "its directory ");
	mli_buf_str(&w, dir);
	if (stat(dir, &st) != 0) {
		e = errno;
		mli_buf_str(&w, e == ENOENT ? " does not exist" : " cannot be reached");
		return refuse_output(o, name, what, e);
	}
	if (!S_ISDIR(st.st_mode)) {
		mli_buf_str(&w, " is not a directory");
		return refuse_output(o, name, what, 0);
	}
	if ((kfs = kernel_fs(dir)) != NULL)
		return refuse_kernel_fs(o, name, kfs);
	if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0) {
		e = errno;
		mli_buf_str(&w, " does not let this process create a file");
		return refuse_output(o, name, what, e);
	}
	return true;
}

/* The longest name a process this one starts may write for `suffix`: its
 * pid (at most 7 digits: pid_max is at most 4194304) in %p, or after the
 * name and a dot. Its last part must be a valid file name: a name a few
 * bytes under NAME_MAX passed the first process's check, and every child
 * was refused before main in the middle of the run (a held-out check). */
static size_t descendant_last_part(const struct output *o, const char *suffix)
{
	size_t len = 0;
	for (const char *p = o->tmpl; *p; p++) {
		if (*p == '/') {
			len = 0;
			continue;
		}
		if (*p == '%' && (p[1] == 'p' || p[1] == '%')) {
			len += p[1] == 'p' ? 7 : 1;
			p++;
		} else
			len++;
	}
	if (!o->has_pid)
		len += 1 + 7;
	return len + strlen(suffix);
}

static const char *const report_suffixes[] = { "", NULL };
static const char *const profile_suffixes[] = {
	"", ".folded", ".alloc.folded", ".breach", ".folded.breach",
	".alloc.folded.breach", ".soft", ".folded.soft", ".alloc.folded.soft",
	".peak", ".folded.peak", NULL,
};

/* A relative name is the directory's the process started in: its
 * children get it absolute in their environment, so that one started
 * after a chdir (`cd ../B && exec prog`, an execv after chdir) does not
 * write, and clobber, a file of that name where it runs (a held-out check
 * overwrote an unnamed B/r.json). The environment's entries are pointed at
 * the absolute assignment; exec.c's copy of them, for an exec with an
 * environment that lacks them, is taken after this (its constructor runs
 * after the engine's). parent_claim takes such a child for the same
 * assignment. */
static void name_for_children(struct output *o)
{
	extern char **environ;
	struct mli_buf b = { o->entry, 0, sizeof o->entry };
	mli_buf_str(&b, o->var);
	mli_buf_str(&b, "=");
	mli_buf_str(&b, o->tmpl);
	if (b.len + 1 >= b.cap)
		return;
	size_t vl = strlen(o->var);
	for (char **e = environ; e && *e; e++)
		if (!strncmp(*e, o->var, vl) && (*e)[vl] == '=')
			*e = o->entry;
}

static void setup(struct output *o, const char *var, const char *value,
		  const char *const *suffixes)
{
	o->var = var;
	o->value = value;
	if (!value[0] || (suffixes == report_suffixes && !strcmp(value, "stderr")))
		return;
	/* The template: %p and %% only, made absolute. */
	for (const char *p = value; *p; p++) {
		if (*p != '%')
			continue;
		if (p[1] == 'p')
			o->has_pid = true;
		else if (p[1] != '%') {
			char what[160];
			struct mli_buf w = { what, 0, sizeof what };
			mli_buf_str(&w, "'%");
			char one[2] = { p[1], 0 };
			mli_buf_str(&w, one);
			mli_buf_str(&w, "' is not a known sequence: %p is the process id,"
					" %% a percent sign");
			die_output(o, NULL, what, 0);
		}
		p++;
	}
	struct mli_buf t = { o->tmpl, 0, sizeof o->tmpl };
	if (value[0] != '/') {
		if (!getcwd(o->tmpl, sizeof o->tmpl))
			die_output(o, NULL, "a relative name, and the current directory is"
					    " unknown", errno);
		t.len = strlen(o->tmpl);
		if (t.len > 1)
			mli_buf_str(&t, "/");
	}
	mli_buf_str(&t, value);
	if (t.len + 1 >= t.cap)
		die_output(o, NULL, "the name is too long", 0);
	if (value[strlen(value) - 1] == '/')
		die_output(o, NULL, "it names a directory (a file name is expected)", 0);
	/* A device is not a name to derive others from: with /dev/null every
	 * process after the first made a regular file /dev/null.PID (and a
	 * profile /dev/null.folded...), or warned where it could not. */
	struct stat dev;
	o->device = !o->has_pid && stat(o->tmpl, &dev) == 0 && S_ISCHR(dev.st_mode);
	o->named = !o->has_pid && !o->device && parent_claim(var, value, o->tmpl) == 0;
	if (value[0] != '/')
		name_for_children(o);
	o->on = true;
	char name[NAME_MAX_LEN];
	for (const char *const *s = suffixes; *s; s++) {
		if (!expand(o, *s, name, sizeof name))
			die_output(o, NULL, "the name is too long", 0);
		if (!check_name(o, name))
			return;
		size_t last = descendant_last_part(o, *s);
		if (last > NAME_MAX) {
			char what[200];
			struct mli_buf w = { what, 0, sizeof what };
			mli_buf_str(&w, "the name is too long for the processes this one"
					" starts, which add their pid: up to ");
			mli_buf_u64(&w, last);
			mli_buf_str(&w, " bytes after the last '/', at most ");
			mli_buf_u64(&w, NAME_MAX);
			die_output(o, NULL, what, 0);
		}
	}
}

/* ---- fork --------------------------------------------------------------------- */

/* The profiler's side of fork, in this order: the unwinder's gate first
 * (a call in flight may wait for the loader's lock, whose holder may be
 * allocating a sampled block, which needs the region's lock), then the
 * leaf locks. The registry's lock has its own handlers (thread.c),
 * registered earlier, so run after these. */
static void fork_prepare(void)
{
	mli_unwind_fork_prepare();
	mli_profile_fork_prepare();
	mli_be_sample_fork(0);
}

static void fork_parent(void)
{
	mli_be_sample_fork(1);
	mli_profile_fork_parent();
	mli_unwind_fork_parent();
}

static void fork_child(void)
{
	mli_be_sample_fork(2);
	mli_profile_fork_child();
	mli_unwind_fork_child();
	mli_report_fork_child();
	mli_prof_fork_child();
}

/* The report must not be one of the profile's files: the same name for
 * both had the report overwrite the exit profile, with no word (a
 * held-out check). */
static bool same_place(char *a, char *b)
{
	char *sa = strrchr(a, '/'), *sb = strrchr(b, '/');
	if (!sa || !sb || strcmp(sa, sb))
		return false;
	*sa = *sb = '\0'; /* the directories: the same one, however named */
	struct stat da, db;
	bool same = stat(a[0] ? a : "/", &da) == 0 && stat(b[0] ? b : "/", &db) == 0
			    ? da.st_dev == db.st_dev && da.st_ino == db.st_ino
			    : !strcmp(a, b);
	*sa = *sb = '/';
	return same;
}

/* The report must not be one of the profile's files, in this process or in
 * those it starts (which add their pid where the name has no %p): the same
 * name for both had the report overwrite the exit profile, with no word (a
 * held-out check), and so did ./pp for pp, r.%p for r in a child. */
static void check_apart(void)
{
	const struct output *r = &outs[MLI_OUT_REPORT], *p = &outs[MLI_OUT_PROFILE];
	char rn[NAME_MAX_LEN], pn[NAME_MAX_LEN];
	if (!r->on || !p->on || r->device || p->device)
		return;
	for (int descendant = 0; descendant < 2; descendant++) {
		if (!expand_for(r, "", rn, sizeof rn, descendant))
			return;
		for (const char *const *s = profile_suffixes; *s; s++)
			if (expand_for(p, *s, pn, sizeof pn, descendant) && same_place(rn, pn))
				die_output(r, NULL, "it is also a file of MEMLIMITS_PROFILE's (in"
						    " this process or one it starts): the report"
						    " would overwrite it", 0);
	}
}

void mli_output_init(void)
{
	start_pid = getpid();
	const struct mli_config *c = &mli_eng.cfg;
	setup(&outs[MLI_OUT_REPORT], "MEMLIMITS_REPORT", c->report, report_suffixes);
	setup(&outs[MLI_OUT_PROFILE], "MEMLIMITS_PROFILE", c->profile,
	      profile_suffixes);
	check_apart();
	mli_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- writing ------------------------------------------------------------------ */

static void say(const struct mli_file *f, const char *what, int e)
{
	char msg[NAME_MAX_LEN + 400];
	struct mli_buf m = { msg, 0, sizeof msg };
	mli_buf_str(&m, "memlimits: ");
	mli_buf_str(&m, outs[f->which].var ? outs[f->which].var : "output");
	mli_buf_str(&m, ": ");
	mli_buf_str(&m, f->name);
	mli_buf_str(&m, ": ");
	mli_buf_str(&m, what);
	if (e) {
		mli_buf_str(&m, ": ");
		mli_buf_errno(&m, e);
	}
	mli_buf_str(&m, "\n");
	mli_say(m.p, m.len);
}

/* What ENXIO meant: a FIFO with no reader, or a device that is not there
 * (/dev/tty with no controlling terminal), which got the FIFO's words. */
static bool is_fifo(const char *name)
{
	struct stat st;
	return stat(name, &st) == 0 && S_ISFIFO(st.st_mode);
}
bool mli_file_open(struct mli_file *f, enum mli_output which, const char *suffix)
{
	const struct output *o = &outs[which];
	f->which = which;
	f->fd = -1;
	f->err = 0;
	f->pipe_like = false;
	f->name[0] = '\0';
	if (!o->on)
		return false;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &f->cancel_state);
	/* From the open, which empties a regular file, to the close, no signal
	 * ends the process: it is delivered after the close. A multiprocessing
	 * pool's workers get SIGTERM as they exit, and one killed in between
	 * left an empty report, its breach lost. A FIFO is different: its
	 * reader may be slow, so only SIGPIPE waits (below). */
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &f->old_mask);
	if (!expand(o, suffix, f->name, sizeof f->name)) {
		say(f, "not written: the name is too long", 0);
		goto fail;
	}
	int fd = open(f->name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK |
				       O_CLOEXEC | O_NOCTTY, 0644);
	if (fd < 0) {
		int e = errno;
		say(f, e == ELOOP ? "not written: it is a symbolic link, which memlimits"
				    " does not follow"
		       : e == ENXIO && is_fifo(f->name)
			       ? "not written: a FIFO that no process has open"
				 " for reading (memlimits does not wait for one)"
		       : e == ENXIO ? "not written: the device is not there (/dev/tty"
				      " is not, in a process with no controlling terminal)"
				    : "not written: cannot open it",
		    e);
		goto fail;
	}
	/* What was opened, checked again: the start-up check is old news. */
	struct stat st;
	const char *refuse = NULL;
	int re = 0;
	if (fstat(fd, &st) != 0) {
		refuse = "not written: cannot stat it";
		re = errno;
	} else if (S_ISREG(st.st_mode)) {
		if (st.st_uid != geteuid())
			refuse = "not written: it belongs to another user";
		else if (st.st_nlink > 1)
			refuse = "not written: it has other hard links";
		else if (ftruncate(fd, 0) != 0) {
			refuse = "not written: cannot truncate it";
			re = errno;
		}
	} else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))
		f->pipe_like = true;
	else
		refuse = "not written: neither a regular file, a FIFO nor a character device";
	/* A FIFO stays non-blocking (mli_file_write); a device blocks, as a
	 * terminal does for every program that writes to it: a terminal's
	 * reader's progress cannot be told (FIONREAD is its input, and a pty
	 * is writable again only once its reader's side has room), and one
	 * read steadily was cut after 5 s (a held-out check). */
	if (!refuse && !S_ISFIFO(st.st_mode)) {
		int fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
			refuse = "not written: cannot make it blocking";
			re = errno;
		}
	}
	if (refuse) {
		say(f, refuse, re);
		close(fd);
		goto fail;
	}
	if (f->pipe_like) {
		/* Its reader may leave: EPIPE, not a SIGPIPE that kills the
		 * program (see mli_file_close). */
		sigset_t pipe = f->old_mask, pending;
		sigaddset(&pipe, SIGPIPE);
		pthread_sigmask(SIG_SETMASK, &pipe, NULL);
		f->sigpipe_pending_before =
			sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
	}
	f->fd = fd;
	return true;
fail:
	pthread_sigmask(SIG_SETMASK, &f->old_mask, NULL);
	pthread_setcancelstate(f->cancel_state, NULL);
	return false;
}

/* A FIFO stays non-blocking: its reader may stop reading
 * (a profile into a FIFO whose reader never read hung the program at its
 * exit for ever: a held-out check). The write waits for room while the
 * reader takes something at least every PIPE_WAIT_MS; then it gives up,
 * and says so. What the reader took is told by the bytes waiting in the
 * pipe (FIONREAD), not by poll: a pipe is writable again only once a
 * whole page of it is free, and a reader of 25 bytes a second lost the
 * report (a held-out check). */
#define PIPE_WAIT_MS 5000 /* "5 s" in mli_file_close's words */

/* Waits for room in f's pipe: false once its reader has taken nothing
 * for PIPE_WAIT_MS. */
static bool wait_for_room(struct mli_file *f)
{
	int queued = -1, was;
	for (int idle = 0; idle < PIPE_WAIT_MS; idle += 100) {
		struct pollfd pf = { .fd = f->fd, .events = POLLOUT };
		int r = poll(&pf, 1, 100);
		if (r > 0 || (r < 0 && errno == EINTR))
			return true;
		was = queued;
		if (ioctl(f->fd, FIONREAD, &queued) == 0 && was >= 0 && queued < was)
			idle = -100; /* the reader took something */
	}
	f->err = ETIMEDOUT;
	return false;
}

void mli_file_write(struct mli_file *f, const char *p, size_t n)
{
	if (f->fd < 0 || f->err)
		return;
	while (n) {
		ssize_t w = write(f->fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN && f->pipe_like) {
			if (wait_for_room(f))
				continue;
			return;
		}
		if (w <= 0) {
			f->err = w < 0 ? errno : EIO;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

bool mli_file_close(struct mli_file *f)
{
	if (f->fd < 0)
		return false;
	int saved = errno;
	if (close(f->fd) != 0 && !f->err && errno != EINTR)
		f->err = errno; /* NFS reports a failed write here */
	f->fd = -1;
	if (f->pipe_like) {
		if (f->err == EPIPE && !f->sigpipe_pending_before) {
			sigset_t pipe;
			sigemptyset(&pipe);
			sigaddset(&pipe, SIGPIPE);
			struct timespec zero = { 0, 0 };
			while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR)
				;
		}
	}
	pthread_sigmask(SIG_SETMASK, &f->old_mask, NULL);
	if (f->err == ETIMEDOUT)
		say(f, "its reader took nothing for 5 s: what was written is"
		       " incomplete (memlimits does not wait longer)", 0);
	else if (f->err)
		say(f, "writing it failed; what was written is incomplete", f->err);
	pthread_setcancelstate(f->cancel_state, NULL);
	errno = saved;
	return !f->err;
}
