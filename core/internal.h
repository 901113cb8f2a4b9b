/* internal.h: what the engine's files share. Nothing here is public; the
 * public contract is shim/memlimits.h. Prototypes are grouped by the file
 * that defines them. Everything is built with -fvisibility=hidden. */
#ifndef MLI_INTERNAL_H
#define MLI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../shim/memlimits.h"

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

/* ---- core/config.c: the MEMLIMITS_* environment ---------------------- */
enum mli_on_limit { MLI_ON_LIMIT_FAIL, MLI_ON_LIMIT_ABORT };

struct mli_config {
	int64_t global_memory;      /* bytes, -1 = not set */
	int64_t allocations;        /* bytes, -1 = not set */
	int64_t thread_allocations; /* bytes, -1 = not set */
	enum mli_on_limit on_limit;
	char report[512];           /* "" = none, "stderr", or a path */
	char profile[512];          /* MEMLIMITS_PROFILE, "" = none */
	uint64_t sample_interval;   /* MEMLIMITS_SAMPLE_INTERVAL, 0 = not set */
	uint64_t seed;              /* MEMLIMITS_SEED */
	bool seed_set;
};

/* The largest size any MEMLIMITS_* size or limit may take. */
#define MLI_SIZE_MAX ((uint64_t)INT64_MAX)

/* 0 on success; -1 malformed; -2 out of range (> MLI_SIZE_MAX). */
int mli_parse_size(const char *s, uint64_t *out);
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

/* ---- core/thread.c: per-thread state and the registry of threads ------ */
struct mli_scope;

enum mli_thread_state { MLI_T_NEW = 0, MLI_T_LIVE, MLI_T_DEAD };

/* One per thread, in initial-exec TLS: zero-initialised, so a thread's first
 * allocation finds left == 0 and falls into the slow path, which sets it up
 * (no "initialised?" test on the fast path). */
struct mli_thread {
	uint64_t left;   /* hot: bytes the fast path may still hand out */
	uint64_t grant;  /* value of left at the last refill */
	uint64_t count;  /* requested bytes allocated, up to the last refill */
	uint8_t state;   /* enum mli_thread_state */
	uint8_t in_engine; /* recursion guard for the slow path */
	uint8_t exiting;   /* thread-exit destructor ran once */
	uint32_t mask_depth;
	uint32_t nfired;  /* scopes on the stack whose limit fired */
	uint32_t ntoken;  /* token scopes on the stack */
	uint32_t nglobal; /* global-memory scopes on the stack */
	struct mli_scope *top; /* innermost task scope */
	uint64_t proc_held;    /* reserved from the process budget, unused */
	uint64_t grace;        /* bytes allowed past an exhausted budget */
	uint64_t breach_count; /* allocations refused in this thread */
	uint64_t peak_mark;    /* count when the heap was last measured */
	uint64_t headroom;     /* bytes no limit could refuse, from the last refill */
	const uint64_t *be_alloc, *be_dealloc; /* backend's usable-byte counters */
	struct mli_thread *next, *prev;        /* registry, under mli_lock */
	uint64_t id;
	/* The profiler (prof.c). */
	uint64_t sample_left;     /* bytes before the next sampled byte */
	uint64_t pending_samples; /* of the allocation being admitted */
	uint64_t rng;
	uint32_t prof_gen;        /* mli_prof.gen that sample_left belongs to */
	uint32_t prof_busy;       /* in a profiler callback */
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

void mli_thread_attach(struct mli_thread *t);
void mli_thread_init_once(void); /* atfork handlers */
uint64_t mli_thread_count(const struct mli_thread *t); /* exact, requested */
/* Live heap of the process as the backend counts it (usable bytes), and the
 * number of registered threads. Takes the registry lock. */
int64_t mli_live_heap(uint32_t *nthreads);
uint64_t mli_total_allocated(void); /* requested bytes, all threads ever */
int64_t mli_peak_heap(void);
void mli_lock(void);
void mli_unlock(void);

/* ---- core/engine.c: global state, start-up, the slow path ------------- */
struct mli_engine {
	struct mli_config cfg;
	int64_t global_limit;      /* bytes, -1 = none (ml_set_global_memory_limit) */
	bool started;              /* ml_start() or configured by the environment */
	bool env_global;           /* MEMLIMITS_GLOBAL_MEMORY applies to every thread */
	uint64_t proc_pool;        /* remaining process budget (atomic) */
	uint32_t breached;         /* bit per env limit, message written once */
	uint64_t refused;          /* allocations refused by env limits (atomic) */
};
extern struct mli_engine mli_eng;

void mli_engine_init(void); /* idempotent, safe before constructors */
/* The slow path of every allocating entry point. The fast path already took
 * n off t->left and it wrapped. Returns MLI_REFUSE if the allocation must
 * fail with ENOMEM, MLI_ADMIT if it may proceed (it is then counted), and
 * MLI_SAMPLE if it may and the profiler sampled it: the caller then gets its
 * block from mli_prof_alloc. */
enum { MLI_REFUSE = 0, MLI_ADMIT = 1, MLI_SAMPLE = 2 };
MLI_NOINLINE int mli_admit_slow(size_t n);
/* Recompute t->left after the thread's limits changed (scope entered or left,
 * unmask). */
void mli_refill(struct mli_thread *t);
/* May an allocation of at most n bytes skip admission, because no limit
 * could refuse it (the room left since the last refill covers it, and no
 * token or sampler needs to see it)? It is then charged afterwards with
 * mli_charge_after. */
static inline bool mli_within_headroom(uint64_t n)
{
	const struct mli_thread *t = &mli_tls;
	uint64_t used = t->grant - t->left;
	return t->state == MLI_T_LIVE && used <= t->headroom &&
	       n <= t->headroom - used;
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

/* The fast path: takes n off the thread's grant; false if that wrapped.
 * On x86-64 one read-modify-write instruction, so that a signal handler of
 * this thread (which may cut the grant, see mli_cut_grant) never lands
 * between the load and the store. */
static inline bool mli_admit_fast(size_t n)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MLI_PORTABLE_MALLOC)
	bool borrow;
	__asm__ volatile("movq mli_tls@gottpoff(%%rip), %%rax\n\t"
			 "subq %1, %%fs:(%%rax)"
			 : "=@ccc"(borrow)
			 : "r"(n)
			 : "rax", "memory");
	return !borrow;
#else
	return !__builtin_sub_overflow(mli_tls.left, n, &mli_tls.left);
#endif
}

/* Gives n bytes taken by mli_admit_fast back to the grant (one instruction,
 * like the fast path). */
static inline void mli_give_back(size_t n)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MLI_PORTABLE_MALLOC)
	__asm__ volatile("movq mli_tls@gottpoff(%%rip), %%rax\n\t"
			 "addq %0, %%fs:(%%rax)"
			 :
			 : "r"(n)
			 : "rax", "cc", "memory");
#else
	mli_tls.left += n;
#endif
}

/* Sends this thread's next allocation to the slow path without changing
 * what has been counted: the unused part of the grant is given back. Safe
 * from a signal handler of this thread. */
static inline void mli_cut_grant(struct mli_thread *t)
{
	uint64_t left = t->left;
	t->left = 0;
	t->grant -= left;
}

/* Called on the allocation path: charge n requested bytes (MLI_*). */
static inline int mli_admit(size_t n)
{
	if (mli_likely(mli_admit_fast(n)))
		return MLI_ADMIT;
	return mli_admit_slow(n);
}

/* ---- core/report.c: breach messages and the exit report --------------- */
enum mli_breach { MLI_BREACH_GLOBAL = 1, MLI_BREACH_ALLOC = 2,
		  MLI_BREACH_THREAD = 4 };
void mli_report_breach(enum mli_breach which, size_t n, int64_t live);
void mli_report_exit(void);
void mli_die(const char *msg); /* message to stderr, exit 125 */

/* ---- core/task.c: task scopes, tokens, masking ------------------------ */
enum mli_scope_kind { MLI_SCOPE_GLOBAL = 1, MLI_SCOPE_ALLOC, MLI_SCOPE_TOKEN };
struct mli_scope {
	uint32_t magic;
	uint8_t kind;
	uint8_t fired; /* ml_status, 0 if not */
	struct mli_scope *outer;
	struct mli_thread *owner;
	uint64_t start; /* thread count at entry */
	uint64_t limit;
	const struct ml_token *token;
};
struct ml_token {
	uint32_t magic;
	int set; /* atomic, never unset */
};
/* The library's one exported entry (see shim/memlimits.h). */
const struct ml_api *ml_engine(uint32_t abi_version);

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
void mli_prof_sync(struct mli_thread *t);
/* Samples in the next n bytes of t; updates t->sample_left. */
uint64_t mli_prof_count(struct mli_thread *t, size_t n);
void *mli_prof_alloc(size_t n, size_t align, bool zero);
void mli_prof_sampled(void *p, size_t n, uint64_t nsamples,
		      struct mli_sampled *rec);
void mli_prof_freed(void *p); /* a sampled block is being freed */
ml_status mli_prof_start(double rate, size_t depth, const ml_tracker *tr);
ml_status mli_prof_stop(void);

/* ---- core/unwind.c: call stacks for the profiler ----------------------- */
/* Return addresses of the caller's stack, innermost first (glibc
 * backtrace()'s contract, at a fraction of its cost). */
int mli_unwind(void **buf, int size);

/* ---- core/profile.c: MEMLIMITS_PROFILE, the profile file ---------------- */
void mli_profile_start_env(void);
void mli_profile_write(const char *why); /* at exit, or when a limit fires */

/* ---- core/backend.h (implemented in preload/): what the engine needs from
 * the allocator. */
#include "backend.h"

#endif
