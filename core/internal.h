/* internal.h: what the engine's files share. Nothing here is public; the
 * public contract is shim/memlimits.h. Prototypes are grouped by the file
 * that defines them. Everything is built with -fvisibility=hidden. */
#ifndef MLI_INTERNAL_H
#define MLI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "../shim/memlimits.h"
#include "backend.h" /* mli_be_tick_owed, read by the quick refill */

#define mli_likely(x) __builtin_expect(!!(x), 1)
#define mli_unlikely(x) __builtin_expect(!!(x), 0)
#define MLI_NOINLINE __attribute__((noinline))

/* Race detectors that do not understand C11 atomics (helgrind, drd) are
 * told about the engine's synchronisation when built with MLI_HELGRIND
 * (make test-sanitize does); otherwise these cost nothing. */
#ifdef MLI_HELGRIND
#include <valgrind/helgrind.h>
#define MLI_ANNOTATE_LOCKED(l) ANNOTATE_RWLOCK_ACQUIRED(l, 1)
#define MLI_ANNOTATE_UNLOCKING(l) ANNOTATE_RWLOCK_RELEASED(l, 1)
/* A variable only ever accessed with atomics. */
#define MLI_ANNOTATE_ATOMIC(p) VALGRIND_HG_DISABLE_CHECKING(p, sizeof *(p))
#else
#define MLI_ANNOTATE_LOCKED(l) ((void)0)
#define MLI_ANNOTATE_UNLOCKING(l) ((void)0)
#define MLI_ANNOTATE_ATOMIC(p) ((void)0)
#endif

/* A spin lock for the engine's slow paths: no futex, no allocation, safe to
 * take before libc is initialised. */
void mli_spin_lock(int *l);
static inline void mli_spin_unlock(int *l)
{
	MLI_ANNOTATE_UNLOCKING(l);
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

static inline uint64_t mli_min(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* CLOCK_MONOTONIC in nanoseconds, never 0. */
static inline uint64_t mli_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + 1;
}

/* Rate limiting across threads: true for one caller at `now` if `gap` ns
 * passed since the last caller that got true (*last: that caller's now). */
static inline bool mli_take_turn(uint64_t *last, uint64_t now, uint64_t gap)
{
	uint64_t l = __atomic_load_n(last, __ATOMIC_RELAXED);
	return (!l || now - l >= gap) &&
	       __atomic_compare_exchange_n(last, &l, now, false, __ATOMIC_RELAXED,
					   __ATOMIC_RELAXED);
}

/* ---- core/config.c: the MEMLIMITS_* environment ---------------------- */
enum mli_on_limit { MLI_ON_LIMIT_FAIL, MLI_ON_LIMIT_ABORT };

struct mli_config {
	int64_t global_memory;      /* bytes, -1 = not set */
	uint32_t global_ppm;        /* given as a percentage (millionths), or 0 */
	int64_t soft_memory;        /* MEMLIMITS_SOFT_MEMORY, bytes, -1 = not set */
	uint32_t soft_ppm;
	int64_t sysmem;             /* what percentages were of, if any */
	const char *sysmem_source;  /* "the cgroup's memory.max", ... */
	int64_t allocations;        /* bytes, -1 = not set */
	int64_t thread_allocations; /* bytes, -1 = not set */
	enum mli_on_limit on_limit;
	char report[512];           /* "" = none, "stderr", or a path */
	char profile[512];          /* MEMLIMITS_PROFILE, "" = none */
	char tree[512];             /* MEMLIMITS_TREE, "" = none */
	int limit_status;           /* MEMLIMITS_LIMIT_STATUS, 0 = none */
	int limit_status_pid;       /* only in this process, 0 = any */
	int fired_pid;              /* MLI_FIRED_VAR: a limit fired in this
				     * process before its last exec (exec.c) */
	uint64_t sample_interval;   /* MEMLIMITS_SAMPLE_INTERVAL, 0 = not set */
	uint64_t seed;              /* MEMLIMITS_SEED */
	bool seed_set;
};

/* The variable an exec passes to the new image of a process in which a
 * limit fired (preload/exec.c): PID, that process's. */
#define MLI_FIRED_VAR "MEMLIMITS_FIRED_IN_PID"
/* The largest size any MEMLIMITS_* size or limit may take. */
#define MLI_SIZE_MAX ((uint64_t)INT64_MAX)

/* 0 on success; -1 malformed; -2 out of range (> MLI_SIZE_MAX). */
int mli_parse_size(const char *s, uint64_t *out);
/* A memory limit: a size, a percentage ("90%": *ppm millionths, *bytes 0
 * until resolved) or none ("max", "unlimited", "off": *bytes -1). */
int mli_parse_memory(const char *s, int64_t *bytes, uint32_t *ppm);
/* core/sysmem.c: the memory the process may have (its cgroup's limit, else
 * physical memory), -1 if unknown; *source says which. */
int64_t mli_sysmem(const char **source);
/* The machine's physical memory in bytes, -1 if unknown (a system call). */
int64_t mli_phys_mem(void);
/* The same, from a /proc/self/cgroup-like file and a cgroup mount root. */
int64_t mli_sysmem_at(const char *proc_cgroup, const char *root,
		      const char **source);
/* Reads every MEMLIMITS_* entry of envp into *c. Returns 0, or -1 with a
 * one-line message naming the variable in err. Never allocates. */
int mli_config_read(char *const *envp, struct mli_config *c, char *err,
		    size_t errlen);

/* ---- core/fmt.c: formatting without stdio or allocation --------------- */
struct mli_buf {
	char *p;
	size_t len, cap;
};
void mli_buf_str(struct mli_buf *b, const char *s);
void mli_buf_u64(struct mli_buf *b, uint64_t v);
void mli_buf_i64(struct mli_buf *b, int64_t v);
void mli_buf_size(struct mli_buf *b, uint64_t v); /* "64.0 MiB" style */
void mli_write_all(int fd, const char *p, size_t n);

/* ---- core/say.c: where the library's messages go ---------------------- */
/* Records the stderr the process starts with (from the constructor);
 * copy_at_exit: keep a copy of it from the moment exit() begins (a report
 * to stderr). */
void mli_say_start(bool copy_at_exit);
void mli_say_forked(void);
/* Writes a message to that stderr, or nowhere if it cannot be reached. */
void mli_say(const char *p, size_t n);

/* ---- core/thread.c: per-thread state and the registry of threads ------ */
struct mli_scope;

enum mli_thread_state { MLI_T_NEW = 0, MLI_T_LIVE, MLI_T_DEAD };

/* One per thread, in initial-exec TLS: zero-initialised, so a thread's first
 * allocation finds left == 0 and falls into the slow path, which sets it up
 * (no "initialised?" test on the fast path).
 *
 * The thread's exact count of requested bytes is
 *     count + (grant - left) - refund
 * (mli_thread_count): the fast path only takes from `left`; the slow path
 * folds what it took into `count`. `refund` holds bytes taken from `left`
 * and then given back where giving them back to `left` was not safe (see
 * mli_give_back). Words a signal handler of the thread may change (left,
 * grant, refund) are only ever changed by single instructions or inside the
 * engine's recursion guard. */
#define MLI_MASK_FRAMES 8
#define MLI_SCOPE_SLOTS 16
struct mli_thread {
	uint64_t left;   /* hot: bytes the fast path may still hand out */
	uint64_t grant;  /* value of left at the last refill */
	uint64_t refund; /* taken from left, not used: folded out of the count */
	uint64_t count;  /* requested bytes allocated, up to the last fold */
	uint8_t state;   /* enum mli_thread_state */
	uint8_t in_engine;    /* recursion guard for the slow path */
	uint8_t exiting;      /* thread-exit destructor ran once */
	uint8_t poked;        /* asked to look again while in the engine */
	/* Holds the mapped-memory account's lock (preload/mmap.c): no call
	 * into the allocator that takes its locks (statistics, purges), for a
	 * signal handler of a thread inside the allocator may be waiting for
	 * the account's lock (the lock order is the allocator's locks, then
	 * the account's). */
	uint8_t in_acct;
	uint8_t initialising; /* this thread runs mli_engine_init */
	uint8_t callout;      /* depth of invisible callouts (callout.c) */
	uint8_t soft_running; /* running memory-pressure callbacks (soft.c) */
	uint8_t resizing;     /* inside the backend's realloc (memory.c) */
	uint16_t soft_pending; /* thresholds crossed, callbacks to run */
	uint32_t soft_gen[16]; /* the registration each one crossed (soft.c) */
	uint8_t tracker;      /* of which the profiler's (callout.c) */
	uint32_t mask_depth;
	uint32_t limits_gen;  /* mli_eng.limits_gen at the last refill */
	/* limits_gen + 1 if the thread's next slow path may be a plain
	 * refill (no meter on, nothing to publish), else 0; mem_gen the same
	 * for the memory lane (no meter but MEMLIMITS_GLOBAL_MEMORY's: see
	 * mli_mem_quick). */
	uint32_t quick_gen, mem_gen;
	/* The memory lane far from MEMLIMITS_GLOBAL_MEMORY: plain refills
	 * (quick_gen) of far_grant left before the lane looks again. */
	uint32_t far_left;
	uint64_t far_grant;
	/* The task meter (task.c). */
	uint32_t nfired;  /* scopes on the stack whose limit fired */
	uint32_t ntoken;  /* token scopes on the stack */
	uint32_t nglobal; /* global-memory scopes on the stack */
	struct mli_scope *top; /* innermost task scope */
	uint32_t depth;        /* scopes on the list */
	/* The scopes at depths 1 to MLI_SCOPE_SLOTS: ml_leave_all knows a
	 * scope is on the list without reading the scopes inside it. */
	struct mli_scope *at_depth[MLI_SCOPE_SLOTS];
	/* The budget meters (budget.c). */
	uint64_t proc_held;    /* reserved from the process budget, unused */
	uint64_t grace;        /* bytes allowed past an exhausted budget */
	uint32_t graces;       /* grace allowances given (thread budget) */
	uint64_t breach_count; /* allocations refused in this thread */
	uint64_t headroom;     /* bytes no limit could refuse, from the last refill */
	/* The memory measure (memory.c). */
	const uint64_t *be_alloc, *be_dealloc; /* backend's usable-byte counters */
	int64_t pub;           /* this thread's live bytes as published (atomic) */
	int64_t pending;       /* a big block admitted, not yet published (atomic) */
	uint64_t unused_mark;  /* *be_dealloc at the last mli_mem_keep_down look */
	uint64_t freed_seen;   /* *be_dealloc last added to mli_freed_all */
	uint64_t freed_poked;  /* *be_dealloc when frees last cut the grant */
	int64_t cache_high;    /* highest live bytes since the allocator's
				* cache was emptied (memory.c, cache_check) */
	int64_t cache_low;     /* live bytes at that flush */
	bool cache_flushed;    /* since then, not grown back by a share */
	uint8_t cache_shift;   /* the share doubled this often (at most 2) */
	uint64_t look_alloc, look_charged; /* *be_alloc and the count at the
					    * last look (memory.c) */
	uint64_t graced;       /* mapped bytes admitted by mli_start_grace */
	uint64_t scale_live, scale_count; /* live blocks and count at the last
					   * memory grant (memory.c) */
	struct mli_thread *next, *prev;        /* registry, under its lock */
	uint64_t id;
	/* The sampler (prof.c). */
	uint64_t sample_left;     /* bytes before the next sampled byte */
	uint64_t pending_samples; /* of the allocation being admitted */
	uint64_t rng;
	uint32_t prof_gen;        /* mli_prof.gen that sample_left belongs to */
	/* The stack pointer of the code that took each of the first
	 * MLI_MASK_FRAMES masks of mask_depth (mli_mask): a longjmp that
	 * discards that frame undoes the mask (task.c, mli_scopes_discarded). */
	uintptr_t mask_sp[MLI_MASK_FRAMES];
	/* The depth of the innermost task running (task.c: its scope cannot
	 * be dropped from inside it). */
	uint32_t task_depth;
};

extern __thread struct mli_thread mli_tls
	__attribute__((tls_model("initial-exec")));

/* The recursion guard. The signal fences keep the compiler from moving the
 * engine's loads and stores of the thread's state out of the guarded
 * region, where a signal handler that allocates would see or overwrite
 * them half-done. */
static inline void mli_engine_enter(struct mli_thread *t)
{
	t->in_engine = 1;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
}
static inline void mli_engine_leave(struct mli_thread *t)
{
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	t->in_engine = 0;
}

/* A mask taken by code whose stack pointer is sp (ml_mask, a masked
 * callout): one more level of mask_depth, with its position. */
static inline void mli_mask(struct mli_thread *t, uintptr_t sp)
{
	uint32_t d = t->mask_depth;
	if (d < MLI_MASK_FRAMES)
		t->mask_sp[d] = sp;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	t->mask_depth = d + 1;
}

void mli_thread_attach(struct mli_thread *t);
void mli_thread_init_once(void); /* atfork handlers */
/* pthread_atfork, but never unregistered (thread.c: glibc unregisters a
 * library's handlers at its exit, under a fork of another thread). */
void mli_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
uint64_t mli_thread_count(const struct mli_thread *t); /* exact, requested */
extern uint32_t mli_reg_n;       /* registered threads (atomic) */
static inline uint32_t mli_thread_n(void)
{
	return __atomic_load_n(&mli_reg_n, __ATOMIC_RELAXED);
}
uint64_t mli_total_allocated(void); /* requested bytes, all threads ever */
/* Calls fn for every registered thread, under the registry's lock (which
 * marks the caller as in the engine), unless *gen moved from `seen` while
 * waiting for the lock (another caller just did the same walk); then
 * increments *gen. */
void mli_for_each_thread_if(void (*fn)(struct mli_thread *t, void *arg),
			    void *arg, uint64_t *gen, uint64_t seen);

/* Admissions of blocks this big note the memory's peak themselves
 * (memory.c); smaller ones are within the publication's quantum of it. */
#define MLI_PEAK_NOTE ((uint64_t)16 << 10)

/* ---- core/engine.c: global state, start-up, the slow path ------------- */
struct mli_engine {
	struct mli_config cfg;
	/* MEMLIMITS_GLOBAL_MEMORY: the operator's hard cap on the process's
	 * memory, -1 = none. No API call changes it. */
	int64_t mem_cap;
	/* ml_set_global_memory_limit: the limit ml_limit_global_memory tasks
	 * are interrupted at, -1 = none; they use the tighter of it and
	 * mem_cap (mli_task_mem_limit). */
	int64_t task_limit;
	/* Changes whenever a process-wide limit changes: a thread's headroom
	 * (room no limit could refuse) is valid only for the generation it was
	 * computed in. */
	uint32_t limits_gen;
	unsigned meters;           /* process-wide meters on (MLI_METER_BIT) */
	/* Memory limits in force (the cap, global-memory scopes): while there
	 * are none, threads publish their memory only from the backend's
	 * activity callback, not at every slow path. */
	uint32_t mem_users;
	bool started;              /* ml_start() or configured by the environment */
	uint32_t breached;         /* bit per env limit, message written once */
};
extern struct mli_engine mli_eng;

void mli_engine_init(void); /* idempotent, safe before constructors */
/* The slow path of every allocating entry point. The fast path already took
 * n off t->left, it wrapped and was undone. Returns MLI_REFUSE if the allocation must
 * fail with ENOMEM, MLI_ADMIT if it may proceed (it is then counted), and
 * MLI_SAMPLE if it may and the profiler sampled it: the caller then gets its
 * block from mli_prof_alloc. */
enum { MLI_REFUSE = 0, MLI_ADMIT = 1, MLI_SAMPLE = 2 };
MLI_NOINLINE int mli_admit_slow(size_t n);
/* The same for n requested bytes whose block makes the heap grow by `grow`
 * (a realloc: the new block's size less the old one's), with the fast
 * path's subtraction still to do. */
int mli_admit_resize(size_t n, size_t grow);
/* Memory mapped outside malloc (the mmap family): may `bytes` more be
 * counted? Only the meters of the process's memory take part. */
bool mli_admit_mapped(uint64_t bytes);
/* May a new thread start (pthread_create), the memory not being at a hard
 * limit? Charges nothing; a refusal is reported as a breach. */
bool mli_thread_may_start(void);
/* The request of a refused thread start, as mli_report_breach sees it. */
#define MLI_REQ_THREAD ((size_t)-1)
/* May this process fork a child that inherits `child` bytes of its memory,
 * the tree's limit not being reached (after mli_tree_fork_begin, which
 * reserved the child's slot: the bytes go there)? A refusal is reported
 * as a breach (its request MLI_REQ_FORK, its block the child's bytes). */
bool mli_fork_may_start(uint64_t child);
#define MLI_REQ_FORK ((size_t)-2)
/* Recompute t->left after the thread's limits changed (scope entered or left,
 * unmask). */
void mli_refill(struct mli_thread *t);
/* Sends this thread's next allocation to the slow path (a token set, a
 * limit changed): safe from a signal handler of this thread. */
void mli_poke(struct mli_thread *t);
/* May an allocation of at most n bytes skip admission, because no limit
 * could refuse it (the room left since the last refill covers it, no
 * process-wide limit changed since, and no token or sampler needs to see
 * it)? It is then charged afterwards with mli_charge_after. */
static inline bool mli_within_headroom(uint64_t n)
{
	const struct mli_thread *t = &mli_tls;
	uint64_t used = t->grant - t->left;
	return t->state == MLI_T_LIVE &&
	       t->limits_gen == __atomic_load_n(&mli_eng.limits_gen,
						__ATOMIC_RELAXED) &&
	       used <= t->headroom && n <= t->headroom - used;
}
void mli_charge_after(uint64_t n);
/* Gives back n bytes charged by a slow-path admission whose allocation then
 * failed in the allocator. */
void mli_uncharge(size_t n);
/* Checks the thread's task limits as an allocation of 0 bytes would (poll),
 * marking the scopes that fire, and refills. */
void mli_check_now(struct mli_thread *t);
/* Registers the calling thread now (new threads, from the pthread_create
 * wrapper, so that threads that only free are counted too). */
void mli_thread_start(void);
/* The thread is exiting: its meters give back what they hold. */
void mli_thread_retire(struct mli_thread *t);
/* The limit global-memory tasks are interrupted at: the tighter of the
 * API's and the environment's, -1 if neither. */
int64_t mli_task_mem_limit(void);
/* The lowest memory limit in force on this process: the cap, the tasks',
 * the tree's; -1 for none (memory.c). */
int64_t mli_mem_lowest_limit(void);
void mli_budget_init(void); /* budget.c, from mli_engine_init */
struct mli_budget;
void mli_budget_use(struct mli_budget *b); /* MEMLIMITS_ALLOCATIONS' pool */
/* A tree's budget across fork, exit and exec (budget.c): the forked child
 * does not keep its parent's reservations, an exiting or exec'ing process
 * gives its thread's back. */
void mli_budget_fork_child(struct mli_thread *t);
void mli_budget_forget(struct mli_thread *t); /* a parent's thread, in a child */
void mli_budget_exit(struct mli_thread *t); /* exit and exec */
/* report.c: how the refused call fails if not with ENOMEM (" with ENOSPC\n"),
 * for the breach line; set around the admission by the caller. */
extern __thread const char *mli_refusal_errno;
/* report.c: the size a resize asked for, set around its admission, so that
 * a breach line names it and not only the growth the limits decided on. */
extern __thread size_t mli_refusal_resize;
/* report.c: around the library's exit handlers' work (the report, the
 * profile), which the last handler waits for when threads exit at once. */
void mli_exit_wait_others(void); /* from _exit: other threads' exit work */
void mli_exit_abort(void); /* from abort: the same, and holds back work to come */
void mli_exit_abort_left(void); /* a longjmp: an abort of this thread is over */
void mli_exit_work_begin(void);
void mli_exit_work_end(void);

/* The fast path: takes n off the thread's grant; false if that wrapped
 * or left nothing, undone at once (the caller then goes to the slow path).
 * Strictly more than n must be left: a grant cut to 0 (an interrupted
 * task, a limit near) then stops a zero-byte request too, which takes a
 * block like any other (4,000,000 malloc(0) went through an 8 MiB cap). On x86-64 one
 * read-modify-write instruction, so that a signal handler of this thread
 * (which may cut the grant, see mli_poke) never lands between the load and
 * the store. The undo comes next: a handler that lands between the two
 * finds the grant wrapped, huge, and takes the fast path itself (the slow
 * path's unwrap, the meters' folds). It came after the slow path's first
 * checks, dozens of instructions later, and a handler on a 30 us timer
 * landed there 50 to 800 times a second (test_prof's handler_slip). */
static inline bool mli_admit_fast(size_t n)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MLI_PORTABLE_MALLOC)
	bool ok; /* taken before the undo's add changes the flags */
	__asm__ volatile("movq mli_tls@gottpoff(%%rip), %%rax\n\t"
			 "subq %1, %%fs:(%%rax)\n\t"
			 "seta %0\n\t"
			 "ja 1f\n\t"
			 "addq %1, %%fs:(%%rax)\n"
			 "1:"
			 : "=&q"(ok)
			 : "r"(n)
			 : "rax", "cc", "memory");
	return ok;
#else
	/* An atomic read-modify-write of a thread-local word: one instruction
	 * or a restartable LL/SC loop, so a signal handler sees either side. */
	if (mli_likely(__atomic_fetch_sub(&mli_tls.left, n, __ATOMIC_RELAXED) > n))
		return true;
	__atomic_fetch_add(&mli_tls.left, n, __ATOMIC_RELAXED);
	return false;
#endif
}

/* t->field += v for a field of the calling thread's block, in one
 * instruction (or an atomic), so that a signal handler's update of the same
 * word (its allocation re-entering the slow path counts itself) is never
 * lost in the middle of a load and a store. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MLI_PORTABLE_MALLOC)
#define MLI_TLS_ADD(field, v)                                                 \
	__asm__ volatile("movq mli_tls@gottpoff(%%rip), %%rdx\n\t"            \
			 "addq %0, %%fs:%c1(%%rdx)"                            \
			 :                                                     \
			 : "r"((uint64_t)(v)),                                 \
			   "i"(__builtin_offsetof(struct mli_thread, field))   \
			 : "rdx", "cc", "memory")
#else
#define MLI_TLS_ADD(field, v)                                                 \
	((void)__atomic_fetch_add(&mli_tls.field, (uint64_t)(v), __ATOMIC_RELAXED))
#endif

/* Gives back n bytes taken from the grant, `after` being what `left` was
 * right after taking them. If `left` moved since (a signal handler cut the
 * grant to send the thread to the slow path, or allocated), putting the
 * bytes back into `left` could undo that cut; they go to `refund` instead,
 * which the next slow path folds out of the count. Each step is one
 * instruction, so a signal handler of this thread sees either state. */
static inline void mli_give_back(uint64_t n, uint64_t after)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MLI_PORTABLE_MALLOC)
	_Static_assert(__builtin_offsetof(struct mli_thread, refund) == 16,
		       "refund is the third word of the thread block");
	bool done = false;
	if (after != 0) { /* 0 is also what a cut leaves */
		uint64_t expect = after;
		__asm__ volatile("movq mli_tls@gottpoff(%%rip), %%rdx\n\t"
				 "cmpxchgq %2, %%fs:(%%rdx)"
				 : "=@ccz"(done), "+a"(expect)
				 : "r"(after + n)
				 : "rdx", "memory");
	}
	if (!done)
		__asm__ volatile("movq mli_tls@gottpoff(%%rip), %%rdx\n\t"
				 "addq %0, %%fs:16(%%rdx)"
				 :
				 : "r"(n)
				 : "rdx", "cc", "memory");
#else
	uint64_t expect = after;
	if (after == 0 ||
	    !__atomic_compare_exchange_n(&mli_tls.left, &expect, after + n, false,
					 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		__atomic_fetch_add(&mli_tls.refund, n, __ATOMIC_RELAXED);
#endif
}

/* Takes n off the grant like mli_admit_fast, and tells what `left` became
 * (*after), for mli_give_back. If it wrapped or left nothing, it is given
 * back and false returned. */
static inline bool mli_take(size_t n, uint64_t *after)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MLI_PORTABLE_MALLOC)
	uint64_t old = (uint64_t)0 - n;
	__asm__ volatile("movq mli_tls@gottpoff(%%rip), %%rdx\n\t"
			 "xaddq %0, %%fs:(%%rdx)"
			 : "+r"(old)
			 :
			 : "rdx", "cc", "memory");
#else
	uint64_t old = __atomic_fetch_sub(&mli_tls.left, n, __ATOMIC_RELAXED);
#endif
	*after = old - n;
	if (mli_likely(old > n))
		return true;
	mli_give_back(n, *after);
	return false;
}

/* With no meter asking for less, a thread checks in every MLI_GRANT bytes:
 * at most the per-thread slack a memory limit set later, by another
 * thread, allows (memory.c), so that such a limit holds from the moment it
 * is set. */
#define MLI_GRANT ((uint64_t)56 << 10)

/* Reads t->left and leaves 0 in its place, in one instruction that a
 * signal handler of this thread cannot split: an unlocked compare-and-
 * exchange, retried if a handler moved `left` between the read and it
 * (only the thread itself and its handlers ever write `left`, as the fast
 * path's unlocked subtraction already assumes). The locked exchange it
 * replaces drained the store buffer at every refill: 0.5 ns of a 9.7 ns
 * malloc(4096)+free pair (bench-threads, 1 busy thread). */
static inline uint64_t mli_take_left(struct mli_thread *t)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MLI_PORTABLE_MALLOC)
	uint64_t old = __atomic_load_n(&t->left, __ATOMIC_RELAXED);
	bool done;
	do
		__asm__ volatile("cmpxchgq %3, %1"
				 : "=@ccz"(done), "+m"(t->left), "+a"(old)
				 : "r"((uint64_t)0)
				 : "memory");
	while (!done);
	return old;
#else
	return __atomic_exchange_n(&t->left, 0, __ATOMIC_RELAXED);
#endif
}

/* The refund, taken (exchanged) only when there is one: the exchange is a
 * locked instruction on x86, some 9 cycles, and there is almost never one.
 * A refund a signal handler adds after the look stays for the next fold,
 * which is where it would be counted anyway (count + grant - left - refund
 * holds throughout). */
static inline uint64_t mli_take_refund(struct mli_thread *t)
{
	if (mli_likely(!__atomic_load_n(&t->refund, __ATOMIC_RELAXED)))
		return 0;
	return __atomic_exchange_n(&t->refund, 0, __ATOMIC_RELAXED);
}

/* Counts what the fast path handed out since the last refill (grant -
 * left) and n, the request it could not take. Exchanges, so that a signal
 * handler's allocation lands either before or after (in_engine, counted by
 * its own slow path). Inside the engine. */
static inline void mli_quick_fold(struct mli_thread *t, size_t n)
{
	uint64_t left = mli_take_left(t);
	uint64_t refund = mli_take_refund(t);
	MLI_TLS_ADD(count, t->grant - left - refund + n);
}

/* The memory lane (memory.c): MEMLIMITS_GLOBAL_MEMORY's check, or the
 * publication other threads' memory limits need, or a big block's note in
 * the peak, and a refill, without the meters' table. grow: the block's
 * size from MLI_PEAK_NOTE up, else n. False if the full slow path must
 * decide. */
bool mli_mem_quick(struct mli_thread *t, size_t n, size_t grow);
/* A zero-byte request was admitted (memory.c): near a memory limit, the
 * grant is cut so that the next ones decide too. */
void mli_mem_zero_admitted(struct mli_thread *t);
/* A plain refill of the memory lane far from the cap (mli_mem_quick says
 * when), for a request of n bytes: publishes what must be, and returns the
 * grant, or 0 if the memory is no longer far from the cap (the lane must
 * decide). Inside the engine. */
uint64_t mli_mem_far_refill(struct mli_thread *t, size_t n);
/* The slow path after the plain refill did not apply: the memory lane, or
 * the meters. */
MLI_NOINLINE int mli_admit_rest(size_t n);

/* The slow path's common case, inline in the entry points: no meter on and
 * nothing to publish (quick_gen, set by the last regrant, is still valid),
 * so count what was used and regrant. A poke (a token set from a signal
 * handler) meanwhile gets its look. */
static inline bool mli_quick_refill(size_t n)
{
	struct mli_thread *t = &mli_tls;
	uint32_t gen = __atomic_load_n(&mli_eng.limits_gen, __ATOMIC_RELAXED);
	if (mli_unlikely(t->quick_gen != gen + 1 || n >= MLI_PEAK_NOTE ||
			 t->in_engine))
		return false;
	mli_engine_enter(t);
	uint64_t g = MLI_GRANT;
	if (mli_unlikely(t->far_left)) {
		g = mli_mem_far_refill(t, n);
		if (!g) {
			mli_engine_leave(t);
			return false; /* the memory lane decides */
		}
	}
	mli_quick_fold(t, n);
	t->grant = g;
	t->left = g;
	mli_engine_leave(t);
	if (mli_unlikely(t->poked))
		mli_check_now(t);
	if (mli_unlikely(__atomic_load_n(&mli_be_tick_owed, __ATOMIC_RELAXED)))
		mli_be_tick();
	return true; /* no meter, no memory user: nothing for mli_mem_zero_admitted */
}

/* Called on the allocation path: charge n requested bytes (MLI_*). */
static inline int mli_admit(size_t n)
{
	if (mli_likely(mli_admit_fast(n)))
		return MLI_ADMIT;
	return mli_admit_slow(n);
}

/* ---- core/meter.h: the meters (each limit, and the sampler) ----------- */
#include "meter.h"

/* ---- core/memory.c: the process's memory, as the global limit sees it -- */
/* Memory = the malloc heap (the backend's usable bytes, summed over threads,
 * plus sampled blocks, less the engine's own blocks) + memory mapped outside
 * malloc. Each thread publishes its live bytes into one shared sum when they
 * moved by PUB_QUANTUM (from the backend's activity callback, every 64 KiB
 * of its allocation or deallocation) and at its slow path when they grew by
 * PUB_SLACK, so the sum is O(1) to read and within a small bound per thread
 * of the truth; an exact figure walks the threads (one walker at a time). */
int64_t mli_mem_estimate(const struct mli_thread *t); /* O(1) */
int64_t mli_mem_exact(void);     /* walks the threads: not on hot paths */
int64_t mli_heap_exact(void);    /* the malloc heap part of mli_mem_exact */
int64_t mli_mem_peak(void);      /* highest memory seen (every admission) */
void mli_mem_note(int64_t v);    /* a value the memory reached */

/* Publishes t's live bytes: exactly, or (from its slow path) only if they
 * moved enough to matter to other threads' decisions. */
void mli_mem_publish(struct mli_thread *t, bool exact);
/* A big block admitted under a memory limit is reserved in the measure
 * (memory.c: t->pending) until the thread has published it, or given it
 * up (the allocation failed, another meter refused): mli_mem_settle takes
 * the reservation out. */
void mli_mem_settle_slow(struct mli_thread *t);
static inline void mli_mem_settle(struct mli_thread *t)
{
	if (mli_unlikely(__atomic_load_n(&t->pending, __ATOMIC_RELAXED)))
		mli_mem_settle_slow(t);
}
/* The publication rule (memory.c): at PUB_QUANTUM of change either way,
 * or PUB_SLACK of growth at a slow path. */
#define MLI_PUB_QUANTUM ((int64_t)64 << 10)
#define MLI_PUB_SLACK ((int64_t)8 << 10)
void mli_soft_run(struct mli_thread *t); /* core/soft.c, below */
/* After a resize that the activity callback ignored (t->resizing): its
 * net change published by the slow path's rule, in a few instructions
 * when there is nothing to publish. */
static inline void mli_mem_after_resize(struct mli_thread *t)
{
	if (mli_unlikely(!t->be_alloc))
		return;
	int64_t d = (int64_t)(__atomic_load_n(t->be_alloc, __ATOMIC_RELAXED) -
			      __atomic_load_n(t->be_dealloc, __ATOMIC_RELAXED)) -
		    __atomic_load_n(&t->pub, __ATOMIC_RELAXED);
	/* Published exactly: by the slow path's rule it would be anyway, but
	 * that rule reads the figures again, and a walk that published them
	 * in between made it publish nothing and keep the growth's
	 * reservation, counted twice until the thread's next publication (8
	 * MiB over under 20M: tests/progs/big_at_once under load). */
	if (mli_unlikely(d > MLI_PUB_SLACK || d <= -MLI_PUB_QUANTUM))
		mli_mem_publish(t, true);
	else
		mli_mem_settle(t); /* a reserved growth another's walk published */
	if (mli_unlikely(t->soft_pending)) /* held back while it was reserved */
		mli_soft_run(t);
}
/* Would the admission's n bytes take the memory over limit? Asks for the
 * exact figure before saying yes. */
bool mli_mem_over(struct mli_thread *t, struct mli_adm *a, int64_t limit);
/* Lowers the admission's wait and room for a memory limit. */
void mli_mem_bound(struct mli_thread *t, struct mli_adm *a,
		   int64_t limit);
void mli_mem_thread_attach(struct mli_thread *t);
void mli_mem_mapped_add(int64_t delta);
int64_t mli_mem_mapped(void);

/* ---- core/tree.c: one budget for a process tree (MEMLIMITS_TREE) ------- */
int mli_tree_attach(const char *path, char *err, size_t errlen);
void mli_tree_start(void); /* from the constructor: exit and fork hooks */
void mli_tree_exiting(void); /* from _exit: async-signal-safe */
void mli_tree_fork_child(void); /* in a forked child: its own share */
/* Around a fork that runs no atfork handler (_Fork, clone, the system
 * call), in the parent: the child is counted in before it exists. */
struct mli_tree_fork { /* a fork's state, kept by its caller */
	void *slot;
	int32_t mark;
	bool in_call, pre;
};
void mli_tree_fork_begin(struct mli_tree_fork *was);
/* After mli_tree_fork_begin: does a child of `child` bytes fit under the
 * tree's limit? If so they are put in the tree's total and the child's
 * reserved slot; if not, *mem is the tree's memory. exact: this process's
 * exact figure and the dead processes' shares before refusing (inside the
 * engine only: engine.c's mli_fork_may_start). */
bool mli_tree_fork_fits(uint64_t child, int64_t *mem, bool exact);
void mli_tree_fork_end(const struct mli_tree_fork *was, pid_t pid); /* fork's result */
void mli_tree_adopt(pid_t pid);    /* posix_spawn's child, in the parent */
void mli_tree_before_exec(void);   /* a vfork child's exec: its own count */
void mli_tree_abandon(void); /* a configuration error before main */
void mli_tree_fired(void);   /* a limit fired in this process */
bool mli_tree_any_fired(void); /* in any process of the tree */
/* This process found the tree's segment made: an earlier process of the
 * tree started before it (or it is such a process after an exec). */
bool mli_tree_joined(void);
void mli_tree_publish(int64_t process_memory); /* when it moved enough */
int64_t mli_tree_limit(void);   /* -1: none, or not in a tree */
int64_t mli_tree_budget_limit(void); /* the tree's allocation budget, -1: none */
int64_t mli_tree_memory(void);  /* the tree's total, -1 if not in one */
struct mli_budget *mli_tree_budget(void); /* NULL if none */
/* memory.c: the part of a memory limit left to malloc (mapped memory is
 * refused that much below it). */
int64_t mli_map_reserve(int64_t limit);
/* After a big block was refused: may a small one go over the limit, up to
 * 1/32 of it (memory.c)? Arms itself on a big request. */
enum { MLI_ROOM_CAP, MLI_ROOM_TREE };
bool mli_collector_grace(int which, const struct mli_adm *a, int64_t limit,
			 int64_t mem);
/* The room ends once that limit's measure is seen that far under it. */
void mli_collector_done(int which, int64_t limit, int64_t mem);
/* A thread's first MLI_START_GRACE bytes (allocated or mapped) are not
 * refused by a memory limit. A thread started just before the memory
 * reaches a limit (others fill it meanwhile) would fail inside its
 * runtime's start-up: CPython 3.11 maps each thread's 16 KiB frame stack,
 * and its Thread.start() waits for ever for a thread whose bootstrap died
 * of MemoryError before it said it started (8 python threads under 100M
 * hung in 4 runs of 6, even with pthread_create refused at the limit).
 * The overshoot is within the per-thread slack. Mapped bytes admitted so
 * are kept in t->graced (allocated ones are in the backend's counter). */
#define MLI_START_GRACE ((uint64_t)64 << 10)
static inline bool mli_start_grace(struct mli_thread *t,
				   const struct mli_adm *a)
{
	/* In blocks (the backend's counter), not requests: 64 Ki mallocs of
	 * a byte are 1 MiB of 16-byte blocks. And in requests too (the
	 * count): the backend's counter misses the profiler's sampled blocks,
	 * which are not the backend's, and at a high sampling rate a thread's
	 * allocations are all sampled: the grace then never ended (under 50M,
	 * 1024 buffers grown by realloc reached 256 MiB). */
	uint64_t blocks = t->be_alloc ? __atomic_load_n(t->be_alloc, __ATOMIC_RELAXED) : 0;
	uint64_t used = (blocks > t->count ? blocks : t->count) + t->graced;
	if (a->kind == MLI_ADM_POLL || used >= MLI_START_GRACE ||
	    a->grow > MLI_START_GRACE - used)
		return false;
	if (a->kind == MLI_ADM_MAP)
		t->graced += a->grow;
	return true;
}
/* memory.c: under a memory limit, keeps the free memory the allocator
 * holds resident within a quarter of it: looked at every limit/8 (4 to 64
 * MiB) of the thread's own frees, or of the process's (those other threads'
 * activity callbacks added up), from the thread's slow path (the counts
 * are checked here, inline, at every memory grant). */
extern uint64_t mli_freed_all, mli_freed_looked;
void mli_mem_look(struct mli_thread *t, int64_t limit, uint64_t own, uint64_t all);
static inline void mli_mem_keep_down(struct mli_thread *t, int64_t limit)
{
	const int64_t MiB = (int64_t)1 << 20;
	if (!t->be_dealloc || limit <= 0 || t->in_acct)
		return; /* in_acct: the next slow path looks */
	uint64_t own = __atomic_load_n(t->be_dealloc, __ATOMIC_RELAXED);
	uint64_t all = __atomic_load_n(&mli_freed_all, __ATOMIC_RELAXED);
	uint64_t period = (uint64_t)(limit / 8 < 4 * MiB ? 4 * MiB
				     : limit / 8 > 64 * MiB ? 64 * MiB : limit / 8);
	if (mli_unlikely(own - t->unused_mark >= period ||
			 all - __atomic_load_n(&mli_freed_looked, __ATOMIC_RELAXED) >=
				 period))
		mli_mem_look(t, limit, own, all);
}

/* ---- core/report.c: breach messages and the exit report --------------- */
enum mli_breach { MLI_BREACH_GLOBAL = 1, MLI_BREACH_ALLOC = 2,
		  MLI_BREACH_THREAD = 4, MLI_BREACH_TREE = 8 };
/* n: the bytes requested (MLI_REQ_THREAD: a thread's start); block: what
 * the memory would have grown by (said when more than n), 0 for a
 * budget. */
void mli_report_breach(enum mli_breach which, size_t n, size_t block,
		       int64_t live);
void mli_report_exit(void);
void mli_report_startup(void); /* limits given as percentages, resolved */
void mli_report_quick_exit(void); /* from _exit */
/* From an exec of a program the library cannot reach: this image's report. */
void mli_report_unreached_exec(void);
/* MEMLIMITS_SOFT_MEMORY's callback: the warning, the report's record, the
 * profile (FILE.soft). */
void mli_report_soft(int64_t memory, int64_t threshold, void *arg);
void mli_die(const char *msg); /* message to stderr, exit 125 */
bool mli_report_any_breach(void); /* did a MEMLIMITS_* limit refuse? */
/* MEMLIMITS_LIMIT_STATUS: from the constructor, first, so that its exit
 * handler runs after every other. */
void mli_limit_status_start(void);
int mli_limit_status_of(int status); /* async-signal-safe */
/* An exec is about to replace this process: did a limit fire in it that
 * its next image must know of (MLI_FIRED_VAR: its limit status and its
 * report)? */
bool mli_fired_for_exec(void);
/* A limit fired in this process before its last exec (report.c): its
 * report carries the news, its breach profile was that image's. */
bool mli_fired_before_exec(void);

/* ---- core/task.c: task scopes, tokens, masking ------------------------ */
enum mli_scope_kind { MLI_SCOPE_GLOBAL = ML__SCOPE_GLOBAL,
		      MLI_SCOPE_ALLOC = ML__SCOPE_ALLOC,
		      MLI_SCOPE_TOKEN = ML__SCOPE_TOKEN };
/* The engine's record of an entered scope, in the caller's ml_scope. It
 * must fit the 64 bytes of version 1's ml_scope: programs built against
 * that header pass that much (ml_enter_* of today's header passes its
 * size, see enter_sized). */
struct mli_scope {
	uint32_t magic;
	uint8_t kind;
	uint8_t fired; /* ml_status, 0 if not */
	uint32_t mask_at; /* the thread's mask depth at entry */
	uint32_t depth;   /* its place in the thread's list, 1 outermost */
	struct mli_scope *outer;
	struct mli_thread *owner;
	uint64_t start; /* thread count at entry */
	uint64_t limit; /* allocation scopes; a token scope's expected word */
	const struct ml_token *token;
	const uint64_t *token_word; /* token scopes: the token's slot word */
};
/* core/exe.c: true if the program maps its memory itself, by system calls
 * the library cannot see (why: the reason, for a message). */
bool mli_exe_unreachable(char *why, size_t n);
/* Why the program in file fd would run without the library (the loader
 * does not apply LD_PRELOAD to it: statically linked, set-user-ID or
 * set-group-ID to another id, another ELF class), as "is ...", or NULL.
 * System calls only (an exec may come from a vfork child). */
const char *mli_exe_unreached_file(int fd);
/* The library's one exported entry (see shim/memlimits.h). */
const struct ml_api *ml_engine(uint32_t abi_version);
/* What a longjmp discards: the stack in [lo, hi), and [alo, ahi) (the
 * signal stack it jumps off, or empty): the scopes and masks there go. */
struct mli_discard {
	uintptr_t lo, hi, alo, ahi;
};
void mli_scopes_discarded(const struct mli_discard *d);
/* Where a mask or a scope belongs: its caller's stack pointer (x86-64,
 * with the frame pointer __builtin_frame_address gives: the saved frame
 * pointer and the return address lie between). */
#define MLI_CALLER_SP() ((uintptr_t)__builtin_frame_address(0) + 2 * sizeof(void *))

/* ---- core/token.c: tokens in type-stable storage ------------------------ */
void mli_token_init_once(void); /* atfork handlers */
void mli_soft_init_once(void); /* atfork handlers (soft.c) */
ml_token *mli_token_create(void);
bool mli_token_valid(const ml_token *t);  /* created and not destroyed */
bool mli_token_is_set(const ml_token *t); /* async-signal-safe */
/* The slot word of a live token, and the value it has once set (so that a
 * scope checks its token with one load and compare), or NULL. */
const uint64_t *mli_token_word(const ml_token *t, uint64_t *set_value);
void mli_token_set(ml_token *t);          /* async-signal-safe */
void mli_token_destroy(ml_token *t);

/* ---- core/soft.c: memory pressure (soft limits with callbacks) --------- */
void mli_soft_init(void);
/* Runs the callbacks of thresholds this thread crossed, if it may (not in
 * the engine, not already in one). */
void mli_soft_run(struct mli_thread *t);
ml_status mli_soft_watch(int64_t threshold, ml_pressure_fn fn, void *arg);
uint64_t mli_soft_crossings(ml_pressure_fn fn, void *arg);
int64_t mli_soft_lowest(void); /* the next threshold to cross, INT64_MAX: none */
/* For callers that hold a lock of their own across an admission (the mmap
 * interposers): what the slow path would run after it, run once the lock
 * is released. */
static inline void mli_after_call(void)
{
	if (mli_unlikely(mli_tls.soft_pending))
		mli_soft_run(&mli_tls);
}

/* ---- core/callout.c: user code called from the allocation path --------- */
/* The one way the engine calls code that is not its own from an allocating
 * thread (the profiler's tracker, a memory-pressure callback): never inside
 * the engine or under one of its locks; the thread's grant is cut so that
 * its allocations come to the slow path, which, per mode, admits them
 * without counting or refusing them (MLI_CALLOUT_INVISIBLE: the library's
 * own needs on the way to a refusal), the same but refused at the hard cap
 * of MEMLIMITS_GLOBAL_MEMORY (MLI_CALLOUT_TRACKER: the profiler's tracker,
 * which must change nothing the tasks see, but whose tables are the
 * process's memory), or counts them but lets no task limit refuse them
 * (MLI_CALLOUT_MASKED). */
enum { MLI_CALLOUT_INVISIBLE = 1, MLI_CALLOUT_MASKED = 2,
       MLI_CALLOUT_TRACKER = 3 };
void mli_callout_begin(struct mli_thread *t, int mode);
void mli_callout_end(struct mli_thread *t, int mode);

/* ---- core/prof.c: the sampling profiler ------------------------------- */
/* The profiler's record of a sampled block, kept by the backend with it. */
struct mli_sampled {
	void *cookie;
	uint64_t nsamples;
	uint32_t gen;
	uint8_t tracked;
};
struct mli_prof {
	int running;          /* 0, 1, or 2 while starting (atomic) */
	uint32_t gen;         /* changes at every start and stop (atomic) */
	int inflight;         /* callbacks running (atomic) */
	bool enabled;         /* enabled at start-up: free() tracks */
	double rate, log1m;
	size_t depth;
	ml_tracker tracker;
	uint64_t interval;    /* MEMLIMITS_SAMPLE_INTERVAL or the default */
	uint64_t seed;
};
extern struct mli_prof mli_prof;
void mli_prof_init(void);   /* from mli_engine_init: configuration only */
void *mli_prof_alloc(size_t n, size_t align, bool zero);
void mli_prof_sampled(void *p, size_t n, uint64_t nsamples,
		      struct mli_sampled *rec);
void mli_prof_freed(void *p); /* a sampled block is being freed */
void mli_prof_resampled(void *p, size_t n); /* grew in place, sampled */
ml_status mli_prof_start(double rate, size_t depth, const ml_tracker *tr);
ml_status mli_prof_stop(void);

/* ---- core/unwind.c: call stacks for the profiler ----------------------- */
/* Return addresses of the caller's stack, innermost first (glibc
 * backtrace()'s contract, at a fraction of its cost). */
int mli_unwind(void **buf, int size);

/* ---- core/profile.c: MEMLIMITS_PROFILE, the profile file ---------------- */
void mli_profile_start_env(void);
void mli_profile_write(const char *why); /* at exit, or when a limit fires */
void mli_profile_exit(void); /* exit()'s profile, once */

/* ---- core/backend.h (implemented in preload/): what the engine needs from
 * the allocator; core/region.h: where sampled blocks live. */
#include "backend.h"
#include "region.h"

#endif
