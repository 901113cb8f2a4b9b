/* maps.h: the account of mapped memory (core/maps.c): which address ranges
 * are private anonymous mappings made through the interposers, and which of
 * their pages are counted. Addresses and lengths are whole pages (the
 * caller rounds as the kernel does). Not thread-safe: the caller
 * (preload/mmap.c) holds one lock around each query, its system call and
 * the matching update, so that the account changes in the order the
 * kernel's mappings did.
 *
 * Each update returns the change in counted bytes; each mli_maps_q_* query
 * returns the change the same update would make now, without making it, so
 * that the bytes can be admitted before the system call. */
#ifndef MLI_MAPS_H
#define MLI_MAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a new mapping is to the account. */
enum mli_map_kind {
	MLI_MAP_OTHER,   /* file-backed or shared: not in the account */
	MLI_MAP_TRACKED, /* private anonymous, not writable: in, not counted */
	MLI_MAP_COUNTED, /* private anonymous, writable: counted */
};

/* What an mprotect does to pages in the account. */
enum mli_prot_kind {
	MLI_PROT_WRITE, /* writable: counted (a reservation committed) */
	MLI_PROT_NONE,  /* PROT_NONE: not counted (decommitted) */
	MLI_PROT_KEEP,  /* readable or executable, not writable: unchanged */
};

/* A mapping of [addr, addr+len) that replaces whatever was there. */
int64_t mli_maps_map(uintptr_t addr, size_t len, enum mli_map_kind k);
int64_t mli_maps_q_map(uintptr_t addr, size_t len, enum mli_map_kind k);

int64_t mli_maps_unmap(uintptr_t addr, size_t len);
int64_t mli_maps_q_unmap(uintptr_t addr, size_t len);

/* Only the pages of the range that are in the account change. */
int64_t mli_maps_protect(uintptr_t addr, size_t len, enum mli_prot_kind p);
int64_t mli_maps_q_protect(uintptr_t addr, size_t len, enum mli_prot_kind p);

/* A successful mremap of [old, old+old_len) to [to, to+new_len): in place
 * (to == old: shrink or grow), or moved (the destination's previous
 * contents are replaced; the source is unmapped unless dontunmap). Pages
 * added by growth are what the source's last page is: counted, tracked or
 * not in the account. old_len == 0 (a duplicate of a shared mapping) is a
 * new mapping of what the source's first page is: the same pages, counted
 * twice while both are mapped, but still counted once the source is
 * unmapped (uncounted, a duplicate then held 400 MiB under 100M: a
 * held-out check). The query's `to` may be MLI_MAPS_ANYWHERE: moved
 * to addresses the account holds nothing of (the kernel's choice). */
#define MLI_MAPS_ANYWHERE UINTPTR_MAX
int64_t mli_maps_remap(uintptr_t old, size_t old_len, size_t new_len,
		       uintptr_t to, bool dontunmap);
int64_t mli_maps_q_remap(uintptr_t old, size_t old_len, size_t new_len,
			 uintptr_t to, bool dontunmap);

/* Makes sure the next update cannot run out of storage: room for `extra`
 * more ranges. false if the storage cannot grow (the caller then fails its
 * call with ENOMEM before making it). A map, unmap or protect adds at
 * most 3 ranges, a remap at most 9 (it is three of those and a move), and
 * one with dontunmap as many more as mli_maps_ranges_in(old, old_len). An
 * update that finds no room anyway grows the storage then, and aborts
 * with a message if it cannot. */
bool mli_maps_reserve(size_t extra);
size_t mli_maps_ranges_in(uintptr_t addr, size_t len);

/* Counted bytes of [addr, addr+len), and bytes in the account. */
void mli_maps_stat(uintptr_t addr, size_t len, uint64_t *counted,
		   uint64_t *tracked);

/* ---- For the tests -------------------------------------------------- */
struct mli_maps_range {
	uintptr_t start, end;
	bool counted;
};
/* The account's ranges in address order (adjacent ranges of the same kind
 * are merged); returns how many there are, fills at most max. */
size_t mli_maps_dump(struct mli_maps_range *out, size_t max);
/* Counted bytes of the whole account. */
uint64_t mli_maps_counted(void);
/* Checks the structure's invariants; 0 if they hold, else a number saying
 * which failed. */
int mli_maps_check(void);
/* Height of the tree (the longest path from the root), to check that it
 * stays balanced. */
int mli_maps_height(void);
/* Forgets everything (storage is kept). */
void mli_maps_reset(void);

/* false while an update is half made. A child forked then by another
 * thread, without the atfork handlers, may only mli_maps_forget: the
 * account is emptied without reading it. Async-signal-safe. */
bool mli_maps_whole(void);
void mli_maps_forget(void);

#endif
