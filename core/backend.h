/* backend.h: the allocator underneath, as the engine sees it. The engine in
 * core/ never names jemalloc; preload/backend.c implements this over it,
 * tests/unit_engine.c over a fake. */
#ifndef MLI_BACKEND_H
#define MLI_BACKEND_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Called once at start-up, after the configuration was read and before
 * anything else: mem_limit is the memory limit the process starts under
 * (MEMLIMITS_GLOBAL_MEMORY, -1 for none), which the backend's caches
 * should fit. */
void mli_be_init(int64_t mem_limit);
/* This thread's cumulative allocated and deallocated usable bytes, as
 * pointers the owner thread updates on its own fast path; other threads read
 * them (relaxed) while the owner is registered. */
void mli_be_thread_counters(const uint64_t **alloc, const uint64_t **dealloc);
/* Asks the allocator to call fn(arg, allocated, deallocated) in this
 * thread periodically as it allocates and deallocates (jemalloc: every
 * 64 KiB of each), from inside the allocator: fn must not allocate. False
 * if the allocator cannot. */
bool mli_be_thread_watch(void (*fn)(void *arg, uint64_t allocated,
				    uint64_t deallocated),
			 void *arg);
/* Whose malloc a call by its name reaches, for the start-up's refusal:
 * this library's (MLI_MALLOC_OURS), or another library's preloaded before
 * it, the program's own, a tool's that replaces it (valgrind's); *path is
 * the object's file, where there is one. */
enum { MLI_MALLOC_OURS, MLI_MALLOC_LIBRARY, MLI_MALLOC_PROGRAM, MLI_MALLOC_TOOL };
int mli_be_foreign_malloc(const char **path);
/* Allocation outside any accounting, for the engine's own needs: not
 * counted, never refused, and not part of the live heap. These, and the
 * calls below that read the allocator's statistics or purge, run with
 * signals blocked: they take the allocator's locks, and a handler that
 * allocates or forks there would wait for its own thread. */
void *mli_be_malloc(size_t n);
void mli_be_free(void *p);
int64_t mli_be_own_live(void); /* bytes of those blocks, to leave out */
/* Return free memory to the system; returns 0 on success. */
int mli_be_trim(void);
/* Empties this thread's cache of freed blocks (jemalloc's tcache) into
 * the allocator's shared free memory, where a purge can give it back.
 * Callable from the activity callback (fn of mli_be_thread_watch). */
void mli_be_flush_cache(void);
/* Bytes of free memory the allocator keeps resident for reuse (jemalloc:
 * its dirty and muzzy pages), -1 if unknown. Takes the allocator's locks:
 * not on hot paths. */
int64_t mli_be_unused(void);
/* Number of allocation requests the allocator served, or 0 if unknown. */
uint64_t mli_be_nrequests(void);
/* Live bytes by the allocator's own global statistics, -1 if unknown. */
int64_t mli_be_stats_allocated(void);
size_t mli_be_usable_size(const void *p);
/* The usable size of the block the allocator would give for n bytes (its
 * size class): what the heap grows by. */
size_t mli_be_block_size(size_t n);

/* Deferred work of the backend that allocating threads' slow paths give a
 * moment to: nonzero while owed (jemalloc: the decay of arenas whose
 * threads all exited, preload/jedecay.c); mli_be_tick does a share of it
 * and is cheap when called often. */
extern uint64_t mli_be_tick_owed;
void mli_be_tick(void);

/* What the backend tells the engine (core/memory.c): bytes that are in its
 * per-thread counters but not the program's memory (the engine's own
 * blocks: negative), or memory outside them (positive). */
void mli_mem_base_add(int64_t delta);

#endif
