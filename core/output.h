/* output.h: the files the library writes (core/output.c), and the rules
 * for its locks (at the top of core/output.c). */
#ifndef MLI_OUTPUT_H
#define MLI_OUTPUT_H
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "internal.h"

enum mli_output { MLI_OUT_REPORT, MLI_OUT_PROFILE, MLI_OUT_N };

/* From the engine's constructor, before anything is written: checks that
 * every file the outputs will write can be written (else mli_die, exit
 * 125, naming the variable and the reason), resolves relative paths, and
 * decides whether this process writes the names as given (see output.c). */
void mli_output_init(void);

/* One output file being written. Opening disables cancellation (and blocks
 * SIGPIPE for a pipe or device) until mli_file_close, which says on stderr
 * what went wrong, naming the variable, the file and the errno. */
struct mli_file {
	int fd;
	int err;            /* first error, an errno; 0 if none */
	int cancel_state;
	bool pipe_like;     /* a FIFO or device: only SIGPIPE blocked around the
			     * writes; for a file every signal, open to close */
	bool sigpipe_pending_before;
	sigset_t old_mask;
	enum mli_output which;
	char name[4096];
};
/* Opens the output's file for this process, with `suffix` appended to its
 * name. False (and a message on stderr) if it cannot be written. */
bool mli_file_open(struct mli_file *f, enum mli_output which, const char *suffix);
void mli_file_write(struct mli_file *f, const char *p, size_t n);
/* Closes; false (and a message on stderr) if anything failed. */
bool mli_file_close(struct mli_file *f);

/* This process's /proc file NAME ("maps", "cmdline", "exe"), opened
 * read-only, or the path of it: /proc/thread-self/NAME, else (before Linux
 * 3.17) /proc/self/NAME. Once the main thread has ended (pthread_exit),
 * /proc/self's maps and cmdline read as empty: a profile with no mappings
 * and a report with "command": [] (a held-out check). */
int mli_proc_open(const char *name);
const char *mli_proc_path(const char *name, char *buf, size_t n);

/* The process as a JSON object's members: "pid": N, "ppid": N, "command":
 * [...] (from /proc/self/cmdline; no allocation). */
void mli_buf_process_json(struct mli_buf *b);
/* "ENOSPC (No space left on device)": strerror without stdio or locale. */
void mli_buf_errno(struct mli_buf *b, int e);
/* A string as JSON, quotes included; invalid UTF-8 becomes U+FFFD. */
void mli_buf_json_str(struct mli_buf *b, const char *s, size_t n);

/* ---- report.c --------------------------------------------------------- */
/* The report on the way to abort() (MEMLIMITS_ON_LIMIT=abort, an uncaught
 * C++ exception, the program's own abort): written once per process, from
 * any context; `measure` false when the caller may hold the registry's lock
 * (the heap figures are then left out). */
void mli_report_abort(bool measure);
/* That report stands: the process ends now. Until this is called, a
 * process that went on after it (its SIGABRT handler jumped back) writes
 * its report again at its real end. */
void mli_report_abort_final(void);
void mli_report_fork_child(void);

/* ---- profile.c -------------------------------------------------------- */
/* The profile's own blocks: from the allocator directly (not the program's
 * memory), with signals blocked (see profile.c). */
void *mli_profile_malloc(size_t n);
void mli_profile_free(void *p);
void mli_profile_fork_prepare(void);
void mli_profile_fork_parent(void);
void mli_profile_fork_child(void);

/* ---- prof.c, unwind.c ------------------------------------------------- */
void mli_prof_fork_child(void);
void mli_unwind_start(void);
void mli_unwind_fork_prepare(void);
void mli_unwind_fork_parent(void);
void mli_unwind_fork_child(void);

#endif
