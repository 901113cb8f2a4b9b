/* marks.h: a bounded set of address ranges (preload/dontfork.c's
 * MADV_DONTFORK marks), kept sorted, disjoint and merged where they touch,
 * so that every lookup is a binary search. Not thread-safe: the caller
 * holds its lock. No allocation. */
#ifndef MLI_MARKS_H
#define MLI_MARKS_H

#include <stdbool.h>
#include <stdint.h>

#define MLI_MARKS_MAX 256

struct mli_mark {
	uintptr_t lo, hi; /* [lo, hi) */
};

struct mli_marks {
	int n;
	struct mli_mark r[MLI_MARKS_MAX];
};

/* Marks [lo, hi). A set that is full and would need one more range does
 * not take it (that mark is not followed). */
void mli_marks_add(struct mli_marks *m, uintptr_t lo, uintptr_t hi);
/* Unmarks [lo, hi); cutting a range in two in a full set drops the set's
 * last range. */
void mli_marks_forget(struct mli_marks *m, uintptr_t lo, uintptr_t hi);
/* Is any of [lo, hi) marked? */
bool mli_marks_touch(const struct mli_marks *m, uintptr_t lo, uintptr_t hi);
/* Is all of [lo, hi) marked (one range covers it)? */
bool mli_marks_cover(const struct mli_marks *m, uintptr_t lo, uintptr_t hi);

#endif
