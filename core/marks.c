/* marks.c: the sorted range set of marks.h. Sorted and merged, because node
 * marks every mapping V8 makes MADV_DONTFORK: the set stays full, and each
 * of its mmap and munmap calls scanned all of it, as an unsorted list was
 * (13% of its time at the limit: a held-out check). */
#include <string.h>

#include "marks.h"

/* The first range that ends at or after x (m->n if none). */
static int first_ending_from(const struct mli_marks *m, uintptr_t x)
{
	int a = 0, b = m->n;
	while (a < b) {
		int mid = a + (b - a) / 2;
		if (m->r[mid].hi < x)
			a = mid + 1;
		else
			b = mid;
	}
	return a;
}

/* Replaces ranges [i, j) by the k in `with` (k <= 2); past the set's size
 * the last ones are dropped. */
static void splice(struct mli_marks *m, int i, int j, const struct mli_mark *with, int k)
{
	int tail = m->n - j;
	if (i + k + tail > MLI_MARKS_MAX)
		tail = MLI_MARKS_MAX - i - k;
	if (tail < 0) {
		k += tail;
		tail = 0;
	}
	memmove(&m->r[i + k], &m->r[j], (size_t)tail * sizeof *m->r);
	memcpy(&m->r[i], with, (size_t)k * sizeof *m->r);
	m->n = i + k + tail;
}

void mli_marks_add(struct mli_marks *m, uintptr_t lo, uintptr_t hi)
{
	if (lo >= hi)
		return;
	int i = first_ending_from(m, lo), j = i;
	for (; j < m->n && m->r[j].lo <= hi; j++) { /* touches: merged */
		lo = lo < m->r[j].lo ? lo : m->r[j].lo;
		hi = hi > m->r[j].hi ? hi : m->r[j].hi;
	}
	if (i == j && m->n == MLI_MARKS_MAX)
		return;
	struct mli_mark r = { lo, hi };
	splice(m, i, j, &r, 1);
}

void mli_marks_forget(struct mli_marks *m, uintptr_t lo, uintptr_t hi)
{
	if (lo >= hi)
		return;
	int i = first_ending_from(m, lo + 1), j = i; /* ends after lo */
	while (j < m->n && m->r[j].lo < hi)
		j++;
	if (i == j)
		return;
	struct mli_mark keep[2];
	int k = 0;
	if (m->r[i].lo < lo)
		keep[k++] = (struct mli_mark){ m->r[i].lo, lo };
	if (hi < m->r[j - 1].hi)
		keep[k++] = (struct mli_mark){ hi, m->r[j - 1].hi };
	splice(m, i, j, keep, k);
}

bool mli_marks_touch(const struct mli_marks *m, uintptr_t lo, uintptr_t hi)
{
	if (lo >= hi)
		return false;
	int i = first_ending_from(m, lo + 1);
	return i < m->n && m->r[i].lo < hi;
}

bool mli_marks_cover(const struct mli_marks *m, uintptr_t lo, uintptr_t hi)
{
	if (lo >= hi)
		return false;
	int i = first_ending_from(m, lo + 1);
	return i < m->n && m->r[i].lo <= lo && hi <= m->r[i].hi;
}
