/* unit_maps: the account of mapped memory (core/maps.c) linked directly,
 * without the preload: hand-made cases of every operation, a seeded
 * randomized comparison with a page-by-page model over two small address
 * windows, and thousands of ranges (the tree stays balanced). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/maps.h"

#define P ((uintptr_t)4096)

static int reset(void **state)
{
	(void)state;
	mli_maps_reset();
	return 0;
}

/* Every update reserves first, as the interposers do. */
static int64_t map(uintptr_t a, uintptr_t len, enum mli_map_kind k)
{
	assert_true(mli_maps_reserve(6));
	int64_t q = mli_maps_q_map(a, len, k);
	int64_t d = mli_maps_map(a, len, k);
	assert_int_equal(q, d);
	assert_int_equal(mli_maps_check(), 0);
	return d;
}

static int64_t unmap(uintptr_t a, uintptr_t len)
{
	assert_true(mli_maps_reserve(6));
	int64_t q = mli_maps_q_unmap(a, len);
	int64_t d = mli_maps_unmap(a, len);
	assert_int_equal(q, d);
	assert_int_equal(mli_maps_check(), 0);
	return d;
}

static int64_t protect(uintptr_t a, uintptr_t len, enum mli_prot_kind p)
{
	assert_true(mli_maps_reserve(6));
	int64_t q = mli_maps_q_protect(a, len, p);
	int64_t d = mli_maps_protect(a, len, p);
	assert_int_equal(q, d);
	assert_int_equal(mli_maps_check(), 0);
	return d;
}

static int64_t remap(uintptr_t old, uintptr_t ol, uintptr_t nl, uintptr_t to,
		     bool dontunmap)
{
	assert_true(mli_maps_reserve(10 + (dontunmap ? mli_maps_ranges_in(old, ol) : 0)));
	int64_t q = mli_maps_q_remap(old, ol, nl, to, dontunmap);
	int64_t d = mli_maps_remap(old, ol, nl, to, dontunmap);
	assert_int_equal(q, d);
	assert_int_equal(mli_maps_check(), 0);
	return d;
}

/* The account's ranges are exactly these (start, end, counted) triples. */
static void expect_ranges(const uintptr_t *want, size_t n)
{
	struct mli_maps_range r[16];
	size_t got = mli_maps_dump(r, 16);
	if (got != n) {
		for (size_t i = 0; i < got && i < 16; i++)
			printf("  range %zu: %#lx-%#lx %s\n", i, (unsigned long)r[i].start,
			       (unsigned long)r[i].end, r[i].counted ? "counted" : "tracked");
	}
	assert_int_equal(got, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(r[i].start, want[3 * i]);
		assert_int_equal(r[i].end, want[3 * i + 1]);
		assert_int_equal(r[i].counted, want[3 * i + 2]);
	}
}

static const uintptr_t A = 0x10000000;

/* ---- hand-made cases ------------------------------------------------- */

static void new_mapping_and_fixed_over(void **state)
{
	(void)state;
	assert_int_equal(map(A, 10 * P, MLI_MAP_COUNTED), 10 * P);
	assert_int_equal(mli_maps_counted(), 10 * P);
	/* MAP_FIXED, PROT_NONE, over the middle: those pages stop counting. */
	assert_int_equal(map(A + 2 * P, 3 * P, MLI_MAP_TRACKED), -3 * (int64_t)P);
	const uintptr_t w1[] = { A, A + 2 * P, 1, A + 2 * P, A + 5 * P, 0,
				 A + 5 * P, A + 10 * P, 1 };
	expect_ranges(w1, 3);
	/* Writable over all of it and more: only the new pages add. */
	assert_int_equal(map(A + P, 12 * P, MLI_MAP_COUNTED), 6 * P);
	const uintptr_t w2[] = { A, A + 13 * P, 1 };
	expect_ranges(w2, 1);
	/* A file mapping (or a shared one) over part: out of the account. */
	assert_int_equal(map(A + 12 * P, 4 * P, MLI_MAP_OTHER), -(int64_t)P);
	const uintptr_t w3[] = { A, A + 12 * P, 1 };
	expect_ranges(w3, 1);
	assert_int_equal(mli_maps_counted(), 12 * P);
	/* The same again changes nothing. */
	assert_int_equal(map(A, 12 * P, MLI_MAP_COUNTED), 0);
	expect_ranges(w3, 1);
}

static void unmap_partial_spanning_holes(void **state)
{
	(void)state;
	map(A, 10 * P, MLI_MAP_COUNTED);
	assert_int_equal(unmap(A + 4 * P, 2 * P), -2 * (int64_t)P);
	const uintptr_t w1[] = { A, A + 4 * P, 1, A + 6 * P, A + 10 * P, 1 };
	expect_ranges(w1, 2);
	/* Several ranges, holes between them, and a tracked one. */
	map(A + 12 * P, 2 * P, MLI_MAP_TRACKED);
	map(A + 16 * P, 3 * P, MLI_MAP_COUNTED);
	assert_int_equal(unmap(A + 2 * P, 15 * P), -(2 + 4 + 1) * (int64_t)P);
	const uintptr_t w2[] = { A, A + 2 * P, 1, A + 17 * P, A + 19 * P, 1 };
	expect_ranges(w2, 2);
	/* Unmapping what the account never had. */
	assert_int_equal(unmap(A + 100 * P, 50 * P), 0);
	expect_ranges(w2, 2);
	assert_int_equal(unmap(A, 19 * P), -4 * (int64_t)P);
	expect_ranges(NULL, 0);
	assert_int_equal(mli_maps_counted(), 0);
}

static void protect_commit_decommit(void **state)
{
	(void)state;
	const uintptr_t R = A;
	/* A reservation (PROT_NONE, NORESERVE or not): nothing counted. */
	assert_int_equal(map(R, 16 * P, MLI_MAP_TRACKED), 0);
	assert_int_equal(protect(R + 4 * P, 4 * P, MLI_PROT_WRITE), 4 * P);
	/* Committing again what is committed adds only the new pages. */
	assert_int_equal(protect(R + 6 * P, 6 * P, MLI_PROT_WRITE), 4 * P);
	const uintptr_t w1[] = { R, R + 4 * P, 0, R + 4 * P, R + 12 * P, 1,
				 R + 12 * P, R + 16 * P, 0 };
	expect_ranges(w1, 3);
	/* Read-only keeps what was counted (as the kernel's commit charge). */
	assert_int_equal(protect(R, 16 * P, MLI_PROT_KEEP), 0);
	expect_ranges(w1, 3);
	/* Decommit: PROT_NONE. */
	assert_int_equal(protect(R + 2 * P, 8 * P, MLI_PROT_NONE), -6 * (int64_t)P);
	const uintptr_t w2[] = { R, R + 10 * P, 0, R + 10 * P, R + 12 * P, 1,
				 R + 12 * P, R + 16 * P, 0 };
	expect_ranges(w2, 3);
	/* Ranges not in the account are ignored, also around tracked ones. */
	const uintptr_t T = A + 64 * P;
	assert_int_equal(protect(T, 8 * P, MLI_PROT_WRITE), 0);
	map(T + 2 * P, 2 * P, MLI_MAP_TRACKED);
	assert_int_equal(protect(T, 8 * P, MLI_PROT_WRITE), 2 * P);
	const uintptr_t w3[] = { R, R + 10 * P, 0, R + 10 * P, R + 12 * P, 1,
				 R + 12 * P, R + 16 * P, 0, T + 2 * P, T + 4 * P, 1 };
	expect_ranges(w3, 4);
	assert_int_equal(protect(R, 16 * P, MLI_PROT_NONE), -2 * (int64_t)P);
	assert_int_equal(mli_maps_counted(), 2 * P);
}

static void remap_every_form(void **state)
{
	(void)state;
	const uintptr_t M = A, X = A + 100 * P, Y = A + 200 * P, Z = A + 300 * P;
	map(M, 4 * P, MLI_MAP_COUNTED);
	/* Grow in place: the new pages are what the mapping is. */
	assert_int_equal(remap(M, 4 * P, 8 * P, M, false), 4 * P);
	/* Shrink. */
	assert_int_equal(remap(M, 8 * P, 2 * P, M, false), -6 * (int64_t)P);
	/* Move and grow (MREMAP_MAYMOVE): the source is gone. */
	assert_int_equal(remap(M, 2 * P, 6 * P, X, false), 4 * P);
	const uintptr_t w1[] = { X, X + 6 * P, 1 };
	expect_ranges(w1, 1);
	/* Move and shrink onto a counted mapping (MREMAP_FIXED replaces it). */
	map(Y, 4 * P, MLI_MAP_COUNTED);
	assert_int_equal(remap(X, 6 * P, 3 * P, Y, false), -6 * (int64_t)P);
	const uintptr_t w2[] = { Y, Y + 4 * P, 1 }; /* 3 moved + 1 left of Y's */
	expect_ranges(w2, 1);
	/* MREMAP_DONTUNMAP: the source stays mapped (and counted): both count. */
	assert_int_equal(remap(Y, 3 * P, 3 * P, Z, true), 3 * P);
	const uintptr_t w3[] = { Y, Y + 4 * P, 1, Z, Z + 3 * P, 1 };
	expect_ranges(w3, 2);
	/* A moved mapping keeps its pages' states. */
	map(M, 6 * P, MLI_MAP_TRACKED);
	protect(M + 2 * P, 2 * P, MLI_PROT_WRITE);
	assert_int_equal(remap(M, 6 * P, 6 * P, X, false), 0);
	const uintptr_t w4[] = { X, X + 2 * P, 0, X + 2 * P, X + 4 * P, 1,
				 X + 4 * P, X + 6 * P, 0, Y, Y + 4 * P, 1,
				 Z, Z + 3 * P, 1 };
	expect_ranges(w4, 5);
	/* Growing a PROT_NONE reservation adds nothing counted. */
	assert_int_equal(remap(X, 6 * P, 10 * P, X, false), 0);
	/* Growing a mapping the account does not have clears stale ranges. */
	map(A + 51 * P, P, MLI_MAP_COUNTED);
	assert_int_equal(remap(A + 50 * P, P, 3 * P, A + 50 * P, false), -(int64_t)P);
	/* old_len 0 (a duplicate of a shared mapping) replaces the destination
	 * with what the source's first page is: not in the account here, */
	assert_int_equal(remap(A + 400 * P, 0, 4 * P, Z, false), -3 * (int64_t)P);
	/* counted there (Y), and so counted still when the source goes (a
	 * duplicate kept 400 MiB uncounted once the source was unmapped: a
	 * held-out check). */
	assert_int_equal(mli_maps_q_remap(Y, 0, 2 * P, MLI_MAPS_ANYWHERE, false),
			 2 * P);
	assert_int_equal(remap(Y, 0, 2 * P, A + 600 * P, false), 2 * P);
	assert_int_equal(unmap(A + 600 * P, 2 * P), -2 * (int64_t)P);
	/* The query for a move to an address the kernel picks: the growth only. */
	assert_int_equal(mli_maps_q_remap(Y, 4 * P, 9 * P, MLI_MAPS_ANYWHERE, false),
			 5 * P);
	assert_int_equal(mli_maps_q_remap(Y, 4 * P, 4 * P, MLI_MAPS_ANYWHERE, true),
			 4 * P);
}

/* ---- thousands of ranges --------------------------------------------- */

static int log2i(uint64_t n)
{
	int l = 0;
	while (n >>= 1)
		l++;
	return l;
}

static void many_ranges(void **state)
{
	(void)state;
	const uint64_t n = 100000;
	/* Downwards, as the kernel hands out addresses: every other page, so
	 * that none merge. */
	for (uint64_t i = 0; i < n; i++) {
		assert_true(mli_maps_reserve(6));
		mli_maps_map(A + (n - i) * 2 * P, P, MLI_MAP_COUNTED);
	}
	assert_int_equal(mli_maps_check(), 0);
	assert_int_equal(mli_maps_dump(NULL, 0), n);
	int h = mli_maps_height();
	printf("  %lu ranges inserted downwards: height %d\n", (unsigned long)n, h);
	assert_true(h <= 4 * log2i(n) + 8);
	/* Commit and decommit pattern over all of them, one call each way. */
	mli_maps_reserve(6);
	assert_int_equal(mli_maps_protect(A, (2 * n + 2) * P, MLI_PROT_NONE),
			 -(int64_t)(n * P));
	assert_int_equal(mli_maps_check(), 0);
	/* Random order, with unmaps between. */
	uint32_t x = 12345;
	for (uint64_t i = 0; i < 2 * n; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		uintptr_t a = A + (uintptr_t)(x % (4 * n)) * P;
		mli_maps_reserve(6);
		if (i % 3 == 2)
			mli_maps_unmap(a, P);
		else
			mli_maps_map(a, P, (x >> 20) & 1 ? MLI_MAP_COUNTED : MLI_MAP_TRACKED);
	}
	assert_int_equal(mli_maps_check(), 0);
	size_t nr = mli_maps_dump(NULL, 0);
	h = mli_maps_height();
	printf("  %zu ranges after random updates: height %d\n", nr, h);
	assert_true(h <= 4 * log2i(nr) + 8);
	mli_maps_reserve(6);
	int64_t c = (int64_t)mli_maps_counted();
	assert_int_equal(mli_maps_unmap(A, (4 * n + 2) * P), -c);
	assert_int_equal(mli_maps_counted(), 0);
	assert_int_equal(mli_maps_dump(NULL, 0), 0);
	assert_int_equal(mli_maps_check(), 0);
}

/* ---- the randomized model --------------------------------------------- */

/* Two windows of W pages far apart; page i of the model is at addr(i). */
#define W 40
static const uintptr_t base[2] = { 0x10000000, 0x7f0000000000 };
static uint8_t model[2 * W]; /* 0 not in the account, 1 tracked, 2 counted */
static uint64_t rnd_state;

static uint32_t rnd(uint32_t n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint32_t)(rnd_state % n);
}

static uintptr_t addr(int page)
{
	return base[page / W] + (uintptr_t)(page % W) * P;
}

static int64_t model_counted(void)
{
	int64_t c = 0;
	for (int i = 0; i < 2 * W; i++)
		c += model[i] == 2;
	return c * (int64_t)P;
}

static void model_compare(void)
{
	struct mli_maps_range r[2 * W];
	size_t n = mli_maps_dump(r, 2 * W), k = 0;
	for (int i = 0; i < 2 * W;) {
		if (!model[i]) {
			i++;
			continue;
		}
		int j = i;
		while (j + 1 < 2 * W && (j + 1) % W != 0 && model[j + 1] == model[i])
			j++;
		assert_true(k < n);
		assert_int_equal(r[k].start, addr(i));
		assert_int_equal(r[k].end, addr(j) + P);
		assert_int_equal(r[k].counted, model[i] == 2);
		k++;
		i = j + 1;
	}
	assert_int_equal(k, n);
	assert_int_equal(mli_maps_counted(), model_counted());
	assert_int_equal(mli_maps_check(), 0);
}

/* A span of n pages inside one window: its first page. */
static int span(int n)
{
	int w = (int)rnd(2);
	return w * W + (int)rnd((uint32_t)(W - n + 1));
}

static void random_op(void)
{
	int64_t before = model_counted();
	uint8_t save[2 * W];
	int op = (int)rnd(4);
	if (op == 0 || op == 1) { /* map or unmap */
		int n = 1 + (int)rnd(12), p = span(n);
		int k = op == 1 ? 0 : (int)rnd(3);
		for (int i = p; i < p + n; i++)
			model[i] = (uint8_t)k;
		enum mli_map_kind kind = k == 0 ? MLI_MAP_OTHER
					 : k == 1 ? MLI_MAP_TRACKED : MLI_MAP_COUNTED;
		int64_t d = op == 1 ? unmap(addr(p), n * P) : map(addr(p), n * P, kind);
		assert_int_equal(d, model_counted() - before);
	} else if (op == 2) { /* mprotect */
		int n = 1 + (int)rnd(20), p = span(n), k = (int)rnd(3);
		for (int i = p; i < p + n; i++)
			if (model[i])
				model[i] = k == 0 ? 2 : k == 1 ? 1 : model[i];
		enum mli_prot_kind pk = k == 0 ? MLI_PROT_WRITE
					: k == 1 ? MLI_PROT_NONE : MLI_PROT_KEEP;
		assert_int_equal(protect(addr(p), n * P, pk), model_counted() - before);
	} else { /* mremap */
		int on = (int)rnd(10), nn = 1 + (int)rnd(10);
		int form = (int)rnd(3); /* 0 in place, 1 moved, 2 moved, DONTUNMAP */
		if (form == 2)
			nn = on ? on : 1, on = nn;
		if (form == 0 && !on)
			on = 1;
		int big = on > nn ? on : nn;
		int o = span(form == 0 ? big : (on ? on : 1)), t;
		if (form == 0) {
			t = o;
		} else {
			/* A destination disjoint from the source (the kernel's rule). */
			do
				t = span(nn);
			while (t / W == o / W && t < o + on && o < t + nn);
		}
		memcpy(save, model, sizeof model);
		int keep = on < nn ? on : nn;
		uint8_t g = on ? model[o + on - 1] : 0;
		if (!on) { /* a duplicate: what the source's first page is */
			uint8_t first = save[o];
			for (int i = t; i < t + nn; i++)
				model[i] = first;
		} else {
			for (int i = o + keep; i < o + on; i++)
				model[i] = 0;
			if (t != o) {
				for (int i = t; i < t + nn; i++)
					model[i] = 0;
				if (form != 2)
					for (int i = o; i < o + keep; i++)
						model[i] = 0;
				for (int i = 0; i < keep; i++)
					model[t + i] = save[o + i];
			}
			for (int i = t + on; i < t + nn; i++)
				model[i] = g;
		}
		/* The query for a move to where the kernel pleases bounds the
		 * change from above (it assumes an empty destination). */
		if (t != o) {
			uint64_t dest = 0, tr = 0;
			mli_maps_stat(addr(t), nn * P, &dest, &tr);
			int64_t any = mli_maps_q_remap(addr(o), on * P, nn * P,
						       MLI_MAPS_ANYWHERE, form == 2);
			assert_int_equal(any, model_counted() - before + (int64_t)dest);
		}
		int64_t d = remap(addr(o), on * P, nn * P, addr(t), form == 2);
		assert_int_equal(d, model_counted() - before);
	}
	model_compare();
}

static void randomized_against_model(void **state)
{
	(void)state;
	const char *s = getenv("MLT_SEED");
	uint64_t seed0 = s ? strtoull(s, NULL, 0) : 1;
	for (uint64_t seed = seed0; seed < seed0 + 20; seed++) {
		mli_maps_reset();
		memset(model, 0, sizeof model);
		rnd_state = seed * 0x9e3779b97f4a7c15ull | 1;
		for (int i = 0; i < 5000; i++)
			random_op();
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(new_mapping_and_fixed_over, reset),
		cmocka_unit_test_setup(unmap_partial_spanning_holes, reset),
		cmocka_unit_test_setup(protect_commit_decommit, reset),
		cmocka_unit_test_setup(remap_every_form, reset),
		cmocka_unit_test_setup(many_ranges, reset),
		cmocka_unit_test_setup(randomized_against_model, reset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
