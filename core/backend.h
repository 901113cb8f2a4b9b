/* backend.h: the allocator underneath, as the engine sees it. The engine in
 * core/ never names jemalloc; preload/jemalloc.c implements this. */
#ifndef MLI_BACKEND_H
#define MLI_BACKEND_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Called once at start-up, before the engine reads anything else. */
void mli_be_init(void);
/* This thread's cumulative allocated and deallocated usable bytes, as
 * pointers the owner thread updates on its own fast path; other threads read
 * them (relaxed) while the owner is registered. */
void mli_be_thread_counters(const uint64_t **alloc, const uint64_t **dealloc);
/* Allocation outside any accounting, for the engine's own needs: not
 * counted, never refused, and not part of the live heap. */
void *mli_be_malloc(size_t n);
void mli_be_free(void *p);
int64_t mli_be_own_live(void); /* bytes of those blocks, to leave out */
/* Return free memory to the system; returns 0 on success. */
int mli_be_trim(void);
/* Number of allocation requests the allocator served, or 0 if unknown. */
uint64_t mli_be_nrequests(void);
/* Live bytes by the allocator's own global statistics, -1 if unknown. */
int64_t mli_be_stats_allocated(void);
size_t mli_be_usable_size(const void *p);

/* Sampled blocks (preload/region.c): the profiler's blocks live apart, so
 * that free() can tell them from others. */
struct mli_sampled;
/* Whether this is the profiling build, whose free() notices sampled
 * blocks. */
bool mli_be_free_tracking(void);
int mli_be_sample_init(void); /* 0 on success */
/* A block of n bytes (zeroed if zero) aligned to align, with the
 * profiler's record of it in *rec; NULL if there is no room. */
void *mli_be_sample_alloc(size_t n, size_t align, bool zero,
			  struct mli_sampled **rec);
struct mli_sampled *mli_be_sample_record(const void *p);
size_t mli_be_sample_size(const void *p); /* usable, as jemalloc's would be */
void mli_be_sample_shrink(void *p, size_t n); /* realloc in place, n <= size */
int64_t mli_be_sample_live(void); /* bytes held by sampled blocks */
/* Around fork (core/output.c's handlers): 0 prepare (takes the sampled
 * blocks' lock), 1 in the parent, 2 in the child (release it). */
void mli_be_sample_fork(int phase);

#endif
