/* report.c: what the engine tells the user. Breach messages come from the
 * allocation path, so they are formatted without stdio or malloc and written
 * with write(2), once per limit. The report (MEMLIMITS_REPORT) is written
 * the same way, once per process: at exit, or on the way to abort()
 * (MEMLIMITS_ON_LIMIT=abort, a C++ program's uncaught exception, the
 * program's own abort; preload/abort.c), whichever comes first. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "output.h"
#include "mapped.h"

struct breach_rec {
	const char *var;
	uint64_t refused;     /* allocations refused (atomic) */
	uint64_t first_request;
	int64_t first_heap;   /* -1 if not measured */
};
static struct breach_rec rec[4] = {
	{ "MEMLIMITS_GLOBAL_MEMORY", 0, 0, -1 },
	{ "MEMLIMITS_ALLOCATIONS", 0, 0, -1 },
	{ "MEMLIMITS_THREAD_ALLOCATIONS", 0, 0, -1 },
	{ "MEMLIMITS_GLOBAL_MEMORY", 0, 0, -1 }, /* the process tree's */
};
#define NREC 4

static uint64_t soft_crossings;     /* MEMLIMITS_SOFT_MEMORY's (atomic) */
static int64_t soft_first_memory = -1;

static int rec_index(enum mli_breach which)
{
	return which == MLI_BREACH_GLOBAL ? 0 : which == MLI_BREACH_ALLOC ? 1
	     : which == MLI_BREACH_THREAD ? 2 : 3;
}

static int64_t limit_of(int i)
{
	const struct mli_config *c = &mli_eng.cfg;
	/* In a tree with a budget, the budget is the tree's: a process given
	 * MEMLIMITS_ALLOCATIONS=1G of its own in a 60M tree said "1.0 GiB
	 * exhausted (process tree budget)" at 60M (a held-out check). */
	return i == 0 ? c->global_memory
	     : i == 1 ? (mli_tree_budget() ? mli_tree_budget_limit() : c->allocations)
	     : i == 2 ? c->thread_allocations : mli_tree_limit();
}

/* Did any limit but rec[skip] refuse? */
static bool any_breach_but(int skip)
{
	for (int i = 0; i < NREC; i++)
		if (i != skip && __atomic_load_n(&rec[i].refused, __ATOMIC_RELAXED))
			return true;
	return false;
}

bool mli_report_any_breach(void)
{
	return any_breach_but(-1);
}

/* The process the report state belongs to: a vfork child shares it (and
 * this memory) with its parent, and must not write the parent's report. */
static pid_t report_pid;

/* A limit fired in this process before its last exec (MLI_FIRED_VAR):
 * the old image's report is replaced by this one's, and its status was
 * lost (a held-out check: python's MemoryError, then exec of cat, ended
 * with cat's 0 under --limit-status 99). */
bool mli_fired_before_exec(void)
{
	int pid = mli_eng.cfg.fired_pid;
	return pid && pid == getpid();
}

static bool fired(void)
{
	return mli_report_any_breach() || mli_tree_any_fired() ||
	       mli_fired_before_exec();
}

bool mli_fired_for_exec(void)
{
	const struct mli_config *c = &mli_eng.cfg;
	/* Not in a vfork child, which shares its parent's record. */
	return (c->limit_status || c->report[0] || c->profile[0]) && report_pid == getpid() &&
	       (mli_report_any_breach() || mli_fired_before_exec());
}

/* MEMLIMITS_LIMIT_STATUS: the process ends with that status if a limit
 * fired in it, or in any process of its tree (as timeout(1) ends with 124
 * when the time ran out), whatever status it chose itself (final_exit,
 * below). */
static bool limit_status_mine(void)
{
	const struct mli_config *c = &mli_eng.cfg;
	return c->limit_status &&
	       (!c->limit_status_pid || c->limit_status_pid == getpid());
}

/* Two threads that call exit() at once (perl's threads, out of memory
 * together): glibc runs each exit handler once, in whichever thread takes
 * it, and the first thread to run out of handlers ends the process, while
 * the other may still be writing the report or the profile (the report was
 * missing in 43 of 100 runs, and --limit-status's status lost in 3 of 40).
 * The library's last handlers (registered first) are gates: the thread that
 * reaches one first waits for the library's exit work in other threads (2 s
 * at most), then ends the process; a thread that finishes such work after
 * a gate was taken, or reaches a gate second, waits for the end. */
static pid_t ender; /* the thread at the gate */
static int exit_busy; /* the library's exit handlers running */

static pid_t tid(void);

static void park(void)
{
	for (;;)
		pause();
}

static __thread int my_exit_work __attribute__((tls_model("initial-exec")));

/* abort() in one thread while another's exit() begins writing the profile:
 * the abort ended the process in the middle of it (some of its files
 * missing: 3 of 18 runs, a held-out check). The aborting thread says so,
 * then waits for exit work already begun (mli_exit_abort); exit work that
 * begins after that stands back while the abort ends the process, 2 s at
 * most (a SIGABRT handler may jump out of the abort, and the process live
 * on). Each side publishes before it looks at the other's word. */
static int aborting;
static __thread bool aborting_here __attribute__((tls_model("initial-exec")));

void mli_exit_work_begin(void)
{
	my_exit_work++;
	__atomic_add_fetch(&exit_busy, 1, __ATOMIC_SEQ_CST);
	if (!__atomic_load_n(&aborting, __ATOMIC_SEQ_CST) || aborting_here)
		return;
	__atomic_sub_fetch(&exit_busy, 1, __ATOMIC_SEQ_CST);
	struct timespec ms = { 0, 1000000 };
	for (int i = 0; i < 2000 && __atomic_load_n(&aborting, __ATOMIC_ACQUIRE); i++)
		nanosleep(&ms, NULL); /* ended by the abort, or by a jump out of it */
	__atomic_add_fetch(&exit_busy, 1, __ATOMIC_SEQ_CST);
}

/* From _exit (and quick_exit's end): the library's exit work that other
 * threads are doing (exit()'s report and profile) is waited for, 2 s at
 * most, before the process ends (a thread's _exit while another wrote the
 * report left it missing or empty in 26 of 40 runs: a held-out check). */
void mli_exit_wait_others(void)
{
	struct timespec ms = { 0, 1000000 };
	for (int i = 0; i < 2000 &&
			__atomic_load_n(&exit_busy, __ATOMIC_ACQUIRE) > my_exit_work;
	     i++)
		nanosleep(&ms, NULL);
}

void mli_exit_abort(void)
{
	aborting_here = true;
	__atomic_store_n(&aborting, 1, __ATOMIC_SEQ_CST);
	mli_exit_wait_others();
}

/* A jump out of the aborting thread (its SIGABRT handler's longjmp): the
 * process lives on, and its exit work need not wait. */
void mli_exit_abort_left(void)
{
	if (mli_unlikely(aborting_here)) {
		aborting_here = false;
		__atomic_store_n(&aborting, 0, __ATOMIC_SEQ_CST);
	}
}

void mli_exit_work_end(void)
{
	my_exit_work--;
	__atomic_sub_fetch(&exit_busy, 1, __ATOMIC_ACQ_REL);
	pid_t e = __atomic_load_n(&ender, __ATOMIC_ACQUIRE);
	if (e && e != tid())
		park();
}

static void final_exit(void)
{
	pid_t none = 0, me = tid();
	bool first = __atomic_compare_exchange_n(&ender, &none, me, false,
						 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	if (!first && none == me)
		return; /* this thread's next gate: it passed one */
	/* A gate taken is a gate put back, for the threads still coming
	 * (glibc runs handlers registered while exit() runs them). */
	atexit(final_exit);
	if (!first)
		park();
	/* The handlers above the gates were all taken, but a thread that took
	 * one may not have begun it yet (exit_busy still 0, and the report
	 * missing in 3 of 200 runs of 64 threads): the exit work is done here
	 * if nobody has claimed it, waited for below if somebody has. */
	if (mli_eng.cfg.profile[0])
		mli_profile_exit();
	if (mli_eng.cfg.report[0])
		mli_report_exit();
	struct timespec ms = { 0, 1000000 };
	for (int i = 0; i < 2000 && __atomic_load_n(&exit_busy, __ATOMIC_ACQUIRE);
	     i++)
		nanosleep(&ms, NULL);
	/* MEMLIMITS_LIMIT_STATUS: after every other handler (the report's, the
	 * program's): stdio is flushed, then _exit. */
	if (limit_status_mine() && fired()) {
		fflush(NULL);
		_exit(mli_eng.cfg.limit_status);
	}
}

/* MEMLIMITS_LIMIT_STATUS=N with no pid is tied to this process, the one
 * given it, and so handed on to the programs it runs (N:PID): untied, it
 * was every process's of the tree, so every program whose own limit fired
 * exited N (a held-out check), and so did the forked shells of a memlimit
 * run inside such a tree, which could not run its helpers. As the wrapper's
 * --limit-status: the status of the command. */
static char tied_entry[64];

static void tie_limit_status(struct mli_config *c)
{
	extern char **environ;
	static const char var[] = "MEMLIMITS_LIMIT_STATUS=";
	c->limit_status_pid = (int)getpid();
	struct mli_buf b = { tied_entry, 0, sizeof tied_entry };
	mli_buf_str(&b, var);
	mli_buf_u64(&b, (uint64_t)c->limit_status);
	mli_buf_str(&b, ":");
	mli_buf_u64(&b, (uint64_t)c->limit_status_pid);
	if (b.len + 1 >= b.cap)
		return;
	tied_entry[b.len] = 0;
	for (char **e = environ; e && *e; e++)
		if (!strncmp(*e, var, sizeof var - 1))
			*e = tied_entry;
}

void mli_limit_status_start(void)
{
	report_pid = getpid();
	struct mli_config *c = &mli_eng.cfg;
	if (c->limit_status && !c->limit_status_pid)
		tie_limit_status(c);
	/* Gates for threads that exit at the same moment: a thread that finds
	 * no handler left ends the process with its own status, before the
	 * report is written. Each gate taken is put back (final_exit), but
	 * not before others may have found the list empty: four gates lost
	 * --limit-status's status with 32 threads (1 in 30 runs), so 64, a
	 * few microseconds at start-up and a cheap return each at exit. */
	if (limit_status_mine() || c->report[0] || c->profile[0])
		for (int i = 0; i < 64; i++)
			atexit(final_exit);
}

/* From _exit (dash ends so): the status it should end with. */
int mli_limit_status_of(int status)
{
	if (limit_status_mine() && fired())
		return mli_eng.cfg.limit_status;
	return status;
}

void mli_die(const char *msg)
{
	mli_tree_abandon();
	/* One write: lines of processes that stop at once stay whole. */
	size_t len = strlen(msg);
	char line[8192];
	if (len + 1 > sizeof line) {
		mli_write_all(2, msg, len);
		mli_write_all(2, "\n", 1);
	} else {
		memcpy(line, msg, len);
		line[len] = '\n';
		mli_write_all(2, line, len + 1);
	}
	/* Not the library's _exit: a program refused before main writes no
	 * report (a bad MEMLIMITS_REPORT said so twice, once at start and
	 * once as the report failed at exit), and exits 125 whatever
	 * MEMLIMITS_LIMIT_STATUS says. */
	for (;;)
		syscall(SYS_exit_group, 125);
}

/* How the refused call fails, for the breach line, where that is not
 * ENOMEM: set around its admission by the caller (memfd.c's fallocate,
 * which fails with ENOSPC as a full tmpfs does). */
__thread const char *mli_refusal_errno __attribute__((tls_model("initial-exec")));
__thread size_t mli_refusal_resize __attribute__((tls_model("initial-exec")));

void mli_report_breach(enum mli_breach which, size_t n, size_t block,
		       int64_t live)
{
	int i = rec_index(which);
	struct breach_rec *r = &rec[i];
	if (__atomic_fetch_add(&r->refused, 1, __ATOMIC_RELAXED) == 0) {
		if (!any_breach_but(i))
			mli_tree_fired();
		/* In a tree, MEMLIMITS_GLOBAL_MEMORY is both the process's cap and
		 * the tree's (the wrapper sets both): one line for the one limit
		 * the user set, whichever fired first (it said both). */
		int twin = i == 0 ? 3 : i == 3 ? 0 : -1;
		bool said = twin >= 0 && limit_of(twin) == limit_of(i) &&
			    __atomic_load_n(&rec[twin].refused, __ATOMIC_RELAXED);
		r->first_request = n == MLI_REQ_THREAD || n == MLI_REQ_FORK ? 0 : n;
		r->first_heap = live;
		char b[320];
		struct mli_buf m = { b, 0, sizeof b };
		mli_buf_str(&m, "memlimits: ");
		mli_buf_str(&m, r->var);
		mli_buf_str(&m, "=");
		mli_buf_size(&m, (uint64_t)limit_of(i));
		mli_buf_str(&m, i == 0 ? " reached (memory "
			       : i == 3 ? " reached by the process tree (its memory "
					: " exhausted (");
		if (i == 0 || i == 3) {
			mli_buf_size(&m, (uint64_t)live);
			mli_buf_str(&m, ")");
		} else
			mli_buf_str(&m, i == 2	       ? "thread"
					: mli_tree_budget() ? "process tree"
							    : "process");
		mli_buf_str(&m, i == 0 || i == 3 ? "" : " budget)");
		if (n == MLI_REQ_THREAD)
			mli_buf_str(&m, ": a new thread (pthread_create) failed");
		else if (n == MLI_REQ_FORK) {
			mli_buf_str(&m, ": a fork (a process of ");
			mli_buf_size(&m, block);
			mli_buf_str(&m, ") failed");
		}
		else if (mli_refusal_resize) {
			/* realloc(p, 33554560) of a 20 MiB block said "an
			 * allocation of 20971520 bytes": the growth alone. */
			mli_buf_str(&m, ": a resize to ");
			mli_buf_u64(&m, mli_refusal_resize);
			mli_buf_str(&m, " bytes (");
			mli_buf_size(&m, block > n ? block : n);
			mli_buf_str(&m, " more) failed");
		} else {
			mli_buf_str(&m, ": an allocation of ");
			mli_buf_u64(&m, n);
			mli_buf_str(&m, " bytes");
			if (block > n) {
				/* The limit saw the block: say why a request
				 * under the room left failed. */
				mli_buf_str(&m, " (a block of ");
				mli_buf_size(&m, block);
				mli_buf_str(&m, ")");
			}
			mli_buf_str(&m, " failed");
		}
		mli_buf_str(&m, mli_eng.cfg.on_limit == MLI_ON_LIMIT_ABORT ? "; aborting\n"
				: n == MLI_REQ_THREAD ? " with EAGAIN\n"
				: mli_refusal_errno   ? mli_refusal_errno
						      : " with ENOMEM\n");
		if (!said) {
			mli_say(m.p, m.len);
			/* Who held the memory at the breach. */
			mli_profile_write("breach");
		}
	}
	if (mli_eng.cfg.on_limit == MLI_ON_LIMIT_ABORT) {
		/* This thread is in the engine, where abort() would leave the
		 * heap figures out, but it holds none of its locks here. */
		mli_report_abort(true);
		abort();
	}
}

/* The report is written once per process: 0 not yet, 1 being written (by
 * report_tid), 2 written. */
static int report_state;
static pid_t report_tid;

/* A forked child's report and breaches are its own: it has not written a
 * report yet, and the parent's breaches are in the parent's. */
void mli_report_fork_child(void)
{
	report_pid = getpid();
	mli_say_forked();
	for (int i = 0; i < NREC; i++) {
		rec[i].refused = 0;
		rec[i].first_request = 0;
		rec[i].first_heap = -1;
	}
	report_state = 0;
	/* A child forked while a thread of the parent was at the exit gate
	 * (or in the library's exit work) has none of that: it parked at its
	 * own exit for ever (a held-out check). */
	ender = 0;
	exit_busy = 0;
	/* Nor another thread's abort (its exit work stood back 2 s a file). */
	if (!aborting_here)
		aborting = 0;
}

static void kv(struct mli_buf *m, bool json, const char *key, int64_t v,
	       bool known, bool last)
{
	if (json) {
		mli_buf_str(m, "\"");
		mli_buf_str(m, key);
		mli_buf_str(m, "\": ");
		if (known)
			mli_buf_i64(m, v);
		else
			mli_buf_str(m, "null");
		mli_buf_str(m, last ? "" : ", ");
	} else {
		mli_buf_str(m, "memlimits:   ");
		mli_buf_str(m, key);
		mli_buf_str(m, ": ");
		if (known)
			mli_buf_i64(m, v);
		else
			mli_buf_str(m, "unknown");
		mli_buf_str(m, "\n");
	}
}

/* The report: the process, peak heap, totals, and every breach. `stderr`
 * gets lines, a file one JSON object. `measure` false: the figures that
 * need the registry's lock or jemalloc's are unknown (null). */
static void build(struct mli_buf *m, bool json, const char *ended_by,
		  bool measure)
{
	if (json) {
		mli_buf_str(m, "{");
		mli_buf_process_json(m);
		mli_buf_str(m, ", \"ended_by\": \"");
		mli_buf_str(m, ended_by);
		mli_buf_str(m, "\", ");
	} else {
		mli_buf_str(m, "memlimits: report (");
		mli_buf_str(m, ended_by);
		mli_buf_str(m, ")\nmemlimits:   ");
		mli_buf_process_json(m);
		mli_buf_str(m, "\n");
	}
	/* The memory: the global limit's measure (heap + mapped). Its peak is
	 * one atomic word, known also at abort. */
	int64_t live = measure ? mli_heap_exact() : 0;
	kv(m, json, "peak_memory_bytes", mli_mem_peak(), true, false);
	kv(m, json, "live_heap_bytes", live, measure, false);
	kv(m, json, "mapped_bytes", mli_mapped_bytes(), true, false);
	kv(m, json, "allocated_bytes", measure ? (int64_t)mli_total_allocated() : 0,
	   measure, false);
	/* jemalloc's statistics take jemalloc's locks, which an abort() from
	 * jemalloc itself (a corrupted heap) may hold: not at abort. */
	bool at_exit = strcmp(ended_by, "exit") == 0;
	kv(m, json, "allocations", at_exit ? (int64_t)mli_be_nrequests() : 0, at_exit,
	   false);
	kv(m, json, "global_memory_limit", limit_of(0), true, false);
	kv(m, json, "allocations_limit", limit_of(1), true, false);
	kv(m, json, "thread_allocations_limit", limit_of(2), true, false);
	kv(m, json, "soft_memory_limit", mli_eng.cfg.soft_memory, true, false);
	kv(m, json, "soft_crossings",
	   (int64_t)__atomic_load_n(&soft_crossings, __ATOMIC_RELAXED), true, false);
	kv(m, json, "memory_at_first_soft_crossing", soft_first_memory,
	   soft_first_memory >= 0, false);
	kv(m, json, "tree_memory_limit", mli_tree_limit(), true, false);
	kv(m, json, "limit_fired_before_exec", mli_fired_before_exec(), true, false);
	kv(m, json, "tree_memory_bytes", mli_tree_memory(), true, !json);
	if (json)
		mli_buf_str(m, "\"breaches\": [");
	bool first = true;
	for (int i = 0; i < NREC; i++) {
		uint64_t refused = __atomic_load_n(&rec[i].refused, __ATOMIC_RELAXED);
		if (!refused)
			continue;
		if (json) {
			mli_buf_str(m, first ? "{\"limit\": \"" : ", {\"limit\": \"");
			mli_buf_str(m, rec[i].var);
			mli_buf_str(m, i == 3 ? " (process tree)\", " : "\", ");
		} else {
			mli_buf_str(m, "memlimits:   breach of ");
			mli_buf_str(m, rec[i].var);
			mli_buf_str(m, "\n");
		}
		first = false;
		kv(m, json, "limit_bytes", limit_of(i), true, false);
		kv(m, json, "refused_allocations", (int64_t)refused, true, false);
		kv(m, json, "first_refused_request_bytes",
		   (int64_t)rec[i].first_request, true, false);
		kv(m, json, i == 0 || i == 3 ? "memory_bytes_at_first_refusal"
					     : "heap_bytes_at_first_refusal",
		   rec[i].first_heap, rec[i].first_heap >= 0, true);
		if (json)
			mli_buf_str(m, "}");
	}
	if (json)
		mli_buf_str(m, "]}\n");
}

/* Static buffers: there is one writer (report_state), and abort() may run
 * on a small signal stack. */
static char report_text[24 << 10];
static struct mli_file report_file;

static pid_t tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static bool claim_from(int from)
{
	int expect = from;
	if (!__atomic_compare_exchange_n(&report_state, &expect, 1, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return false;
	report_tid = tid();
	return true;
}

static bool claim(void)
{
	return claim_from(0);
}

/* At the process's end: also over a report written at an abort() that the
 * process survived (state 3: its SIGABRT handler jumped back), which said
 * "abort" and no figure after it (a held-out check). */
static bool claim_at_end(void)
{
	return claim_from(0) || claim_from(3);
}

void mli_report_abort_final(void)
{
	int expect = 3;
	__atomic_compare_exchange_n(&report_state, &expect, 2, false,
				    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static void emit(const char *ended_by, bool measure)
{
	const char *dest = mli_eng.cfg.report;
	bool json = strcmp(dest, "stderr") != 0;
	struct mli_buf m = { report_text, 0, sizeof report_text };
	build(&m, json, ended_by, measure);
	if (json) {
		if (mli_file_open(&report_file, MLI_OUT_REPORT, "")) {
			mli_file_write(&report_file, m.p, m.len);
			mli_file_close(&report_file);
		}
	} else
		mli_say(m.p, m.len);
	/* 3: written at an abort(), which the process may survive. */
	__atomic_store_n(&report_state, strcmp(ended_by, "abort") ? 2 : 3,
			 __ATOMIC_RELEASE);
}

static void wait_for_writer(void);

void mli_report_exit(void)
{
	mli_exit_work_begin();
	if (claim_at_end())
		emit("exit", true);
	else
		wait_for_writer(); /* another thread's _exit or abort() writes it */
	mli_exit_work_end();
}

/* _exit, _Exit (preload/exit.c): dash ends every shell so, and a forked
 * child often. Not from a vfork child, which shares the parent's state;
 * measured if this thread is not inside the engine. */
void mli_report_quick_exit(void)
{
	if (!mli_eng.cfg.report[0])
		return;
	if (!report_pid)
		report_pid = getpid(); /* the first process, from its start */
	if (getpid() != report_pid)
		return;
	if (claim_at_end())
		emit("_exit", !mli_tls.in_engine);
	else
		wait_for_writer(); /* another thread's, at abort() or exit */
}

/* An exec of a program the library cannot reach (static, set-user-ID to
 * another user; preload/exec.c): the new image writes no report, and with
 * it went this image's, and the news of a limit that fired (a held-out
 * check: --limit-status's status and the report both lost). This image's
 * report is written now; the status cannot be carried. Not from a vfork
 * child. */
void mli_report_unreached_exec(void)
{
	if (!mli_eng.cfg.report[0] || !report_pid || getpid() != report_pid)
		return;
	if (claim_at_end())
		emit("exec", !mli_tls.in_engine);
}

/* The report is written, or being written: by this thread (abort() or
 * _exit from inside the writer: a crash there, or a signal handler) go on,
 * else give the other thread a moment to finish before the process dies. */
static void wait_for_writer(void)
{
	if (__atomic_load_n(&report_tid, __ATOMIC_RELAXED) == tid())
		return;
	struct timespec ms = { 0, 1000000 };
	for (int i = 0; i < 2000 &&
			__atomic_load_n(&report_state, __ATOMIC_ACQUIRE) == 1;
	     i++)
		nanosleep(&ms, NULL);
}

void mli_report_abort(bool measure)
{
	if (!mli_eng.cfg.report[0])
		return;
	if (claim()) {
		emit("abort", measure);
		return;
	}
	wait_for_writer();
}

/* With MEMLIMITS_REPORT set, limits given as a percentage are said once at
 * start-up, resolved, so that the user sees what "90%" meant here. */
static void say_share(struct mli_buf *m, const char *var, uint32_t ppm,
		      int64_t bytes, const char *of)
{
	mli_buf_str(m, "memlimits: ");
	mli_buf_str(m, var);
	mli_buf_str(m, "=");
	mli_buf_u64(m, ppm / 10000);
	if (ppm % 10000) {
		char f[8];
		unsigned r = ppm % 10000, k = 0;
		f[k++] = '.';
		for (unsigned d = 1000; d && r; d /= 10) {
			f[k++] = (char)('0' + r / d);
			r %= d;
		}
		f[k] = '\0';
		mli_buf_str(m, f);
	}
	mli_buf_str(m, "% of ");
	mli_buf_str(m, of);
	mli_buf_str(m, " = ");
	mli_buf_size(m, (uint64_t)bytes);
	mli_buf_str(m, " (");
	mli_buf_u64(m, (uint64_t)bytes);
	mli_buf_str(m, " bytes)\n");
}

void mli_report_startup(void)
{
	report_pid = getpid();
	const struct mli_config *c = &mli_eng.cfg;
	char b[512];
	struct mli_buf m = { b, 0, sizeof b };
	char of[128];
	if (c->global_ppm) {
		struct mli_buf o = { of, 0, sizeof of };
		mli_buf_str(&o, c->sysmem_source);
		mli_buf_str(&o, " (");
		mli_buf_size(&o, (uint64_t)c->sysmem);
		mli_buf_str(&o, ")");
		say_share(&m, "MEMLIMITS_GLOBAL_MEMORY", c->global_ppm,
			  c->global_memory, of);
	}
	if (c->soft_ppm) {
		struct mli_buf o = { of, 0, sizeof of };
		if (c->global_memory >= 0)
			mli_buf_str(&o, "MEMLIMITS_GLOBAL_MEMORY");
		else {
			mli_buf_str(&o, c->sysmem_source);
			mli_buf_str(&o, " (");
			mli_buf_size(&o, (uint64_t)c->sysmem);
			mli_buf_str(&o, ")");
		}
		say_share(&m, "MEMLIMITS_SOFT_MEMORY", c->soft_ppm, c->soft_memory,
			  of);
	}
	if (m.len)
		mli_say(m.p, m.len);
}

/* MEMLIMITS_SOFT_MEMORY crossed: once per crossing, a line on stderr, the
 * report's record, and the profile as it is now (FILE.soft). */

void mli_report_soft(int64_t memory, int64_t threshold, void *arg)
{
	(void)arg;
	if (__atomic_fetch_add(&soft_crossings, 1, __ATOMIC_RELAXED) == 0)
		soft_first_memory = memory;
	char b[256];
	struct mli_buf m = { b, 0, sizeof b };
	mli_buf_str(&m, "memlimits: MEMLIMITS_SOFT_MEMORY=");
	mli_buf_size(&m, (uint64_t)threshold);
	mli_buf_str(&m, " crossed (memory ");
	mli_buf_size(&m, (uint64_t)memory);
	mli_buf_str(&m, ")\n");
	mli_say(m.p, m.len);
	mli_profile_write("soft");
}
