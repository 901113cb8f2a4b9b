/* memlimits.h: memory limits, allocation budgets and cancellation for C.
 *
 * This header is the whole public API and its documentation. It needs no
 * library at link time (only -ldl where the libc wants it): the first call
 * looks up libmemlimits.so's one exported entry, ml_engine, with dlsym and
 * checks its version. Run the program with
 *
 *     LD_PRELOAD=/path/to/libmemlimits.so ./program
 *
 * Without the preload every call still works and reports ML_NOT_LOADED (or a
 * neutral value: false, -1, NULL); nothing crashes.
 *
 * THE MODEL (OCaml's memprof-limits, brought to C)
 * A *task* is a function run under a limit. In C an interrupt is an
 * allocation failure: once a task's limit fires, the interrupted allocation
 * returns NULL with errno = ENOMEM (C++: std::bad_alloc), and so does every
 * later unmasked allocation of that task until the task returns. The task's
 * status then names the limit that fired: it is ML_GLOBAL_MEMORY_LIMIT,
 * ML_ALLOCATION_LIMIT or ML_TOKEN_LIMIT if and only if that limit of that
 * task fired, even if the task ignored the NULL and returned normally.
 * Allocation failures for any other reason pass through untouched.
 *
 * C++: memlimits.hpp wraps this API in RAII types. Read it before catching
 * std::bad_alloc inside a task: a catch handler inside an interrupted task
 * that allocates throws again, out of the handler.
 *
 * Limits are per thread: a task's limits cover the thread that runs it, not
 * the threads it creates, and a limit reached in another thread never makes
 * this task fail.
 *
 * Nesting: a thread may be under several limits at once. An allocation counts
 * against every enclosing allocation limit; an inner limit never lets a task
 * exceed an outer one. When an enclosing limit fires inside an inner task, the
 * inner task returns the status of the limit that fired (never ML_OK: its
 * work was cut short) and the enclosing task reports it as well. When only the
 * inner task's own limit fires, the enclosing task is unaffected (ML_OK).
 *
 * A task's extent is dynamic: when it returns (or a longjmp, an exception
 * or a cancellation leaves it), masks taken inside it and not undone are
 * undone, and scopes entered inside it and not left are dropped (then the
 * task returns ML_INVALID: misuse, such as an error path that forgot
 * ml_leave; a later ml_leave of such a scope is ML_INVALID too).
 *
 * All functions are thread-safe. ml_token_set is async-signal-safe.
 */
#ifndef MEMLIMITS_H
#define MEMLIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#ifndef MEMLIMITS_ENGINE
/* The libc's own declaration of dlsym (in C++ it carries noexcept, which a
 * declaration of our own would contradict), and memcpy for its result. */
#include <dlfcn.h>
#include <string.h>
#endif

/* The null pointer: nullptr in C++, where a 0 is flagged by
 * -Wzero-as-null-pointer-constant even in a cast. */
#ifdef __cplusplus
#define ML__NULL nullptr
#else
#define ML__NULL ((void *)0)
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ml_status {
	ML_OK = 0,
	ML_GLOBAL_MEMORY_LIMIT, /* interrupted: the process heap went over the global limit */
	ML_ALLOCATION_LIMIT,    /* interrupted: the task allocated more than its limit */
	ML_TOKEN_LIMIT,         /* interrupted: the task's token was set */
	ML_NOT_LOADED,          /* libmemlimits.so is not in the process */
	ML_NOT_STARTED,         /* the engine was not started */
	ML_INVALID              /* bad argument or misuse (scopes left out of order, ...) */
} ml_status;

typedef void *(*ml_task_fn)(void *arg);
/* A memory-pressure callback: the process's memory (bytes, the global
 * limit's measure) has just crossed `threshold` on its way up. */
typedef void (*ml_pressure_fn)(int64_t memory_bytes, int64_t threshold,
			       void *arg);
typedef struct ml_token ml_token;

/* Storage for a scope entered with ml_enter_*(); lives on the caller's stack.
 * Its contents are private to the engine. Version 1 had 8 words; it has 16
 * now, room for what scopes will carry next (the engine is told the size
 * the caller's header gave it, so a program built with 8 words keeps
 * working). */
typedef struct ml_scope {
	uint64_t opaque_[16];
} ml_scope;

/* Kinds of scope (the engine checks at build time that its own numbering
 * is this one). */
enum { ML__SCOPE_GLOBAL = 1, ML__SCOPE_ALLOC = 2, ML__SCOPE_TOKEN = 3 };

/* Figures returned by ml_stats(). Bytes throughout. */
struct ml_stats {
	int64_t live_bytes;          /* process heap now (allocator's usable bytes,
					less memlimits' own blocks) */
	int64_t peak_bytes;          /* highest global measure the engine
					observed: the heap plus mapped_bytes
					(the memory the program maps itself) */
	uint64_t thread_allocated;   /* bytes allocated by this thread, counted
					as ml_limit_allocations counts them */
	uint64_t process_allocated;  /* the same, by all threads */
	/* Since the first version (a program built earlier gets the fields
	 * above only): */
	int64_t allocator_bytes;     /* the allocator's own count of live bytes
					(jemalloc's stats.allocated, including
					blocks its thread caches hold), -1 if
					unknown */
	/* Since version 1.x: */
	int64_t mapped_bytes;        /* memory the program mapped itself and
					the global limit counts with the heap:
					anonymous (private or shared) or a
					shared mapping of a tmpfs file this
					process sized or created, made
					writable, by mmap, mprotect or mremap;
					System V segments attached; the
					program break; memfd pages fallocate
					gave (see README) */
};

/* The largest valid allocation limit, in bytes (INT64_MAX). */
#define ML_MAX_ALLOCATION_LIMIT ((uint64_t)INT64_MAX)

/* ---------------------------------------------------------------------------
 * The functions. Each is documented where it is defined, below the engine
 * table; this list is the summary.
 *
 *   ml_status ml_start(void);
 *   const char *ml_status_string(ml_status s);
 *   bool ml_loaded(void);
 *
 *   void    ml_set_global_memory_limit(int64_t bytes);
 *   int64_t ml_global_memory_limit(void);
 *   ml_status ml_limit_global_memory(ml_task_fn task, void *arg, void **result);
 *   ml_status ml_limit_allocations(uint64_t limit_bytes, ml_task_fn task,
 *                                  void *arg, void **result,
 *                                  uint64_t *allocated_bytes);
 *   ml_token *ml_token_create(void);
 *   void      ml_token_set(ml_token *t);
 *   bool      ml_token_is_set(const ml_token *t);
 *   void      ml_token_destroy(ml_token *t);
 *   ml_status ml_limit_with_token(ml_token *t, ml_task_fn task, void *arg,
 *                                 void **result);
 *
 *   ml_status ml_enter_global_memory(ml_scope *s);
 *   ml_status ml_enter_allocations(ml_scope *s, uint64_t limit_bytes);
 *   ml_status ml_enter_token(ml_scope *s, ml_token *t);
 *   ml_status ml_leave(ml_scope *s, uint64_t *allocated_bytes);
 *   ml_status ml_leave_all(ml_scope *s, uint64_t *allocated_bytes);
 *
 *   bool ml_is_interrupted(void);
 *   void ml_mask(void);  void ml_unmask(void);  bool ml_is_blocked(void);
 *   bool ml_with_resource(...);   ML_MASKED_BLOCK;   ML_DEFINE_RELEASE(...)
 *   ml_status ml_poll(void);
 *   int ml_trim(void);
 *   ml_status ml_stats(struct ml_stats *out);
 *
 *   ml_status ml_on_memory_pressure(int64_t threshold_bytes,
 *                                   ml_pressure_fn fn, void *arg);
 *
 *   ml_status ml_memprof_start(double sampling_rate, size_t callstack_size,
 *                              const ml_tracker *tracker);
 *   ml_status ml_memprof_stop(void);
 * ------------------------------------------------------------------------- */

/* Memprof: what the sampling profiler reports for a sampled allocation. */
typedef struct ml_sample {
	uint64_t nsamples;          /* samples in the block: Binomial(charged, rate) >= 1,
				     * charged being the bytes the allocation is counted
				     * (size; for an alignment above 16, the block's
				     * usable size, so nsamples may exceed size; for a
				     * realloc, its growth) */
	size_t size;                /* requested bytes */
	void *block;                /* the block's address */
	void *const *callstack;     /* return addresses, innermost first */
	size_t depth;               /* entries in callstack */
	uint64_t thread;            /* the engine's number of the allocating thread */
} ml_sample;

/* The tracker: alloc runs for each sampled allocation, in the allocating
 * thread, and returns a cookie to track the block, or NULL not to. dealloc
 * (may be NULL) runs once when a tracked block is freed (by free or by
 * realloc), in the freeing thread. `data` is passed to both. A realloc is
 * sampled on what the block grows by; to the tracker it is a free (of the
 * old block) and a new allocation when it moves the block or samples its
 * growth; else (a shrink, or growth in place that was not sampled) the
 * block keeps its cookie, whose sample gives the size at that time. Both
 * must return: they run inside malloc and free (a C++ exception out of
 * them ends the program, as those are noexcept; a longjmp out of one
 * leaves its thread's allocations uncounted and unsampled for good). */
typedef struct ml_tracker {
	void *(*alloc)(const ml_sample *sample, void *data);
	void (*dealloc)(void *cookie, void *data);
	void *data;
} ml_tracker;

#define ML_MAX_CALLSTACK 64

/* The engine's table. Versions only ever append members, so a program built
 * against an older header keeps working with a newer library: the header
 * checks `size` before using a member. */
#define ML_ABI_VERSION 1u
struct ml_api {
	uint32_t version;
	uint32_t size; /* sizeof(struct ml_api) of the library */
	ml_status (*start)(void);
	void (*set_global_memory_limit)(int64_t bytes);
	int64_t (*global_memory_limit)(void);
	ml_status (*limit_global_memory)(ml_task_fn, void *, void **);
	ml_status (*limit_allocations)(uint64_t, ml_task_fn, void *, void **,
				       uint64_t *);
	ml_token *(*token_create)(void);
	void (*token_set)(ml_token *);
	bool (*token_is_set)(const ml_token *);
	void (*token_destroy)(ml_token *);
	ml_status (*limit_with_token)(ml_token *, ml_task_fn, void *, void **);
	bool (*is_interrupted)(void);
	void (*mask)(void);
	void (*unmask)(void);
	bool (*is_blocked)(void);
	ml_status (*enter)(ml_scope *, int kind, uint64_t limit, ml_token *);
	ml_status (*leave)(ml_scope *, uint64_t *);
	ml_status (*poll)(void);
	int (*trim)(void);
	ml_status (*stats)(struct ml_stats *, size_t size);
	ml_status (*memprof_start)(double, size_t, const ml_tracker *);
	ml_status (*memprof_stop)(void);
	/* enter, told the size of the caller's ml_scope. */
	ml_status (*enter_sized)(ml_scope *, size_t size, int kind,
				 uint64_t limit, ml_token *);
	ml_status (*on_memory_pressure)(int64_t, ml_pressure_fn, void *);
	ml_status (*leave_all)(ml_scope *, uint64_t *);
};

/* The library's one exported entry: returns its table, or NULL if it does
 * not speak `abi_version`. Versions only append, so the library answers
 * every version from 1 up with its own table, whose `size` tells a newer
 * caller which members it has; NULL for 0. */
typedef const struct ml_api *(*ml_engine_fn)(uint32_t abi_version);

#ifndef MEMLIMITS_ENGINE /* the library itself needs only the types above */

/* Resolved once per translation unit. Racing first calls may both look it
 * up; both store the same value. A null table with `looked` set means "not
 * loaded". */
static const struct ml_api *ml__table;
static int ml__looked;
/* The table again, shared by all the translation units of a program image
 * that include this header (a weak definition: the linker keeps one), so
 * that ml_token_set finds it without dlsym in a file that made no other
 * call: a signal handler's, a watchdog's. */
__attribute__((weak, visibility("default"))) const struct ml_api *ml__shared_table;

static inline const struct ml_api *ml__api(void)
{
	const struct ml_api *a = __atomic_load_n(&ml__table, __ATOMIC_ACQUIRE);
	if (a || __atomic_load_n(&ml__looked, __ATOMIC_ACQUIRE))
		return a;
	/* <dlfcn.h> defines RTLD_DEFAULT only for _GNU_SOURCE or BSD code; it
	 * is ((void *)0) in glibc and musl. */
#ifdef RTLD_DEFAULT
	void *sym = dlsym(RTLD_DEFAULT, "ml_engine");
#else
	void *sym = dlsym(ML__NULL, "ml_engine");
#endif
	/* ISO C and C++ have no conversion from an object pointer to a
	 * function pointer; POSIX guarantees that dlsym's void * holds one of
	 * the same size, and copying its bytes is the conversion it suggests. */
	ml_engine_fn f;
	(void)sizeof(char[sizeof f == sizeof sym ? 1 : -1]);
	memcpy(&f, &sym, sizeof f);
	a = f ? f(ML_ABI_VERSION) : ML__NULL;
	if (a && a->version < 1)
		a = ML__NULL;
	if (a)
		__atomic_store_n(&ml__shared_table, a, __ATOMIC_RELEASE);
	__atomic_store_n(&ml__table, a, __ATOMIC_RELEASE);
	__atomic_store_n(&ml__looked, 1, __ATOMIC_RELEASE);
	return a;
}

/* Does the table have member m? */
#define ML__HAS(a, m) \
	((a) && (a)->size >= offsetof(struct ml_api, m) + sizeof((a)->m) && (a)->m)

/* True iff libmemlimits.so is in the process. */
static inline bool ml_loaded(void)
{
	return ml__api() != ML__NULL;
}

/* A constant, human-readable name of s; works without the engine. */
static inline const char *ml_status_string(ml_status s)
{
	switch (s) {
	case ML_OK: return "ok";
	case ML_GLOBAL_MEMORY_LIMIT: return "global memory limit reached";
	case ML_ALLOCATION_LIMIT: return "allocation limit reached";
	case ML_TOKEN_LIMIT: return "token set";
	case ML_NOT_LOADED: return "engine not loaded (libmemlimits.so is not preloaded)";
	case ML_NOT_STARTED: return "engine not started (call ml_start)";
	case ML_INVALID: return "invalid argument or misuse";
	}
	return "unknown status";
}

/* Starts the engine: task functions return ML_NOT_STARTED before. The
 * preload starts it by itself when a MEMLIMITS_* limit is set. Returns
 * ML_INVALID if it was already started. Starting costs nothing on the
 * allocation fast path. */
static inline ml_status ml_start(void)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, start) ? a->start() : ML_NOT_LOADED;
}

/* ---- Global memory limit ---------------------------------------------- */

/* Sets the limit, in bytes of the global measure (the live heap, as the
 * allocator's usable bytes, plus the memory the program maps itself: see
 * the README), over which tasks run by ml_limit_global_memory are
 * interrupted. Negative disables it. Default -1, or MEMLIMITS_GLOBAL_MEMORY. */
static inline void ml_set_global_memory_limit(int64_t bytes)
{
	const struct ml_api *a = ml__api();
	if (ML__HAS(a, set_global_memory_limit))
		a->set_global_memory_limit(bytes);
}

/* The current global limit in bytes; -1 if none or not loaded. */
static inline int64_t ml_global_memory_limit(void)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, global_memory_limit) ? a->global_memory_limit() : -1;
}

/* Runs task(arg) in this thread; its allocations fail while the process heap
 * is over the global limit (the first allocation that would take the heap
 * over fails, up to a per-thread slack stated in the README). After such an
 * interrupt the process is usually still over the limit: other limited tasks
 * fail too until memory is freed (see ml_trim). `result` may be NULL; on an
 * interrupt *result is still what the task returned, so it can be freed. */
static inline ml_status ml_limit_global_memory(ml_task_fn task, void *arg,
					       void **result)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, limit_global_memory)
		? a->limit_global_memory(task, arg, result) : ML_NOT_LOADED;
}

/* ---- Allocation limit ------------------------------------------------- */

/* Runs task(arg); the task may allocate at most limit_bytes bytes in this
 * thread. Frees do not count: it is a deterministic measure of work. The
 * count is exact: the requested sizes of malloc and calloc; for the aligned
 * forms with an alignment above 16, the block's usable size; for realloc,
 * what the block's usable size grew by (at most the size asked for). The
 * allocation that
 * would cross the limit fails, identically from run to run. *allocated_bytes
 * (may be NULL) receives the count, also on an interrupt. A limit above
 * ML_MAX_ALLOCATION_LIMIT is ML_INVALID. */
static inline ml_status ml_limit_allocations(uint64_t limit_bytes,
					     ml_task_fn task, void *arg,
					     void **result,
					     uint64_t *allocated_bytes)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, limit_allocations)
		? a->limit_allocations(limit_bytes, task, arg, result,
				       allocated_bytes)
		: ML_NOT_LOADED;
}

/* ---- Tokens ----------------------------------------------------------- */

/* A flag that can be set once, atomically, and never unset. NULL if the
 * engine is not loaded or out of memory. */
static inline ml_token *ml_token_create(void)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, token_create) ? a->token_create() : ML__NULL;
}

/* Sets t: a lock-free atomic store, safe from a signal handler and from any
 * thread. A token exists only once the engine was looked up, in the image
 * (the executable or shared library) that created it: a call from any file
 * of that image finds the engine without dlsym. The first call from
 * another image that never called the API (a plugin given the token) looks
 * the engine up with dlsym, which is not async-signal-safe: make one call
 * there first (ml_loaded()) if its signal handlers set tokens. */
static inline void ml_token_set(ml_token *t)
{
	const struct ml_api *a = __atomic_load_n(&ml__table, __ATOMIC_ACQUIRE);
	if (!a)
		a = __atomic_load_n(&ml__shared_table, __ATOMIC_ACQUIRE);
	if (!a && t)
		a = ml__api();
	if (t && ML__HAS(a, token_set))
		a->token_set(t);
}

static inline bool ml_token_is_set(const ml_token *t)
{
	const struct ml_api *a = ml__api();
	return t && ML__HAS(a, token_is_set) && a->token_is_set(t);
}

/* Frees t; it must no longer be in use by a task. */
static inline void ml_token_destroy(ml_token *t)
{
	const struct ml_api *a = ml__api();
	if (t && ML__HAS(a, token_destroy))
		a->token_destroy(t);
}

/* Runs task(arg), interrupted at its next allocation after t is set (at
 * once if t is already set) when t is set by the task's own thread or a
 * signal handler in it; when set from another thread, within the task's next
 * 16 KiB of allocation (the task checks its token that often; the fast path
 * checks nothing). A task that does not allocate is not interrupted; it can
 * call ml_poll() in its loops. */
static inline ml_status ml_limit_with_token(ml_token *t, ml_task_fn task,
					    void *arg, void **result)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, limit_with_token)
		? a->limit_with_token(t, task, arg, result) : ML_NOT_LOADED;
}

/* ---- Scopes: limits around ordinary code ------------------------------- */
/* The same three limits for code that cannot be made into a callback:
 *
 *     ml_scope s;
 *     if (ml_enter_allocations(&s, 1 << 20) == ML_OK) {
 *             ... ordinary code ...
 *             uint64_t used;
 *             ml_status st = ml_leave(&s, &used);
 *     }
 *
 * Scopes nest with each other and with the task functions, and must be left
 * in the reverse order of entering, in the thread that entered them:
 * ml_leave of any other scope returns ML_INVALID and leaves nothing. ml_leave
 * returns the scope's status as the task functions do; *allocated_bytes (may
 * be NULL) receives the bytes allocated inside the scope. */
static inline ml_status ml__enter(ml_scope *s, int kind, uint64_t limit,
				  ml_token *t)
{
	const struct ml_api *a = ml__api();
	if (ML__HAS(a, enter_sized))
		return a->enter_sized(s, sizeof *s, kind, limit, t);
	return ML__HAS(a, enter) ? a->enter(s, kind, limit, t) : ML_NOT_LOADED;
}
static inline ml_status ml_enter_global_memory(ml_scope *s)
{
	return ml__enter(s, ML__SCOPE_GLOBAL, 0, ML__NULL);
}
static inline ml_status ml_enter_allocations(ml_scope *s, uint64_t limit_bytes)
{
	return ml__enter(s, ML__SCOPE_ALLOC, limit_bytes, ML__NULL);
}
static inline ml_status ml_enter_token(ml_scope *s, ml_token *t)
{
	return ml__enter(s, ML__SCOPE_TOKEN, 0, t);
}
static inline ml_status ml_leave(ml_scope *s, uint64_t *allocated_bytes)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, leave) ? a->leave(s, allocated_bytes) : ML_NOT_LOADED;
}
/* For s's last moment (its storage ends: a cleanup handler, a C++
 * destructor): leaves s even while scopes entered inside it are still
 * open, which are dropped unreported, as a task drops them when it returns
 * (the status is then ML_INVALID), and undoes the masks taken inside it.
 * ML_INVALID and nothing done if s is not entered by this thread. A library
 * older than this call leaves s only if it is the innermost (ml_leave). */
static inline ml_status ml_leave_all(ml_scope *s, uint64_t *allocated_bytes)
{
	const struct ml_api *a = ml__api();
	if (ML__HAS(a, leave_all))
		return a->leave_all(s, allocated_bytes);
	return ml_leave(s, allocated_bytes);
}

/* ---- Interrupts and masking -------------------------------------------- */

/* True in this thread from a task's first interrupt until the task returns,
 * even if the task ignored the failed allocation. Use it to avoid swallowing
 * an interrupt, and in cleanup code to roll back instead of committing. */
static inline bool ml_is_interrupted(void)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, is_interrupted) && a->is_interrupted();
}

/* While masked, no allocation of this thread fails because of a task limit
 * (it is still counted). Masks nest. An interrupt that arises while masked is
 * pending: it hits the first unmasked allocation after the last ml_unmask.
 * Limits set in the environment (MEMLIMITS_*) are hard caps, not masked. */
/* Always inlined: the engine notes where the mask was taken (a longjmp
 * out of that place undoes it). */
#if defined(__GNUC__)
#define ML__INLINE_ALWAYS __attribute__((always_inline))
#else
#define ML__INLINE_ALWAYS
#endif
static inline ML__INLINE_ALWAYS void ml_mask(void)
{
	const struct ml_api *a = ml__api();
	if (ML__HAS(a, mask))
		a->mask();
}
static inline void ml_unmask(void)
{
	const struct ml_api *a = ml__api();
	if (ML__HAS(a, unmask))
		a->unmask();
}
static inline bool ml_is_blocked(void)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, is_blocked) && a->is_blocked();
}

/* acquire(arg) runs masked and returns the resource, or NULL if it failed.
 * If it succeeded, use(resource, arg) runs unmasked (its return value goes
 * to *result, which may be NULL) and then release(resource, arg) runs masked,
 * also when use was interrupted. Returns whether acquire succeeded. */
/* Never inlined (GCC, Clang): its masks are its own frame's, which a jump
 * out of acquire or release leaves (the jump undoes them). */
#if defined(__GNUC__)
#define ML__OWN_FRAME static __attribute__((noinline, unused))
#else
#define ML__OWN_FRAME static inline
#endif
ML__OWN_FRAME bool ml_with_resource(void *(*acquire)(void *arg),
				    void *(*use)(void *resource, void *arg),
				    void (*release)(void *resource, void *arg),
				    void *arg, void **result)
{
	ml_mask();
	void *r = acquire(arg);
	ml_unmask();
	if (!r)
		return false;
	void *v = use(r, arg);
	if (result)
		*result = v;
	ml_mask();
	release(r, arg);
	ml_unmask();
	return true;
}

/* GCC/Clang scope helpers (cleanup attribute).
 *
 * ML_MASKED_BLOCK; masks from here to the end of the enclosing block.
 *
 * ML_DEFINE_RELEASE(name, type, fn) defines name() for
 *     __attribute__((cleanup(name))) type x = acquire();
 * which calls fn(x) masked when x goes out of scope, if x is not 0. */
static inline void ml__unmask_cleanup(int *unused)
{
	(void)unused;
	ml_unmask();
}
#define ML__CAT2(a, b) a##b
#define ML__CAT(a, b) ML__CAT2(a, b)
/* (unused: clang's -Wunused-variable does not count the cleanup as a use) */
#define ML_MASKED_BLOCK                                                       \
	__attribute__((cleanup(ml__unmask_cleanup), unused)) int ML__CAT(      \
		ml__masked_, __LINE__) = (ml_mask(), 0)
#define ML_DEFINE_RELEASE(name, type, fn)       \
	static inline void name(type *p)        \
	{                                       \
		if (*p) {                       \
			ml_mask();              \
			fn(*p);                 \
			ml_unmask();            \
		}                               \
	}

/* ---- Polling, trimming, statistics ------------------------------------- */

/* An explicit interruption point for loops that do not allocate: checks this
 * thread's limits as an allocation of 0 bytes would. Returns ML_OK, or the
 * status of the innermost interrupted task (the task should then return). */
static inline ml_status ml_poll(void)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, poll) ? a->poll() : ML_NOT_LOADED;
}

/* Asks the allocator to return free memory to the system (OCaml's
 * Gc.compact). 0 on success, -1 if it failed or the engine is not loaded. */
static inline int ml_trim(void)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, trim) ? a->trim() : -1;
}

/* Fills *out. ML_NOT_LOADED leaves it untouched. */
static inline ml_status ml_stats(struct ml_stats *out)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, stats) ? a->stats(out, sizeof *out) : ML_NOT_LOADED;
}

/* ---- Memory pressure: a soft limit with a callback ----------------------
 * fn(memory, threshold, arg) runs once each time the process's memory (the
 * global limit's measure: the malloc heap plus the memory it maps itself)
 * crosses threshold_bytes on its way up, and again after it fell back below
 * 90% of it and crosses again (the memory is seen at allocations: below 90%
 * before one re-arms). It runs in the allocating thread, before
 * the allocation that crossed returns, within the same per-thread slack as
 * the global limit (README); masked (no task limit refuses what it
 * allocates; MEMLIMITS_* caps still do), and never under a lock of the
 * engine: it may allocate, free (drop a cache), and raise or lower limits.
 * A threshold already crossed when registered fires on the next crossing.
 * A negative threshold removes every registration of fn with arg, and
 * returns once their callbacks running in other threads have returned
 * (up to a second, the time a callback left by longjmp or cancelled is
 * waited for; not waited for from inside a pressure callback): arg
 * may be freed then. A crossing runs the registration it crossed, never
 * one made since in its place. Up to 16
 * at once (MEMLIMITS_SOFT_MEMORY is one of them): ML_INVALID beyond, if
 * fn is NULL, or for a threshold of 0 (the memory is above it from the
 * start: it would never fire). The profiling build is not needed. fn must
 * return: it runs inside an allocation (a C++ exception out of it ends the
 * program, as malloc is noexcept); a longjmp out of it undoes its mask,
 * but this thread runs no pressure callback again. */
static inline ml_status ml_on_memory_pressure(int64_t threshold_bytes,
					      ml_pressure_fn fn, void *arg)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, on_memory_pressure)
		? a->on_memory_pressure(threshold_bytes, fn, arg) : ML_NOT_LOADED;
}

/* ---- Memprof: the sampling allocation profiler ---------------------------
 * Each allocated byte is sampled with probability sampling_rate (a Poisson
 * process over the bytes counted: a block charged n bytes gets Binomial(n,
 * rate) samples, n being the request, or the block's usable size for an
 * alignment above 16, or a realloc's growth; see ml_sample); a
 * block with at least one sample is reported to tracker->alloc with up to
 * callstack_size return addresses (at most ML_MAX_CALLSTACK: a larger
 * callstack_size is taken as ML_MAX_CALLSTACK, as OCaml's Memprof takes
 * any size and truncates). Callbacks run with
 * sampling off in their thread, never under a lock of the engine, and may
 * allocate: what they allocate is counted by no task and refused by no
 * task, so profiling changes nothing the tasks see; but it is the process's
 * memory, and MEMLIMITS_GLOBAL_MEMORY, a hard cap, refuses it too (a
 * tracker must handle NULL from malloc). They run with cancellation
 * disabled (a pending pthread_cancel acts at the thread's next cancellation
 * point after the callback), so that ml_memprof_stop, which waits for the
 * callbacks in flight, never waits for a cancelled one. With MEMLIMITS_SEED set, a
 * single-threaded program samples the same blocks in every run.
 *
 * The profiler lives in the profiling build of the library,
 * libmemlimits-prof.so, whose free() checks for sampled blocks (four
 * instructions); the default libmemlimits.so keeps jemalloc's free as it is
 * and returns ML_NOT_STARTED here (like jemalloc's --enable-prof), as does
 * the profiling build if it cannot reserve even 16 MiB of address space for
 * its sampled blocks (under a tiny ulimit -v; they get 16 GiB when the
 * address space allows, less under a limit).
 * Returns ML_INVALID if a profiler is running (also the MEMLIMITS_PROFILE
 * one), if the rate is not a probability, or if tracker->alloc is NULL.
 * MEMLIMITS_SEED seeds the sampler (reproducible runs). */
static inline ml_status ml_memprof_start(double sampling_rate,
					 size_t callstack_size,
					 const ml_tracker *tracker)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, memprof_start)
		? a->memprof_start(sampling_rate, callstack_size, tracker)
		: ML_NOT_LOADED;
}

/* Stops the profiler started by ml_memprof_start; no callback runs after it
 * returns, and blocks tracked so far are forgotten. ML_INVALID if none runs.
 * Called from inside a callback, it does not wait for the other threads'
 * callbacks in flight (two callbacks that stop at once would wait on each
 * other): stop from outside the callbacks before freeing what they use. */
static inline ml_status ml_memprof_stop(void)
{
	const struct ml_api *a = ml__api();
	return ML__HAS(a, memprof_stop) ? a->memprof_stop() : ML_NOT_LOADED;
}

#endif /* MEMLIMITS_ENGINE */

#ifdef __cplusplus
}
#endif
#endif /* MEMLIMITS_H */
