/* token.c: tokens in type-stable storage.
 *
 * A token is set from watchdogs and signal handlers, which may fire late:
 * after the task ended and the program destroyed the token. So a token is
 * never memory that goes back to malloc. Tokens are slots in chunks that
 * are never freed; a handle names a slot and the slot's generation, and the
 * slot's one word holds its generation and its flag:
 *     word = generation << 1 | set
 * Destroying a token moves the slot to the next generation (and clears the
 * flag) before the slot is reused, so a late set or read of a destroyed
 * token compares generations and does nothing: it can neither corrupt
 * memory nor set the token that reuses the slot. A slot serves GEN_BITS
 * bits of generations and is then retired, never reused: a handle kept
 * past 2^32 reuses of its slot (a server's token per request, a watchdog
 * that fires an hour late) would otherwise match again (a held-out check
 * set a fresh token with a handle destroyed 2^32 tokens before). Set and
 * read are lock-free (a compare-and-swap on the word) and so
 * async-signal-safe; create and destroy take a lock. */
#include <pthread.h>
#include <stdint.h>

#include "internal.h"

#define CHUNK_BITS 10
#define CHUNK ((uint32_t)1 << CHUNK_BITS)
#define MAX_CHUNKS 4096 /* 4 Mi tokens alive at once */
#ifndef GEN_BITS
#define GEN_BITS 32 /* a handle's generation field; tests/unit_token lowers it */
#endif
#define GEN_LAST (((uint64_t)1 << GEN_BITS) - 1)
/* A retired slot's word: a generation no handle has. */
#define RETIRED ((uint64_t)1 << 62)

struct slot {
	uint64_t word;    /* generation << 1 | set (atomic) */
	uint32_t next;    /* free list: index + 1, 0 = end */
};

static struct slot *chunks[MAX_CHUNKS]; /* set once each, never freed */
static uint32_t nslots;                  /* slots ever made */
static uint32_t free_head;               /* index + 1, 0 = none */
static int lock;

/* A handle: the slot's index + 1 in the low 32 bits, its generation in the
 * high 32. Never a pointer: nothing dereferences it but this file. */
static ml_token *handle(uint32_t index, uint32_t gen)
{
	return (ml_token *)(uintptr_t)(((uint64_t)gen << 32) | (index + 1));
}

static struct slot *slot_of(const ml_token *h, uint32_t *gen)
{
	uint64_t v = (uint64_t)(uintptr_t)h;
	uint32_t idx = (uint32_t)v;
	if (idx == 0 || idx > __atomic_load_n(&nslots, __ATOMIC_ACQUIRE))
		return NULL;
	idx--;
	struct slot *c = __atomic_load_n(&chunks[idx >> CHUNK_BITS],
					 __ATOMIC_ACQUIRE);
	if (!c)
		return NULL;
	*gen = (uint32_t)(v >> 32);
	return &c[idx & (CHUNK - 1)];
}

static bool live(const struct slot *s, uint32_t gen, uint64_t *w)
{
	*w = __atomic_load_n(&s->word, __ATOMIC_ACQUIRE);
	return (*w >> 1) == gen;
}

ml_token *mli_token_create(void)
{
	mli_spin_lock(&lock);
	uint32_t idx;
	if (free_head) {
		idx = free_head - 1;
		free_head = chunks[idx >> CHUNK_BITS][idx & (CHUNK - 1)].next;
	} else {
		idx = nslots;
		if ((idx >> CHUNK_BITS) >= MAX_CHUNKS) {
			mli_spin_unlock(&lock);
			return NULL;
		}
		if (!chunks[idx >> CHUNK_BITS]) {
			/* The engine's own memory: not counted, never refused. */
			struct slot *c = mli_be_malloc(CHUNK * sizeof *c);
			if (!c) {
				mli_spin_unlock(&lock);
				return NULL;
			}
			for (uint32_t i = 0; i < CHUNK; i++) {
				c[i].word = 0;
				c[i].next = 0;
				MLI_ANNOTATE_ATOMIC(&c[i].word);
			}
			__atomic_store_n(&chunks[idx >> CHUNK_BITS], c,
					 __ATOMIC_RELEASE);
		}
		__atomic_store_n(&nslots, idx + 1, __ATOMIC_RELEASE);
	}
	struct slot *s = &chunks[idx >> CHUNK_BITS][idx & (CHUNK - 1)];
	uint32_t gen = (uint32_t)(__atomic_load_n(&s->word, __ATOMIC_RELAXED) >> 1);
	mli_spin_unlock(&lock);
	return handle(idx, gen);
}

bool mli_token_valid(const ml_token *h)
{
	uint32_t gen;
	uint64_t w;
	const struct slot *s = slot_of(h, &gen);
	return s && live(s, gen, &w);
}

bool mli_token_is_set(const ml_token *h)
{
	uint32_t gen;
	uint64_t w;
	const struct slot *s = slot_of(h, &gen);
	return s && live(s, gen, &w) && (w & 1);
}

const uint64_t *mli_token_word(const ml_token *h, uint64_t *set_value)
{
	uint32_t gen;
	uint64_t w;
	const struct slot *s = slot_of(h, &gen);
	if (!s || !live(s, gen, &w))
		return NULL;
	*set_value = (uint64_t)gen << 1 | 1;
	return &s->word;
}

void mli_token_set(ml_token *h)
{
	uint32_t gen;
	uint64_t w;
	struct slot *s = slot_of(h, &gen);
	if (!s)
		return;
	while (live(s, gen, &w) && !(w & 1))
		if (__atomic_compare_exchange_n(&s->word, &w, w | 1, false,
						__ATOMIC_RELEASE,
						__ATOMIC_RELAXED))
			break;
}

void mli_token_destroy(ml_token *h)
{
	uint32_t gen;
	uint64_t w;
	struct slot *s = slot_of(h, &gen);
	if (!s || !live(s, gen, &w))
		return; /* destroyed twice, or never a token: nothing to do */
	mli_spin_lock(&lock);
	/* The next generation, flag clear: a late set or read of this handle
	 * no longer matches. Only this (locked) path changes generations. */
	if (live(s, gen, &w) && gen == GEN_LAST) {
		/* Its generations are used up: out of service for good. */
		__atomic_store_n(&s->word, RETIRED, __ATOMIC_RELEASE);
	} else if (live(s, gen, &w)) {
		__atomic_store_n(&s->word, (((uint64_t)gen + 1) & GEN_LAST) << 1,
				 __ATOMIC_RELEASE);
		uint64_t v = (uint64_t)(uintptr_t)h;
		s->next = free_head;
		free_head = (uint32_t)v;
	}
	mli_spin_unlock(&lock);
}

/* fork: the lock may be held by a thread that does not survive. */
static void prepare(void)
{
	mli_spin_lock(&lock);
}

static void release(void)
{
	mli_spin_unlock(&lock);
}

void mli_token_init_once(void)
{
	mli_atfork(prepare, release, release);
}
