/* unit_marks: the MADV_DONTFORK range set (core/marks.c) linked directly:
 * a seeded randomized comparison with a page-by-page model over a window
 * of 512 pages (at most 256 separate ranges fit: the set never drops
 * one), and a window where the set is full, where what it holds must stay
 * a part of what was marked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/marks.h"

#define P ((uintptr_t)4096)
#define BASE ((uintptr_t)1 << 30)

static uint32_t rng = 12345;
static uint32_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/* Sorted, disjoint, not touching, non-empty. */
static void check_shape(const struct mli_marks *m)
{
	assert_true(m->n >= 0 && m->n <= MLI_MARKS_MAX);
	for (int i = 0; i < m->n; i++) {
		assert_true(m->r[i].lo < m->r[i].hi);
		if (i)
			assert_true(m->r[i - 1].hi < m->r[i].lo);
	}
}

/* Is page p (of the window) in one of the set's ranges? */
static bool in_set(const struct mli_marks *m, int p)
{
	uintptr_t a = BASE + (uintptr_t)p * P;
	for (int i = 0; i < m->n; i++)
		if (m->r[i].lo <= a && a < m->r[i].hi)
			return true;
	return false;
}

static void random_against_model(void **state)
{
	(void)state;
	enum { PAGES = 512 };
	static struct mli_marks m;
	static bool model[PAGES];
	for (int step = 0; step < 200000; step++) {
		int a = (int)(next() % PAGES), len = 1 + (int)(next() % (next() % 4 ? 8 : 128));
		int b = a + len > PAGES ? PAGES : a + len;
		uintptr_t lo = BASE + (uintptr_t)a * P, hi = BASE + (uintptr_t)b * P;
		if (next() % 2) {
			mli_marks_add(&m, lo, hi);
			for (int p = a; p < b; p++)
				model[p] = true;
		} else {
			mli_marks_forget(&m, lo, hi);
			for (int p = a; p < b; p++)
				model[p] = false;
		}
		if (step % 64 == 0 || step > 199000) {
			check_shape(&m);
			for (int p = 0; p < PAGES; p++)
				if (in_set(&m, p) != model[p])
					fail_msg("step %d: page %d is %s in the set", step, p,
						 model[p] ? "missing" : "extra");
		}
		/* cover: all of a random span marked? */
		int q = (int)(next() % PAGES), ql = 1 + (int)(next() % 16);
		int qe = q + ql > PAGES ? PAGES : q + ql;
		bool all = true, any = false;
		for (int p = q; p < qe; p++) {
			all &= model[p];
			any |= model[p];
		}
		if (mli_marks_cover(&m, BASE + (uintptr_t)q * P, BASE + (uintptr_t)qe * P) != all)
			fail_msg("step %d: cover of pages %d-%d is wrong", step, q, qe);
		/* touch: any of it marked? */
		if (mli_marks_touch(&m, BASE + (uintptr_t)q * P, BASE + (uintptr_t)qe * P) != any)
			fail_msg("step %d: touch of pages %d-%d is wrong", step, q, qe);
	}
}

/* 1024 separate ranges asked for: the set holds at most MLI_MARKS_MAX, all
 * of them marked pages, and forgetting works on what it holds. */
static void full_set_keeps_a_part(void **state)
{
	(void)state;
	enum { PAGES = 4096 };
	static struct mli_marks m;
	static bool model[PAGES];
	int most = 0;
	for (int step = 0; step < 50000; step++) {
		int a = (int)(next() % PAGES), b = a + 1 + (int)(next() % 3);
		if (b > PAGES)
			b = PAGES;
		bool add = next() % 3 != 0;
		if (add)
			mli_marks_add(&m, BASE + (uintptr_t)a * P, BASE + (uintptr_t)b * P);
		else
			mli_marks_forget(&m, BASE + (uintptr_t)a * P, BASE + (uintptr_t)b * P);
		for (int p = a; p < b; p++)
			model[p] = add;
		most = m.n > most ? m.n : most;
		if (step % 256 == 0) {
			check_shape(&m);
			for (int i = 0; i < m.n; i++)
				for (uintptr_t x = m.r[i].lo; x < m.r[i].hi; x += P)
					assert_true(model[(x - BASE) / P]);
		}
	}
	assert_int_equal(most, MLI_MARKS_MAX); /* it was full */
}

static void empty_spans_and_edges(void **state)
{
	(void)state;
	static struct mli_marks m;
	mli_marks_add(&m, BASE, BASE); /* empty: nothing */
	assert_int_equal(m.n, 0);
	mli_marks_add(&m, BASE, BASE + 2 * P);
	mli_marks_add(&m, BASE + 2 * P, BASE + 4 * P); /* touching: merged */
	assert_int_equal(m.n, 1);
	assert_true(mli_marks_cover(&m, BASE, BASE + 4 * P));
	assert_false(mli_marks_cover(&m, BASE, BASE + 5 * P));
	assert_false(mli_marks_cover(&m, BASE + P, BASE + P));
	mli_marks_forget(&m, BASE + P, BASE + 2 * P); /* a hole: two ranges */
	assert_int_equal(m.n, 2);
	assert_false(mli_marks_cover(&m, BASE, BASE + 2 * P));
	assert_true(mli_marks_cover(&m, BASE + 2 * P, BASE + 4 * P));
	mli_marks_forget(&m, 0, UINTPTR_MAX);
	assert_int_equal(m.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(empty_spans_and_edges),
		cmocka_unit_test(random_against_model),
		cmocka_unit_test(full_set_keeps_a_part),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
