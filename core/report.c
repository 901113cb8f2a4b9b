/* report.c: what the engine tells the user. Breach messages come from the
 * allocation path, so they are formatted without stdio or malloc and written
 * with write(2), once per limit. The report (MEMLIMITS_REPORT) is written
 * the same way, once per process: at exit, or on the way to abort()
 * (MEMLIMITS_ON_LIMIT=abort, a C++ program's uncaught exception, the
 * program's own abort; preload/abort.c), whichever comes first. */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "output.h"

struct breach_rec {
	const char *var;
	uint64_t refused;     /* allocations refused (atomic) */
	uint64_t first_request;
	int64_t first_heap;   /* -1 if not measured */
};
static struct breach_rec rec[3] = {
	{ "MEMLIMITS_GLOBAL_MEMORY", 0, 0, -1 },
	{ "MEMLIMITS_ALLOCATIONS", 0, 0, -1 },
	{ "MEMLIMITS_THREAD_ALLOCATIONS", 0, 0, -1 },
};

static int rec_index(enum mli_breach which)
{
	return which == MLI_BREACH_GLOBAL ? 0 : which == MLI_BREACH_ALLOC ? 1 : 2;
}

static int64_t limit_of(int i)
{
	const struct mli_config *c = &mli_eng.cfg;
	return i == 0 ? c->global_memory : i == 1 ? c->allocations
						  : c->thread_allocations;
}

void mli_die(const char *msg)
{
	mli_write_all(2, msg, strlen(msg));
	mli_write_all(2, "\n", 1);
	_exit(125);
}

void mli_report_breach(enum mli_breach which, size_t n, int64_t live)
{
	int i = rec_index(which);
	struct breach_rec *r = &rec[i];
	if (__atomic_fetch_add(&r->refused, 1, __ATOMIC_RELAXED) == 0) {
		r->first_request = n;
		r->first_heap = live;
		char b[320];
		struct mli_buf m = { b, 0, sizeof b };
		mli_buf_str(&m, "memlimits: ");
		mli_buf_str(&m, r->var);
		mli_buf_str(&m, "=");
		mli_buf_size(&m, (uint64_t)limit_of(i));
		mli_buf_str(&m, i == 0 ? " reached (heap " : " exhausted (");
		if (i == 0) {
			mli_buf_size(&m, (uint64_t)live);
			mli_buf_str(&m, ")");
		} else
			mli_buf_str(&m, i == 1 ? "process" : "thread");
		mli_buf_str(&m, i == 0 ? "" : " budget)");
		mli_buf_str(&m, ": an allocation of ");
		mli_buf_u64(&m, n);
		mli_buf_str(&m, mli_eng.cfg.on_limit == MLI_ON_LIMIT_ABORT
					? " bytes failed; aborting\n"
					: " bytes failed with ENOMEM\n");
		mli_write_all(2, m.p, m.len);
		/* Who held the heap at the breach. */
		mli_profile_write("breach");
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
	for (int i = 0; i < 3; i++) {
		rec[i].refused = 0;
		rec[i].first_request = 0;
		rec[i].first_heap = -1;
	}
	report_state = 0;
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
	int64_t live = measure ? mli_live_heap(NULL) : 0;
	kv(m, json, "peak_heap_bytes", measure ? mli_peak_heap() : 0, measure, false);
	kv(m, json, "live_heap_bytes", live, measure, false);
	kv(m, json, "allocated_bytes", measure ? (int64_t)mli_total_allocated() : 0,
	   measure, false);
	/* jemalloc's statistics take jemalloc's locks, which an abort() from
	 * jemalloc itself (a corrupted heap) may hold: not at abort. */
	bool at_exit = strcmp(ended_by, "exit") == 0;
	kv(m, json, "allocations", at_exit ? (int64_t)mli_be_nrequests() : 0, at_exit,
	   false);
	kv(m, json, "global_memory_limit", limit_of(0), true, false);
	kv(m, json, "allocations_limit", limit_of(1), true, false);
	kv(m, json, "thread_allocations_limit", limit_of(2), true, !json);
	if (json)
		mli_buf_str(m, "\"breaches\": [");
	bool first = true;
	for (int i = 0; i < 3; i++) {
		uint64_t refused = __atomic_load_n(&rec[i].refused, __ATOMIC_RELAXED);
		if (!refused)
			continue;
		if (json) {
			mli_buf_str(m, first ? "{\"limit\": \"" : ", {\"limit\": \"");
			mli_buf_str(m, rec[i].var);
			mli_buf_str(m, "\", ");
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
		kv(m, json, "heap_bytes_at_first_refusal", rec[i].first_heap,
		   rec[i].first_heap >= 0, true);
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

static bool claim(void)
{
	int expect = 0;
	if (!__atomic_compare_exchange_n(&report_state, &expect, 1, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return false;
	report_tid = tid();
	return true;
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
		mli_write_all(2, m.p, m.len);
	__atomic_store_n(&report_state, 2, __ATOMIC_RELEASE);
}

void mli_report_exit(void)
{
	if (claim())
		emit("exit", true);
}

void mli_report_abort(bool measure)
{
	if (!mli_eng.cfg.report[0])
		return;
	if (claim()) {
		emit("abort", measure);
		return;
	}
	/* Written, or being written: by this thread (abort() from inside the
	 * writer: a crash there, or a signal handler) then go on, else give
	 * the other thread a moment to finish before the process dies. */
	if (__atomic_load_n(&report_tid, __ATOMIC_RELAXED) == tid())
		return;
	struct timespec ms = { 0, 1000000 };
	for (int i = 0; i < 2000 &&
			__atomic_load_n(&report_state, __ATOMIC_ACQUIRE) == 1;
	     i++)
		nanosleep(&ms, NULL);
}
