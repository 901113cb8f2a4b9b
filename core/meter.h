/* meter.h: limits as meters.
 *
 * Everything that can refuse an allocation, or must see one, is a meter
 * (after jemalloc's thread_event registry): each supplies how far the
 * thread may go before the meter must look again, and whether a request may
 * pass. The fast path knows nothing of them: it takes from the thread's
 * grant, which the engine sets to the smallest of the meters' bounds, and
 * comes to the slow path (engine.c) when that runs out; the slow path asks
 * every meter, in the order of the table below, then regrants. A new kind
 * of limit is a new meter: its file, its line in MLI_METERS, and the
 * per-thread fields it keeps in struct mli_thread.
 *
 * Order matters: OCaml's memprof-limits checks a task's global memory, then
 * its allocations, then its tokens (the task meter does all three, in that
 * order); the environment's hard caps come after the task's limits, so that
 * a task learns of its own interrupt before a hard cap refuses; the budgets
 * charge their reservation when they pass, so they come after every meter
 * that may refuse without charging; the sampler and other meters that never
 * refuse come last. */
#ifndef MLI_METER_H
#define MLI_METER_H

#include <stdbool.h>
#include <stdint.h>

struct mli_thread;

/* What is being admitted. */
enum mli_adm_kind {
	MLI_ADM_ALLOC = 1, /* a malloc-family request of n bytes */
	MLI_ADM_MAP = 2,   /* n bytes mapped outside malloc (mmap family) */
	MLI_ADM_POLL = 4,  /* nothing: a check (ml_poll, a refill) */
};

/* mli_adm's mem before a meter asked for it. */
#define MLI_MEM_UNKNOWN INT64_MIN

/* One admission, shared by the meters as they run. */
struct mli_adm {
	uint64_t n;        /* bytes asked for (0 for a poll) */
	/* What the memory grows by if admitted: for an allocation of 16 KiB
	 * or more the backend's block (its size class: malloc(101200291) is
	 * a 112 MiB block, 16 MiB over the request), else n, whose rounding
	 * is within the per-thread slack. The memory meters decide on it;
	 * budgets charge n. */
	uint64_t grow;
	unsigned kind;     /* enum mli_adm_kind */
	int64_t mem;       /* the process's memory (estimate), MLI_MEM_UNKNOWN
			    * until asked (the estimate may be negative: a
			    * thread that frees what others allocated) */
	bool sampled;      /* the sampler picked this allocation */
	bool reserved;     /* a memory meter reserved grow (t->pending) */
	/* Set by the meters' bound(): */
	uint64_t wait;     /* bytes before some meter must look again */
	uint64_t room;     /* bytes no meter's limit could refuse */
};

/* The memory figure an admission decides on: measured once, by the first
 * meter that needs it (memory.c). */
int64_t mli_adm_mem(const struct mli_thread *t, struct mli_adm *a);

struct mli_meter {
	const char *name;
	unsigned kinds; /* the admissions it takes part in (mli_adm_kind bits) */
	/* May a->n bytes pass? If so the meter charges them (if it keeps a
	 * count of its own) and returns true. False refuses: the meter has
	 * reported it (a task's interrupt, a hard cap's message). */
	bool (*admit)(struct mli_thread *t, struct mli_adm *a);
	/* Lowers a->wait to the bytes this thread may take before the meter
	 * must look again, and a->room to those no limit of the meter could
	 * refuse (realloc's growth may use the room beyond the wait). */
	void (*bound)(struct mli_thread *t, struct mli_adm *a);
	/* The fast path handed out `used` bytes since the last refill. */
	void (*fold)(struct mli_thread *t, uint64_t used);
	/* Undoes admit's charge of n bytes: the allocation failed after all,
	 * or a later meter refused it. */
	void (*uncharge)(struct mli_thread *t, uint64_t n);
	/* The thread is gone (it exited, or it did not survive a fork): give
	 * back what it holds. */
	void (*retire)(struct mli_thread *t);
};

/* The table, in admission order. */
#define MLI_METERS(M)                                                        \
	M(task)    /* the thread's task scopes: memory, allocations, tokens */ \
	M(memory)  /* MEMLIMITS_GLOBAL_MEMORY: the process's memory cap */     \
	M(tree)    /* MEMLIMITS_TREE: the process tree's memory (tree.c) */    \
	M(tbudget) /* MEMLIMITS_THREAD_ALLOCATIONS */                          \
	M(pbudget) /* MEMLIMITS_ALLOCATIONS */                                 \
	M(soft)    /* memory pressure: thresholds with callbacks (soft.c) */   \
	M(sampler) /* the profiler: the distance to the next sampled byte */

#define MLI_DECLARE_METER(m) extern const struct mli_meter mli_meter_##m;
MLI_METERS(MLI_DECLARE_METER)
#undef MLI_DECLARE_METER

/* Each meter's bit in the masks of meters that are on: the slow path runs
 * only those, so a process with no limit pays for none. mli_eng.meters has
 * the process-wide ones (set as the configuration or the profiler turns
 * them on); a thread's task scopes turn on the task meter for it. */
#define MLI_METER_ENUM(m) MLI_METER_##m,
enum { MLI_METERS(MLI_METER_ENUM) MLI_NMETERS };
#undef MLI_METER_ENUM
#define MLI_METER_BIT(m) (1u << MLI_METER_##m)
void mli_meter_on(unsigned bit);

/* ---- core/budget.c: a budget of bytes shared by threads ---------------- */
/* A pool that threads draw on in reservations, so that the shared word is
 * touched once per reservation, not per allocation: MEMLIMITS_ALLOCATIONS,
 * and any budget shared by a group of threads or processes (the pool may
 * live in shared memory). A thread takes what it needs plus up to `batch`
 * (and at most 1/16 of what is left), so a thread can be refused while
 * others hold unused reservations, by at most 1/16 of the rest each. */
struct mli_budget {
	uint64_t avail; /* atomic */
	uint64_t batch;
};
bool mli_budget_take(struct mli_budget *b, uint64_t need, uint64_t *got);
void mli_budget_return(struct mli_budget *b, uint64_t n);
/* Draws n bytes on a thread's reservation *held, topping it up from b.
 * False if b cannot cover them. */
bool mli_budget_draw(struct mli_budget *b, uint64_t *held, uint64_t n);

#endif
