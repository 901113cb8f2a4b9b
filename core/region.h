/* region.h: where the profiler's sampled blocks live (preload/region.c):
 * apart from the allocator's, in a reserved address range, so that the
 * profiling build's free() tells them apart with one compare. Not part of
 * the allocator interface (backend.h): the engine's unit tests, which have
 * no profiler, link tests/fake_region.c instead. */
#ifndef MLI_REGION_H
#define MLI_REGION_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
/* realloc in place to n (jemalloc's flags): false if it does not fit in
 * the block's slot (a shrink always fits). */
bool mli_be_sample_resize(void *p, size_t n, int flags);
int64_t mli_be_sample_live(void); /* bytes held by sampled blocks */
/* Around fork (core/output.c's handlers): 0 prepare (takes the sampled
 * blocks' lock), 1 in the parent, 2 in the child (release it). */
void mli_be_sample_fork(int phase);

#endif
