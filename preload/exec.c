/* exec.c: a limit is not lifted by clearing the environment.
 *
 * A limit reaches a program's children through the environment: LD_PRELOAD
 * and the MEMLIMITS_* variables. A child started with a cleared or rebuilt
 * environment (`env -i CMD`, python's subprocess with env={}, a sandbox, a
 * build tool that whitelists variables) would run with no limit at all, and
 * a process tree's budget (MEMLIMITS_TREE) would not see it. So in a process
 * started under a limit, every exec and posix_spawn puts back what the new
 * environment lacks of what this process started with:
 *   - each MEMLIMITS_* variable it does not set (one it sets keeps its
 *     value: a parent may give a child a tighter limit);
 *   - LD_PRELOAD: the whole start-up value if the variable is missing, or
 *     this library ahead of the new value if that lacks it.
 * A process with no limit set (only a report, a profile, or nothing: a test
 * harness under the preload that runs children without it) passes every
 * environment through as it is. Bear's libexec does the same for its
 * compiler wrappers, for the same reason.
 *
 * system() and popen() run the shell with environ through glibc's internal
 * posix_spawn, which no interposition reaches: when environ lacks what a
 * child needs, system() is made here (as glibc makes it, with the new
 * environment) and popen() gets the new environment in environ for the
 * moment of its spawn. Not covered: a raw syscall(SYS_execve). The README
 * says so.
 *
 * An exec may come from a vfork child, which shares the parent's memory
 * and must not allocate or take locks: the new environment is built on the
 * stack, from what the constructor copied into static storage, and glibc's
 * functions were looked up then. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <string.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/internal.h"
#include "sys.h"
#include "tidlock.h"

#define EXPORT __attribute__((visibility("default")))

extern char **environ;

/* NAME=value strings this process started with, in `kept_text`. */
#define KEPT_MAX 32
static char kept_text[16 << 10];
static const char *kept[KEPT_MAX];
static int nkept;
static char self[PATH_MAX];    /* this library's absolute path */
static size_t self_len;
static struct stat self_is;    /* its file */

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);
typedef int (*execveat_fn)(int, const char *, char *const[], char *const[], int);
typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			const posix_spawnattr_t *, char *const[], char *const[]);
typedef int (*system_fn)(const char *);
typedef FILE *(*popen_fn)(const char *, const char *);
static execve_fn real_execve, real_execvpe;
static system_fn real_system;
static popen_fn real_popen;
static fexecve_fn real_fexecve;
static execveat_fn real_execveat;
static spawn_fn real_spawn, real_spawnp;

static size_t name_len(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq ? (size_t)(eq - kv) + 1 : strlen(kv);
}

/* Is the LD_PRELOAD entry v[0..n) a memlimits library: this file (by its
 * inode), or any libmemlimits*.so* (the profiling build a child asks for,
 * another copy)? Two of them in one process would both load. `loadable`:
 * only a path ld.so will find from here (with a '/', resolved from the
 * current directory, as an exec keeps it): a bare name, or a relative
 * path that does not exist here, may not load, and the child would run
 * without the library; such an entry gets this library ahead of it. */
static bool is_memlimits(const char *v, size_t n, bool loadable)
{
	const char *base = v + n;
	while (base > v && base[-1] != '/')
		base--;
	size_t bn = (size_t)(v + n - base);
	bool named = bn > 12 && !memcmp(base, "libmemlimits", 12) &&
		     memmem(base, bn, ".so", 3);
	if (named && !loadable)
		return true;
	char path[PATH_MAX];
	struct stat st;
	if (!n || n >= sizeof path || (loadable && base == v))
		return false;
	memcpy(path, v, n);
	path[n] = 0;
	return stat(path, &st) == 0 &&
	       (named || (st.st_ino == self_is.st_ino && st.st_dev == self_is.st_dev));
}

/* Does the LD_PRELOAD list `v` (':' or ' ' separated, as ld.so reads it)
 * name memlimits (is_memlimits)? */
static bool lists_memlimits(const char *v, bool loadable)
{
	while (*v) {
		size_t n = strcspn(v, ": ");
		if (n && is_memlimits(v, n, loadable))
			return true;
		v += n;
		v += *v != 0;
	}
	return false;
}

static size_t keep(char *at, size_t room, const char *kv)
{
	size_t n = strlen(kv) + 1;
	if (nkept == KEPT_MAX || n > room)
		return 0;
	memcpy(at, kv, n);
	kept[nkept++] = at;
	return n;
}

/* The start-up LD_PRELOAD with this library's entry made absolute: a child
 * that starts in another directory must find it. */
static size_t keep_preload(char *at, size_t room, const char *kv)
{
	char buf[sizeof kept_text];
	size_t len = 11;
	memcpy(buf, kv, len);
	for (const char *v = kv + 11; *v;) {
		size_t n = strcspn(v, ": ");
		const char *put = v;
		size_t put_n = n;
		if (n && is_memlimits(v, n, false)) {
			put = self;
			put_n = self_len;
		}
		if (len + put_n + 2 > sizeof buf)
			return 0;
		memcpy(buf + len, put, put_n);
		len += put_n;
		v += n;
		if (*v)
			buf[len++] = *v++;
	}
	buf[len] = 0;
	return keep(at, room, buf);
}

/* Which variables are limits: with none of them set, nothing is kept. */
static bool sets_a_limit(const char *kv)
{
	static const char *const limits[] = {
		"MEMLIMITS_GLOBAL_MEMORY=", "MEMLIMITS_ALLOCATIONS=",
		"MEMLIMITS_THREAD_ALLOCATIONS=", "MEMLIMITS_TREE=",
	};
	for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
		if (!strncmp(kv, limits[i], strlen(limits[i])) && kv[strlen(limits[i])])
			return true;
	return false;
}

/* system()'s count of its running calls, and popen()'s moment with the
 * new environment in environ: one lock, taken around fork so that a child
 * finds it free. Not by a fork from a signal handler that interrupted its
 * own thread holding it (popen holds it for the whole of glibc's popen):
 * that fork's prepare handler waited for ever for its own thread (a
 * held-out check: every run under a limit of a popen loop with a timer
 * whose handler forks). Such a fork leaves it as it is, in the parent and
 * in the child, whose copy of the thread goes on to release it. */
static int shell_word; /* a tid lock (tidlock.h) */
static __thread uint8_t shell_skipped __attribute__((tls_model("initial-exec")));

/* The holder's id in the lock word itself, so that "this thread holds it"
 * has no window (a flag beside a mutex had one, between the flag and the
 * mutex: CI hung there). Not cached: a forked child's thread has its own. */
static int shell_me(void)
{
	return (int)syscall(SYS_gettid);
}

static void shell_lock(void)
{
	mli_tidlock_take(&shell_word, shell_me());
}

static void shell_unlock(void)
{
	mli_tidlock_give(&shell_word);
}

static void shell_fork_prepare(void)
{
	shell_skipped = mli_tidlock_held_by(&shell_word, shell_me());
	if (!shell_skipped)
		shell_lock();
}
static void shell_fork_parent(void)
{
	if (!shell_skipped)
		shell_unlock();
	shell_skipped = 0;
}
static void shell_fork_child(void)
{
	if (!shell_skipped)
		shell_word = 0;
	shell_skipped = 0;
}

__attribute__((constructor)) static void exec_start(void)
{
	real_execve = (execve_fn)dlsym(RTLD_NEXT, "execve");
	real_execvpe = (execve_fn)dlsym(RTLD_NEXT, "execvpe");
	real_fexecve = (fexecve_fn)dlsym(RTLD_NEXT, "fexecve");
	real_execveat = (execveat_fn)dlsym(RTLD_NEXT, "execveat");
	real_spawn = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawn");
	real_spawnp = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawnp");
	real_system = (system_fn)dlsym(RTLD_NEXT, "system");
	real_popen = (popen_fn)dlsym(RTLD_NEXT, "popen");
	mli_atfork(shell_fork_prepare, shell_fork_parent, shell_fork_child);
	bool limited = false;
	for (char **e = environ; e && *e; e++)
		limited |= sets_a_limit(*e);
	Dl_info info;
	if (!limited || !dladdr((void *)exec_start, &info) || !info.dli_fname ||
	    !realpath(info.dli_fname, self) || stat(self, &self_is) != 0)
		return;
	self_len = strlen(self);
	/* The MEMLIMITS_* variables first: a long LD_PRELOAD must not crowd
	 * them out. */
	size_t used = 0;
	for (char **e = environ; e && *e; e++)
		if (!strncmp(*e, "MEMLIMITS_", 10) &&
		    strncmp(*e, MLI_FIRED_VAR "=", sizeof MLI_FIRED_VAR))
			/* (The exec note is this pid's, not the children's:
			 * kept, an exec with an environment of its own got
			 * one more at each, and past 32 LD_PRELOAD fell out
			 * of the kept ones.) */
			used += keep(kept_text + used, sizeof kept_text - used, *e);
	const char *pre = NULL;
	for (char **e = environ; e && *e; e++)
		if (!strncmp(*e, "LD_PRELOAD=", 11))
			pre = *e; /* ld.so reads the last */
	if (pre && lists_memlimits(pre + 11, false)) {
		size_t got = keep_preload(kept_text + used, sizeof kept_text - used, pre);
		if (!got) {
			/* Too long to keep: this library alone. */
			char only[sizeof self + 11];
			memcpy(only, "LD_PRELOAD=", 11);
			memcpy(only + 11, self, self_len + 1);
			got = keep(kept_text + used, sizeof kept_text - used, only);
		}
		used += got;
	}
}

/* Room for the LD_PRELOAD entry restore() may write: this library's path
 * ahead of the value in e; 1 if e has none to merge. */
static size_t merge_room(char *const *e)
{
	size_t room = 1;
	for (size_t j = 0; nkept && e && e[j]; j++)
		if (!strncmp(e[j], "LD_PRELOAD=", 11))
			room = strlen(e[j]) + self_len + 2; /* the last counts */
	return room;
}

static char *const empty_env[] = { NULL };

/* `e` with what it lacks of `kept` added, and `extra` (if not NULL) last,
 * in `out` (room for n(e) + nkept + 2 pointers), LD_PRELOAD merged in
 * `merged` (merge_room bytes); or `e` itself when nothing is missing. */
static char *const *restore(char *const *e, const char **out, char *merged,
			    const char *extra)
{
	size_t n = 0;
	for (; e[n]; n++)
		out[n] = e[n];
	size_t k = n;
	bool changed = false;
	if (extra) {
		/* In place of one there is already (a chain of execs
		 * added one each), else last. */
		size_t name = name_len(extra), j = n;
		while (j > 0 && strncmp(e[j - 1], extra, name))
			j--;
		if (j == 0)
			out[k++] = extra;
		else if (strcmp(e[j - 1], extra))
			out[j - 1] = extra;
		changed = true;
	}
	for (int i = 0; i < nkept; i++) {
		/* The last entry of a name: the one ld.so and the library
		 * read. */
		size_t name = name_len(kept[i]);
		size_t j = n;
		while (j > 0 && strncmp(e[j - 1], kept[i], name))
			j--;
		if (j == 0) {
			out[k++] = kept[i];
			changed = true;
			continue;
		}
		j--;
		if (strncmp(kept[i], "LD_PRELOAD=", 11) ||
		    lists_memlimits(e[j] + 11, true))
			continue;
		size_t theirs = strlen(e[j] + 11);
		memcpy(merged, "LD_PRELOAD=", 11);
		memcpy(merged + 11, self, self_len);
		merged[11 + self_len] = ':';
		memcpy(merged + 12 + self_len, e[j] + 11, theirs + 1);
		out[j] = merged;
		changed = true;
	}
	if (!changed)
		return e;
	out[k] = NULL;
	return (char *const *)out;
}

static size_t count(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

/* The new environment: on the caller's stack when it is small (a vfork
 * child's stack, a small thread's), else in a mapping of its own (40,000
 * variables on a 256 KiB thread stack overflowed it), unmapped by
 * release() when the call returns. (A vfork child whose exec succeeds
 * leaves that mapping to its parent, which shares the address space: only
 * for environments over STACK_PTRS variables.) None to be had: the call
 * fails with ENOMEM rather than run the child without its limit. */
#define STACK_PTRS 256
#define STACK_MERGE 512
struct newenv {
	char *const *env;
	void *map;
	size_t len;
};

static bool prepare_in(char *const *e, struct newenv *ne, const char **out,
		       char *merged, bool map, const char *extra)
{
	ne->map = NULL;
	ne->env = e;
	if (!nkept && !extra)
		return true; /* as it is, NULL included */
	e = e ? e : empty_env;
	size_t n = count(e), room = merge_room(e);
	if (map || n + KEPT_MAX + 2 > STACK_PTRS || room > STACK_MERGE) {
		ne->len = (n + KEPT_MAX + 2) * sizeof *out + room;
		ne->map = mli_sys_mmap(NULL, ne->len, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (ne->map == MAP_FAILED) {
			ne->map = NULL;
			errno = ENOMEM;
			return false;
		}
		out = ne->map;
		merged = (char *)ne->map + (n + KEPT_MAX + 2) * sizeof *out;
	}
	ne->env = restore(e, out, merged, extra);
	return true;
}

/* An exec replaces this process's image: if a limit fired in it, the next
 * image is told (MLI_FIRED_VAR=PID, only for the same pid: a child that
 * inherits the variable ignores it), so that --limit-status and the report
 * still know (python's MemoryError, then exec of cat, ended with cat's 0
 * under --limit-status 99, its report with no breach). In `buf` (32
 * bytes, the caller's stack: a vfork child may exec); NULL if none. */
static const char *fired_entry(char *buf)
{
	if (!mli_fired_for_exec())
		return NULL;
	struct mli_buf b = { buf, 0, 32 };
	mli_buf_str(&b, MLI_FIRED_VAR "=");
	mli_buf_u64(&b, (uint64_t)getpid());
	buf[b.len < 32 ? b.len : 31] = 0;
	return buf;
}


static int release(struct newenv *ne, int r)
{
	if (ne->map) {
		int saved = errno;
		mli_sys_munmap(ne->map, ne->len);
		errno = saved;
	}
	return r;
}

/* The new environment `ne` for e, on the stack if it fits; `extra` an
 * entry to add (fired_entry), or NULL. */
#define NEWENV_WITH(e, ne, extra)                                             \
	const char *ne##_out[STACK_PTRS];                                     \
	char ne##_merged[STACK_MERGE];                                        \
	struct newenv ne;                                                     \
	bool ne##_ok = prepare_in(e, &ne, ne##_out, ne##_merged, false, extra)
#define NEWENV(e, ne) NEWENV_WITH(e, ne, NULL)
/* For an exec: with MLI_FIRED_VAR if a limit fired here. */
#define EXEC_NEWENV(e, ne)                                                    \
	char ne##_fired[32];                                                  \
	NEWENV_WITH(e, ne, fired_entry(ne##_fired))

/* ---- programs the loader will not give the library -------------------- */

/* A program this process starts that the loader does not give the library
 * (statically linked, set-user-ID to another user: core/exe.c) runs with
 * no limit, where memlimit refuses such a command: a dynamic shell or make
 * that started a static one ran it unlimited without a word (a held-out
 * check). Said on stderr at the exec when a limit is set, not refused: a
 * build that runs a static tool (go build's compile) would stop. System
 * calls and the stack only: an exec may come from a vfork child. */
/* Set by posix_spawn around its check: the program runs in a new process,
 * and this one's report is not ended (it was, with "exec": a held-out
 * check). */
static __thread bool spawning __attribute__((tls_model("initial-exec")));

/* The program of the coming exec or spawn is one the library cannot load
 * in: it will not take the slot a tree keeps for it (core/tree.c), so none
 * is kept (it was, and outlived the tree: a held-out check). */
static __thread bool target_unreached __attribute__((tls_model("initial-exec")));

static void say_unreached_fd(int fd, const char *shown)
{
	const char *why = mli_exe_unreached_file(fd);
	if (!why)
		return;
	target_unreached = true;
	if (!nkept) { /* a report, no limit: nothing to warn of */
		mli_report_unreached_exec();
		return;
	}
	char msg[PATH_MAX + 200];
	struct mli_buf m = { msg, 0, sizeof msg };
	mli_buf_str(&m, "memlimits: warning: ");
	mli_buf_str(&m, shown);
	mli_buf_str(&m, " ");
	mli_buf_str(&m, why);
	mli_buf_str(&m, ": the library cannot load in it, so it runs with no limit\n");
	mli_say(msg, m.len < sizeof msg ? m.len : sizeof msg);
	if (!spawning)
		mli_report_unreached_exec(); /* this image ends here */
}

/* The program at path (relative to dirfd), shown as `shown`. */
static void say_unreached_at(int dirfd, const char *path, const char *shown)
{
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		say_unreached_fd(fd, shown);
		close(fd);
	}
}

/* The program in fd, which may be open with O_PATH (not readable): read
 * through /proc/self/fd. */
static void say_unreached_in(int fd, const char *shown)
{
	char p[40];
	struct mli_buf b = { p, 0, sizeof p };
	mli_buf_str(&b, "/proc/self/fd/");
	mli_buf_i64(&b, fd);
	p[b.len < sizeof p ? b.len : sizeof p - 1] = '\0';
	say_unreached_at(AT_FDCWD, p, shown);
}

/* Valgrind's launcher execs its tool, a static program, which runs the
 * program given to valgrind with that program's loader, the preload
 * applied (tests/valgrind.sh): told by the variable it passes. */
static bool valgrind_tool(char *const envp[])
{
	for (char *const *e = envp; e && *e; e++)
		if (!strncmp(*e, "VALGRIND_LAUNCHER=", 18))
			return true;
	return false;
}

/* The loader run as a program (ld.so [OPTIONS] PROG ...): PROG is what
 * runs, and a static one never runs the library (it ran with no limit and
 * no word: a held-out check). NULL if file is not the loader. */
static const char *loader_target(const char *file, char *const argv[])
{
	static const char *const valued[] = {
		"--library-path", "--inhibit-rpath", "--audit", "--preload",
		"--argv0", "--glibc-hwcaps-prepend", "--glibc-hwcaps-mask",
	};
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	if ((strncmp(base, "ld-", 3) && strncmp(base, "ld.so", 5) &&
	     strncmp(base, "ld64.so", 7)) || !strstr(base, ".so") || !argv || !argv[0])
		return NULL;
	/* As this glibc's loader reads its arguments: an option it does not
	 * take (--, --audit=X), or one that runs nothing (--list, --verify),
	 * ends it; a name without a slash is not looked for here (warned of
	 * where it did not run: a held-out check). */
	for (int k = 1; argv[k]; k++) {
		const char *a = argv[k];
		if (a[0] != '-')
			return strchr(a, '/') ? a : NULL;
		bool known = !strcmp(a, "--inhibit-cache");
		for (size_t i = 0; i < sizeof valued / sizeof *valued && !known; i++)
			if (!strcmp(a, valued[i])) {
				known = true;
				if (!argv[++k])
					return NULL;
			}
		if (!known)
			return NULL;
	}
	return NULL;
}

/* The program file that an exec runs, then the one the loader runs. */
static void say_unreached_file(const char *file, char *const argv[])
{
	say_unreached_at(AT_FDCWD, file, file);
	const char *prog = target_unreached ? NULL : loader_target(file, argv);
	if (prog)
		say_unreached_at(AT_FDCWD, prog, prog);
}

/* path as execve takes it, or (search) a file name looked up in PATH as
 * execvp does, to be run with argv and envp. */
static void say_unreached(const char *path, bool search, char *const argv[],
			  char *const envp[])
{
	target_unreached = false;
	/* With no limit, only an exec with a report to end is looked at. */
	bool report_only = !nkept && !spawning && mli_eng.cfg.report[0];
	if ((!nkept && !report_only) || !path || !*path || valgrind_tool(envp))
		return;
	if (!search || strchr(path, '/')) {
		say_unreached_file(path, argv);
		return;
	}
	const char *dirs = getenv("PATH");
	if (!dirs)
		dirs = "/bin:/usr/bin";
	size_t fl = strlen(path);
	for (const char *d = dirs;; d++) {
		const char *end = strchrnul(d, ':');
		size_t dl = (size_t)(end - d);
		char cand[PATH_MAX];
		if (dl + 1 + fl < sizeof cand) {
			memcpy(cand, dl ? d : ".", dl ? dl : 1);
			size_t at = dl ? dl : 1;
			cand[at] = '/';
			memcpy(cand + at + 1, path, fl + 1);
			struct stat st;
			if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) &&
			    access(cand, X_OK) == 0) {
				say_unreached_file(cand, argv);
				return;
			}
		}
		if (!*end)
			return;
		d = end;
	}
}

static int no_function(void)
{
	errno = ENOSYS;
	return -1;
}

/* Before each exec: the thread's unused reservation of a tree's budget
 * goes back (core/budget.c: the new image starts with none; a shell loop of
 * 20 commands lost 38 MiB of a 50M budget to its children's execs; a
 * failed exec draws again), and a vfork child is counted in the tree
 * (core/tree.c: its parent may leave before the new image starts). */
static void before_exec(void)
{
	mli_budget_exit(&mli_tls);
	if (!target_unreached)
		mli_tree_before_exec();
	target_unreached = false;
}

/* The real exec through fn with the new environment; -1 and ENOSYS or
 * ENOMEM when it cannot be made. */
static int exec_with(execve_fn fn, const char *path, char *const argv[],
		     char *const envp[])
{
	if (!fn)
		return no_function();
	before_exec();
	EXEC_NEWENV(envp, ne);
	return ne_ok ? release(&ne, fn(path, argv, ne.env)) : -1;
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	say_unreached(path, false, argv, envp);
	return exec_with(real_execve, path, argv, envp);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	say_unreached(file, true, argv, envp);
	return exec_with(real_execvpe, file, argv, envp);
}

EXPORT int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

EXPORT int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	if (!real_fexecve)
		return no_function();
	if (nkept && !valgrind_tool(envp))
		say_unreached_in(fd, "the program fexecve runs");
	before_exec();
	EXEC_NEWENV(envp, ne);
	return ne_ok ? release(&ne, real_fexecve(fd, argv, ne.env)) : -1;
}

EXPORT int execveat(int dirfd, const char *path, char *const argv[],
		    char *const envp[], int flags)
{
	if (!real_execveat)
		return no_function();
	if (nkept && !valgrind_tool(envp)) {
		if (!*path && (flags & AT_EMPTY_PATH))
			say_unreached_in(dirfd, "the program execveat runs");
		else
			say_unreached_at(dirfd, path, path);
	}
	before_exec();
	EXEC_NEWENV(envp, ne);
	return ne_ok ? release(&ne, real_execveat(dirfd, path, argv, ne.env, flags))
		     : -1;
}

/* execl, execlp, execle: their arguments as an array on the stack. */
#define ARGV_FROM_LIST(first, ap, argv)                                       \
	size_t argc_ = 1;                                                     \
	va_start(ap, first);                                                  \
	while (va_arg(ap, const char *))                                      \
		argc_++;                                                      \
	va_end(ap);                                                           \
	char *argv[argc_ + 1];                                                \
	argv[0] = (char *)(first);                                            \
	va_start(ap, first);                                                  \
	for (size_t i_ = 1; i_ <= argc_; i_++)                                \
		argv[i_] = va_arg(ap, char *)

EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	ARGV_FROM_LIST(arg, ap, argv);
	va_end(ap);
	return execve(path, argv, environ);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	ARGV_FROM_LIST(arg, ap, argv);
	va_end(ap);
	return execvpe(file, argv, environ);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	ARGV_FROM_LIST(arg, ap, argv);
	char *const *envp = va_arg(ap, char *const *);
	va_end(ap);
	return execve(path, argv, envp);
}

/* posix_spawn's convention: the error number is returned. */
static int spawn_with(spawn_fn fn, pid_t *pid, const char *path,
		      const posix_spawn_file_actions_t *fa,
		      const posix_spawnattr_t *attr, char *const argv[],
		      char *const envp[])
{
	if (!fn)
		return ENOSYS;
	NEWENV(envp, ne);
	if (!ne_ok)
		return ENOMEM;
	pid_t child;
	bool unreached = target_unreached;
	target_unreached = false;
	int r = release(&ne, fn(&child, path, fa, attr, argv, ne.env));
	if (!r) {
		if (!unreached)
			mli_tree_adopt(child); /* before this process may leave the tree */
		if (pid)
			*pid = child;
	}
	return r;
}

EXPORT int posix_spawn(pid_t *pid, const char *path,
		       const posix_spawn_file_actions_t *fa,
		       const posix_spawnattr_t *attr, char *const argv[],
		       char *const envp[])
{
	spawning = true;
	say_unreached(path, false, argv, envp);
	spawning = false;
	return spawn_with(real_spawn, pid, path, fa, attr, argv, envp);
}

EXPORT int posix_spawnp(pid_t *pid, const char *file,
			const posix_spawn_file_actions_t *fa,
			const posix_spawnattr_t *attr, char *const argv[],
			char *const envp[])
{
	spawning = true;
	say_unreached(file, true, argv, envp);
	spawning = false;
	return spawn_with(real_spawnp, pid, file, fa, attr, argv, envp);
}

/* ---- system() and popen() ------------------------------------------------ */

/* SIGINT and SIGQUIT are ignored while any system() runs (POSIX), and put
 * back when the last one ends: what they were, and how many run. */
static struct sigaction shell_int, shell_quit;
static int shell_users;

struct shell_run {
	pid_t pid;
	sigset_t mask; /* the caller's, SIGCHLD unblocked */
};

static void shell_leave(const struct shell_run *r)
{
	shell_lock();
	if (--shell_users == 0) {
		sigaction(SIGINT, &shell_int, NULL);
		sigaction(SIGQUIT, &shell_quit, NULL);
	}
	shell_unlock();
	sigprocmask(SIG_SETMASK, &r->mask, NULL);
}

/* A cancelled system() kills and reaps its shell (as glibc's). */
static void shell_cancelled(void *arg)
{
	struct shell_run *r = arg;
	kill(r->pid, SIGKILL);
	while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
		;
	shell_leave(r);
}

/* glibc's system(), with env: /bin/sh -c LINE, SIGCHLD blocked and SIGINT,
 * SIGQUIT ignored in the caller meanwhile, the child with the caller's
 * mask and those two at their defaults (unless they were ignored). */
static int shell_run(const char *line, char *const env[])
{
	struct sigaction ign = { .sa_handler = SIG_IGN };
	sigemptyset(&ign.sa_mask);
	struct shell_run r = { .pid = -1 };
	int old;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	shell_lock();
	if (shell_users++ == 0) {
		sigaction(SIGINT, &ign, &shell_int);
		sigaction(SIGQUIT, &ign, &shell_quit);
	}
	shell_unlock();
	sigset_t chld, reset;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &r.mask);
	sigemptyset(&reset);
	if (shell_int.sa_handler != SIG_IGN)
		sigaddset(&reset, SIGINT);
	if (shell_quit.sa_handler != SIG_IGN)
		sigaddset(&reset, SIGQUIT);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &r.mask);
	posix_spawnattr_setsigdefault(&attr, &reset);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
	/* As glibc 2.36 runs it (no "--": system("-x") is sh's option
	 * error, as without the library). */
	char *const argv[] = { "sh", "-c", (char *)line, NULL };
	int err = real_spawn ? real_spawn(&r.pid, "/bin/sh", NULL, &attr, argv, env)
			     : ENOSYS;
	posix_spawnattr_destroy(&attr);
	int status = 127 << 8; /* the shell could not be run */
	if (err == 0) {
		pthread_cleanup_push(shell_cancelled, &r);
		pthread_setcancelstate(old, NULL);
		while (waitpid(r.pid, &status, 0) < 0)
			if (errno != EINTR) {
				status = -1;
				break;
			}
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		pthread_cleanup_pop(0);
	}
	int saved = errno;
	shell_leave(&r);
	pthread_setcancelstate(old, NULL);
	errno = saved;
	return status;
}

EXPORT int system(const char *line)
{
	if (!real_system)
		return no_function();
	if (!line || !nkept)
		return real_system(line); /* NULL: "is there a shell?" */
	NEWENV(environ, ne);
	if (!ne_ok)
		return -1;
	if (ne.env == environ)
		return release(&ne, real_system(line));
	return release(&ne, shell_run(line, ne.env));
}

/* glibc's popen, with the new environment in environ while it spawns. A
 * thread that changes the environment meanwhile (setenv) builds on the new
 * one, which then stays: its strings must too, so the new environment is
 * made in a mapping of its own, which is then left mapped (a held-out
 * check found the merged LD_PRELOAD of a popen's stack frame in the
 * program's environment after such a setenv). */
EXPORT FILE *popen(const char *cmd, const char *mode)
{
	if (!real_popen) {
		errno = ENOSYS;
		return NULL;
	}
	if (!nkept)
		return real_popen(cmd, mode);
	int old;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	shell_lock();
	char **saved = environ;
	struct newenv ne;
	FILE *f = NULL;
	if (prepare_in(saved, &ne, NULL, NULL, true, NULL)) {
		environ = (char **)ne.env;
		f = real_popen(cmd, mode);
		if (environ == (char **)ne.env) {
			environ = saved;
			release(&ne, 0);
		}
	}
	int e = errno;
	shell_unlock();
	pthread_setcancelstate(old, NULL);
	errno = e;
	return f;
}
