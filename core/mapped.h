/* mapped.h: the meter of mapped memory, between the mmap interposers
 * (preload/mmap.c, which keep the account of core/maps.c) and the engine,
 * which decides the global limit. The global measure is the malloc heap
 * plus these bytes: the private anonymous memory the program mapped itself
 * and made writable (see README, "What the global limit counts"). */
#ifndef MLI_MAPPED_H
#define MLI_MAPPED_H

#include <stdbool.h>
#include <stdint.h>

/* Before a call that would make `bytes` more bytes counted: may it? If so
 * the bytes are counted now and true returned (call mli_mapped_sub if the
 * call then fails); if not, false: the caller fails the call with ENOMEM the
 * way the kernel would. Called with the account's lock held: it must not
 * call mmap, munmap, mprotect or mremap through the interposers. A call
 * from a thread already inside the engine (a signal handler that landed in
 * it) is counted and never refused, as the engine does for malloc. */
bool mli_mapped_charge(uint64_t bytes);
/* Counted bytes that went away (unmapped, decommitted, or charged for a
 * call that then failed). */
void mli_mapped_sub(uint64_t bytes);
/* Bytes counted now. */
int64_t mli_mapped_bytes(void);

#endif
