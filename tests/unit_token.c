/* unit_token: core/token.c's slots with 3 bits of generation instead of 32,
 * so that a slot's generations run out in 8 uses instead of 2^32: a
 * destroyed token's handle must never match again, not even once the
 * slot's generation would wrap (a held-out check set a fresh token through
 * a handle destroyed 2^32 tokens before, in 75 s). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#define GEN_BITS 3
#include "core/token.c"

/* What token.c takes from the rest of the engine. */
void mli_spin_lock(int *l)
{
	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
		;
}

void *mli_be_malloc(size_t n)
{
	return malloc(n);
}

void mli_atfork(void (*pre)(void), void (*parent)(void), void (*child)(void))
{
	(void)pre, (void)parent, (void)child;
}

static uint32_t index_of(const ml_token *h)
{
	return (uint32_t)(uintptr_t)h;
}

static void slot_retired_not_reused(void **state)
{
	(void)state;
	ml_token *old[8];
	for (int g = 0; g < 8; g++) {
		old[g] = mli_token_create();
		assert_non_null(old[g]);
		/* The same slot each time (the free list is last in, first out),
		 * a new generation each time. */
		assert_int_equal(index_of(old[g]), index_of(old[0]));
		for (int k = 0; k < g; k++)
			assert_ptr_not_equal(old[g], old[k]);
		mli_token_destroy(old[g]);
	}
	/* Generations 0-7 used: the next token is in another slot. */
	ml_token *fresh = mli_token_create();
	assert_non_null(fresh);
	assert_int_not_equal(index_of(fresh), index_of(old[0]));
	for (int g = 0; g < 8; g++) {
		assert_ptr_not_equal(fresh, old[g]);
		mli_token_set(old[g]); /* a watchdog firing late */
		assert_false(mli_token_valid(old[g]));
		assert_false(mli_token_is_set(old[g]));
	}
	assert_true(mli_token_valid(fresh));
	assert_false(mli_token_is_set(fresh));
	mli_token_set(fresh);
	assert_true(mli_token_is_set(fresh));
	mli_token_destroy(fresh);
	mli_token_destroy(old[0]); /* long gone: nothing happens */
}

static void late_set_within_generations(void **state)
{
	(void)state;
	ml_token *a = mli_token_create();
	mli_token_destroy(a);
	ml_token *b = mli_token_create(); /* a's slot, next generation */
	assert_int_equal(index_of(a), index_of(b));
	mli_token_set(a);
	assert_false(mli_token_is_set(b));
	mli_token_destroy(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(slot_retired_not_reused),
		cmocka_unit_test(late_set_within_generations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
