/* maps.c: the account of mapped memory (interface and contract in maps.h).
 *
 * The account is the set of pages the program mapped privately and
 * anonymously through the interposers, each counted or not. It is kept as
 * maximal runs of pages in the same state ("ranges"; two touching ranges
 * always differ), which is all that munmap, mprotect and mremap need: a
 * range is not a mapping, and a mapping may span several ranges. V8 and
 * HotSpot make thousands of mappings, so the ranges live in a treap keyed
 * by start address (O(log n) expected per update and lookup, whatever the
 * order in which addresses come, and the kernel hands them out downwards).
 * An update cuts the ranges at the two ends of its span, splits the span's
 * ranges out of the tree, changes them, and joins them back, merging
 * touching ranges of the same state at the ends.
 *
 * Nodes live in one array mapped with the raw system call (never malloc,
 * never counted, never seen by the interposers), grown with mremap; nodes
 * refer to each other by index, so the array may move when it grows. A
 * caller reserves room before its system call (mli_maps_reserve), so an
 * update never needs to grow it and never fails. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "maps.h"

struct node {
	uintptr_t start, end; /* [start, end), whole pages */
	uint32_t l, r;        /* children, 0 = none */
	uint32_t prio;        /* treap priority: a parent's is >= its children's */
	uint32_t counted;
};

static struct node *pool; /* pool[0] is never used: index 0 means none */
static uint32_t cap;      /* nodes the array holds */
static uint32_t used = 1; /* indices below this were handed out once */
static uint32_t free_head, nfree; /* free nodes, linked through .l */
static uint32_t root;
static uint64_t total_counted;
static uint32_t rng = 2463534242u; /* priorities: xorshift32, fixed seed */

#define N(i) pool[i]

/* Above 0 while an update changes the tree or its storage: a fork made
 * then by another thread without the atfork handlers (_Fork,
 * syscall(SYS_fork)) gives a child the account half made, with no thread
 * to finish it (mli_maps_whole). The fence keeps the update's stores after
 * the mark, as another processor sees them; the release, before its
 * removal. Updates nest (a remap is maps and a move; new_node may grow). */
static int updating;

static void begin(void)
{
	__atomic_store_n(&updating, updating + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static void end(void)
{
	__atomic_store_n(&updating, updating - 1, __ATOMIC_RELEASE);
}

static uint32_t next_prio(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static bool grow_storage(uint64_t want);

static bool grow(uint64_t want)
{
	begin();
	bool ok = grow_storage(want);
	end();
	return ok;
}

static bool grow_storage(uint64_t want)
{
	if (want > UINT32_MAX / 2)
		return false;
	size_t bytes = (size_t)want * sizeof(struct node);
	void *p;
	if (!pool)
		p = (void *)syscall(SYS_mmap, NULL, bytes, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	else
		p = (void *)syscall(SYS_mremap, pool, (size_t)cap * sizeof(struct node),
				    bytes, MREMAP_MAYMOVE);
	if (p == MAP_FAILED)
		return false;
	pool = p;
	cap = (uint32_t)want;
	return true;
}

bool mli_maps_reserve(size_t extra)
{
	uint64_t avail = (uint64_t)nfree + (cap - (cap ? used : 0));
	if (avail >= extra)
		return true;
	uint64_t want = (uint64_t)cap * 2;
	if (want < 1024)
		want = 1024;
	if (want < (uint64_t)used + extra)
		want = (uint64_t)used + extra;
	return grow(want);
}

/* Only ever reached if a caller updated without reserving first. */
static void out_of_room(void)
{
	static const char msg[] =
		"memlimits: the mapped-memory account ran out of room (bug)\n";
	if (write(2, msg, sizeof msg - 1) < 0)
		abort();
	abort();
}

static uint32_t new_node(uintptr_t start, uintptr_t end, bool counted)
{
	uint32_t i;
	if (free_head) {
		i = free_head;
		free_head = N(i).l;
		nfree--;
	} else {
		if (used >= cap && !mli_maps_reserve(1))
			out_of_room();
		i = used++;
	}
	N(i).start = start;
	N(i).end = end;
	N(i).l = N(i).r = 0;
	N(i).prio = next_prio();
	N(i).counted = counted;
	return i;
}

static void free_node(uint32_t i)
{
	N(i).l = free_head;
	free_head = i;
	nfree++;
}

/* ---- The treap -------------------------------------------------------- */

/* t's ranges starting below key go to *a, the others to *b. */
static void split(uint32_t t, uintptr_t key, uint32_t *a, uint32_t *b)
{
	if (!t) {
		*a = *b = 0;
		return;
	}
	if (N(t).start < key) {
		uint32_t ra, rb;
		split(N(t).r, key, &ra, &rb);
		N(t).r = ra;
		*a = t;
		*b = rb;
	} else {
		uint32_t la, lb;
		split(N(t).l, key, &la, &lb);
		N(t).l = lb;
		*a = la;
		*b = t;
	}
}

/* Every range of a lies below every range of b. */
static uint32_t merge(uint32_t a, uint32_t b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	if (N(a).prio >= N(b).prio) {
		uint32_t r = merge(N(a).r, b);
		N(a).r = r;
		return a;
	}
	uint32_t l = merge(a, N(b).l);
	N(b).l = l;
	return b;
}

/* The range holding address x, or 0. */
static uint32_t find(uintptr_t x)
{
	uint32_t t = root;
	while (t) {
		if (x < N(t).start)
			t = N(t).l;
		else if (x >= N(t).end)
			t = N(t).r;
		else
			return t;
	}
	return 0;
}

static uint32_t leftmost(uint32_t t)
{
	while (N(t).l)
		t = N(t).l;
	return t;
}

/* Puts the tree m, whose ranges all lie in one gap of the account, back. */
static void put(uint32_t m)
{
	if (!m)
		return;
	uint32_t a, b;
	split(root, N(leftmost(m)).start, &a, &b);
	root = merge(merge(a, m), b);
}

/* Inserts the single node n (in a gap) into the tree t: down to where its
 * priority belongs, then the subtree there splits around it. */
static uint32_t insert(uint32_t t, uint32_t n)
{
	if (!t)
		return n;
	if (N(n).prio > N(t).prio) {
		uint32_t l, r;
		split(t, N(n).start, &l, &r);
		N(n).l = l;
		N(n).r = r;
		return n;
	}
	if (N(n).start < N(t).start) {
		uint32_t l = insert(N(t).l, n);
		N(t).l = l;
	} else {
		uint32_t r = insert(N(t).r, n);
		N(t).r = r;
	}
	return t;
}

static void add(uintptr_t start, uintptr_t end, bool counted)
{
	uint32_t n = new_node(start, end, counted);
	root = insert(root, n);
}

/* So that a range boundary falls at x. */
static void cut(uintptr_t x)
{
	uint32_t t = find(x);
	if (!t || N(t).start == x)
		return;
	uintptr_t end = N(t).end;
	N(t).end = x;
	add(x, end, N(t).counted);
}

/* Takes the ranges of [a, b) out of the account, as a tree. */
static uint32_t extract(uintptr_t a, uintptr_t b)
{
	cut(a);
	cut(b);
	uint32_t l, mr, m, r;
	split(root, a, &l, &mr);
	split(mr, b, &m, &r);
	root = merge(l, r);
	return m;
}

static uint32_t erase(uint32_t t, uintptr_t key)
{
	if (N(t).start == key)
		return merge(N(t).l, N(t).r);
	if (key < N(t).start) {
		uint32_t l = erase(N(t).l, key);
		N(t).l = l;
	} else {
		uint32_t r = erase(N(t).r, key);
		N(t).r = r;
	}
	return t;
}

/* Merges the ranges on either side of x if they touch and agree. */
static void coalesce(uintptr_t x)
{
	if (!x)
		return;
	uint32_t p = find(x - 1), q = find(x);
	if (!p || !q || p == q || N(p).counted != N(q).counted)
		return;
	uintptr_t end = N(q).end;
	root = erase(root, N(q).start);
	free_node(q);
	N(p).end = end;
}

static uint64_t sum_counted(uint32_t t)
{
	uint64_t s = 0;
	for (; t; t = N(t).r) {
		if (N(t).counted)
			s += N(t).end - N(t).start;
		s += sum_counted(N(t).l);
	}
	return s;
}

static void free_tree(uint32_t t)
{
	while (t) {
		free_tree(N(t).l);
		uint32_t r = N(t).r;
		free_node(t);
		t = r;
	}
}

static void shift(uint32_t t, uintptr_t by)
{
	for (; t; t = N(t).r) {
		N(t).start += by;
		N(t).end += by;
		shift(N(t).l, by);
	}
}

static uint32_t clone(uint32_t t)
{
	if (!t)
		return 0;
	uint32_t c = new_node(N(t).start, N(t).end, N(t).counted);
	N(c).prio = N(t).prio;
	uint32_t l = clone(N(t).l);
	uint32_t r = clone(N(t).r);
	N(c).l = l;
	N(c).r = r;
	return c;
}

/* Rebuilds a tree from ranges handed over in address order, merging
 * touching ranges of the same state. */
struct builder {
	uint32_t tree, last;
};

static void build_add(struct builder *b, uint32_t n)
{
	N(n).l = N(n).r = 0;
	if (b->last && N(b->last).end == N(n).start &&
	    N(b->last).counted == N(n).counted) {
		N(b->last).end = N(n).end;
		free_node(n);
		return;
	}
	if (b->last)
		b->tree = merge(b->tree, b->last);
	b->last = n;
}

static uint32_t build_end(struct builder *b)
{
	if (b->last)
		b->tree = merge(b->tree, b->last);
	return b->tree;
}

/* Sets every range of t to the protection p, hands them to b in order, and
 * adds the change in counted bytes to *d. */
static void protect_tree(uint32_t t, enum mli_prot_kind p, struct builder *b,
			 int64_t *d)
{
	while (t) {
		uint32_t l = N(t).l, r = N(t).r;
		protect_tree(l, p, b, d);
		uint64_t len = N(t).end - N(t).start;
		if (p == MLI_PROT_WRITE && !N(t).counted) {
			N(t).counted = 1;
			*d += (int64_t)len;
		} else if (p == MLI_PROT_NONE && N(t).counted) {
			N(t).counted = 0;
			*d -= (int64_t)len;
		}
		build_add(b, t);
		t = r;
	}
}

/* Counted and tracked bytes of [a, b) in the tree t. */
static void visit(uint32_t t, uintptr_t a, uintptr_t b, uint64_t *c,
		  uint64_t *tr, uint64_t *n)
{
	while (t) {
		if (N(t).end <= a) {
			t = N(t).r;
			continue;
		}
		if (N(t).start >= b) {
			t = N(t).l;
			continue;
		}
		uintptr_t s = N(t).start > a ? N(t).start : a;
		uintptr_t e = N(t).end < b ? N(t).end : b;
		*tr += e - s;
		if (N(t).counted)
			*c += e - s;
		(*n)++;
		visit(N(t).l, a, b, c, tr, n);
		t = N(t).r;
	}
}

/* A span that wraps around the address space holds nothing (the kernel
 * refuses such a call; queries come before the kernel sees it). */
static bool bad_span(uintptr_t a, size_t len)
{
	return !len || a + len < a;
}

static uint64_t counted_in(uintptr_t a, size_t len)
{
	uint64_t c = 0, tr = 0, n = 0;
	if (!bad_span(a, len))
		visit(root, a, a + len, &c, &tr, &n);
	return c;
}

void mli_maps_stat(uintptr_t a, size_t len, uint64_t *counted, uint64_t *tracked)
{
	uint64_t c = 0, tr = 0, n = 0;
	if (!bad_span(a, len))
		visit(root, a, a + len, &c, &tr, &n);
	*counted = c;
	*tracked = tr;
}

size_t mli_maps_ranges_in(uintptr_t a, size_t len)
{
	uint64_t c = 0, tr = 0, n = 0;
	if (!bad_span(a, len))
		visit(root, a, a + len, &c, &tr, &n);
	return (size_t)n;
}

/* ---- Updates and queries ---------------------------------------------- */

/* The first range that ends after x, or 0. */
static uint32_t first_after(uintptr_t x)
{
	uint32_t t = root, best = 0;
	while (t) {
		if (N(t).end > x) {
			best = t;
			t = N(t).l;
		} else {
			t = N(t).r;
		}
	}
	return best;
}

/* The common updates, without taking subtrees apart: setting [a, b) to
 * `state` (-1 out of the account, 0 tracked, 1 counted) where the span is
 * in a gap or inside one range. Sets *d and returns true if it made the
 * update; false if the general path must (the span crosses a boundary).
 * Most calls of real programs land here: a new mapping, an unmap, a commit
 * or decommit of part of what one mmap made. */
static bool set_fast(uintptr_t a, uintptr_t b, int state, int64_t *d)
{
	uint32_t n = first_after(a);
	*d = 0;
	if (!n || N(n).start >= b) { /* a gap */
		if (state < 0)
			return true;
		/* Extend a touching neighbour of the same state, or add a range. */
		uint32_t p = a ? find(a - 1) : 0;
		uint32_t q = n && N(n).start == b ? n : 0;
		if (p && (int)N(p).counted != state)
			p = 0;
		if (q && (int)N(q).counted != state)
			q = 0;
		if (p && q) {
			uintptr_t end = N(q).end;
			root = erase(root, N(q).start);
			free_node(q);
			N(p).end = end;
		} else if (p) {
			N(p).end = b;
		} else if (q) {
			N(q).start = a; /* still between its neighbours */
		} else {
			add(a, b, state);
		}
		if (state == 1)
			*d = (int64_t)(b - a);
		return true;
	}
	if (N(n).start > a || N(n).end < b)
		return false; /* spans a boundary */
	if ((int)N(n).counted == state)
		return true;
	int64_t change = (N(n).counted ? -(int64_t)(b - a) : 0) +
			 (state == 1 ? (int64_t)(b - a) : 0);
	if (state < 0) {
		if (N(n).start == a && N(n).end == b) {
			root = erase(root, a);
			free_node(n);
		} else if (N(n).start == a) {
			N(n).start = b;
		} else if (N(n).end == b) {
			N(n).end = a;
		} else {
			uintptr_t end = N(n).end;
			N(n).end = a;
			add(b, end, N(n).counted);
		}
	} else if (N(n).start == a && N(n).end == b) {
		N(n).counted = (uint32_t)state;
		coalesce(a);
		coalesce(b);
	} else {
		/* Part of the range changes state: it becomes two or three. */
		uintptr_t start = N(n).start, end = N(n).end;
		bool was = N(n).counted;
		if (start == a) {
			N(n).start = b; /* still between its neighbours */
		} else {
			N(n).end = a;
			if (end != b)
				add(b, end, was);
		}
		add(a, b, state);
		coalesce(a);
		coalesce(b);
	}
	*d = change;
	return true;
}

static int64_t map(uintptr_t a, size_t len, enum mli_map_kind k)
{
	if (bad_span(a, len))
		return 0;
	int64_t d;
	int state = k == MLI_MAP_OTHER ? -1 : k == MLI_MAP_COUNTED;
	if (set_fast(a, a + len, state, &d)) {
		total_counted += (uint64_t)d;
		return d;
	}
	uint32_t m = extract(a, a + len);
	d = -(int64_t)sum_counted(m);
	free_tree(m);
	if (k != MLI_MAP_OTHER) {
		put(new_node(a, a + len, k == MLI_MAP_COUNTED));
		if (k == MLI_MAP_COUNTED)
			d += (int64_t)len;
		coalesce(a);
		coalesce(a + len);
	}
	total_counted += (uint64_t)d;
	return d;
}

int64_t mli_maps_q_map(uintptr_t a, size_t len, enum mli_map_kind k)
{
	if (bad_span(a, len))
		return 0;
	return (k == MLI_MAP_COUNTED ? (int64_t)len : 0) - (int64_t)counted_in(a, len);
}

int64_t mli_maps_map(uintptr_t a, size_t len, enum mli_map_kind k)
{
	begin();
	int64_t d = map(a, len, k);
	end();
	return d;
}

int64_t mli_maps_unmap(uintptr_t a, size_t len)
{
	return mli_maps_map(a, len, MLI_MAP_OTHER);
}

int64_t mli_maps_q_unmap(uintptr_t a, size_t len)
{
	return -(int64_t)counted_in(a, len);
}

static int64_t protect(uintptr_t a, size_t len, enum mli_prot_kind p)
{
	if (bad_span(a, len) || p == MLI_PROT_KEEP)
		return 0;
	/* Only pages in the account change: nothing if none are, and the fast
	 * path if all are in one range. */
	uint32_t n = first_after(a);
	if (!n || N(n).start >= a + len)
		return 0;
	int64_t d = 0;
	if (N(n).start <= a && N(n).end >= a + len &&
	    set_fast(a, a + len, p == MLI_PROT_WRITE, &d)) {
		total_counted += (uint64_t)d;
		return d;
	}
	uint32_t m = extract(a, a + len);
	if (!m)
		return 0;
	struct builder b = { 0, 0 };
	protect_tree(m, p, &b, &d);
	put(build_end(&b));
	coalesce(a);
	coalesce(a + len);
	total_counted += (uint64_t)d;
	return d;
}

int64_t mli_maps_protect(uintptr_t a, size_t len, enum mli_prot_kind p)
{
	begin();
	int64_t d = protect(a, len, p);
	end();
	return d;
}

int64_t mli_maps_q_protect(uintptr_t a, size_t len, enum mli_prot_kind p)
{
	uint64_t c = 0, tr = 0;
	if (p == MLI_PROT_KEEP)
		return 0;
	mli_maps_stat(a, len, &c, &tr);
	return p == MLI_PROT_WRITE ? (int64_t)(tr - c) : -(int64_t)c;
}

/* What pages added by growing the mapping that ends at `last` are. */
static enum mli_map_kind growth_kind(uintptr_t last)
{
	uint32_t t = find(last);
	return !t ? MLI_MAP_OTHER : N(t).counted ? MLI_MAP_COUNTED : MLI_MAP_TRACKED;
}

static int64_t remap(uintptr_t old, size_t old_len, size_t new_len,
		     uintptr_t to, bool dontunmap)
{
	if (!new_len || to == MLI_MAPS_ANYWHERE || bad_span(to, new_len))
		return 0;
	if (!old_len)
		return map(to, new_len, growth_kind(old));
	if (bad_span(old, old_len))
		return 0;
	enum mli_map_kind g = growth_kind(old + old_len - 1);
	int64_t d = 0;
	if (new_len < old_len)
		d += map(old + new_len, old_len - new_len, MLI_MAP_OTHER);
	if (to == old) {
		if (new_len > old_len)
			d += map(old + old_len, new_len - old_len, g);
		return d;
	}
	size_t keep = new_len < old_len ? new_len : old_len;
	d += map(to, new_len, MLI_MAP_OTHER);
	uint32_t src = extract(old, old + keep);
	uint32_t copy = dontunmap ? clone(src) : 0;
	shift(src, to - old);
	put(src);
	coalesce(to);
	coalesce(to + keep);
	if (copy) {
		uint64_t c = sum_counted(copy);
		put(copy);
		coalesce(old);
		coalesce(old + keep);
		d += (int64_t)c;
		total_counted += c;
	}
	if (new_len > old_len)
		d += map(to + old_len, new_len - old_len, g);
	return d;
}

int64_t mli_maps_remap(uintptr_t old, size_t old_len, size_t new_len,
		       uintptr_t to, bool dontunmap)
{
	begin();
	int64_t d = remap(old, old_len, new_len, to, dontunmap);
	end();
	return d;
}

int64_t mli_maps_q_remap(uintptr_t old, size_t old_len, size_t new_len,
			 uintptr_t to, bool dontunmap)
{
	if (!new_len || (to != MLI_MAPS_ANYWHERE && bad_span(to, new_len)))
		return 0;
	if (!old_len)
		return (growth_kind(old) == MLI_MAP_COUNTED ? (int64_t)new_len : 0) -
		       (to == MLI_MAPS_ANYWHERE ? 0 : (int64_t)counted_in(to, new_len));
	if (bad_span(old, old_len))
		return 0;
	enum mli_map_kind g = growth_kind(old + old_len - 1);
	int64_t d = 0;
	if (new_len < old_len)
		d -= (int64_t)counted_in(old + new_len, old_len - new_len);
	if (to == old)
		return new_len > old_len
			       ? d + mli_maps_q_map(old + old_len, new_len - old_len, g)
			       : d;
	size_t keep = new_len < old_len ? new_len : old_len;
	if (to != MLI_MAPS_ANYWHERE)
		d -= (int64_t)counted_in(to, new_len);
	if (dontunmap)
		d += (int64_t)counted_in(old, keep);
	if (new_len > old_len && g == MLI_MAP_COUNTED)
		d += (int64_t)(new_len - old_len);
	return d;
}

/* ---- For the tests ---------------------------------------------------- */

static void dump(uint32_t t, struct mli_maps_range *out, size_t max, size_t *n)
{
	for (; t; t = N(t).r) {
		dump(N(t).l, out, max, n);
		if (*n < max) {
			out[*n].start = N(t).start;
			out[*n].end = N(t).end;
			out[*n].counted = N(t).counted;
		}
		(*n)++;
	}
}

size_t mli_maps_dump(struct mli_maps_range *out, size_t max)
{
	size_t n = 0;
	dump(root, out, max, &n);
	return n;
}

uint64_t mli_maps_counted(void)
{
	return total_counted;
}

struct check_state {
	uintptr_t prev_end;
	int prev_counted; /* -1 before the first range */
	uint64_t counted, nodes;
	int err;
};

static void check(uint32_t t, uint32_t parent_prio, struct check_state *s)
{
	if (!t || s->err)
		return;
	if (N(t).prio > parent_prio)
		s->err = 1; /* heap order */
	check(N(t).l, N(t).prio, s);
	if (N(t).start >= N(t).end)
		s->err = 2; /* empty range */
	if (s->prev_counted >= 0 && N(t).start < s->prev_end)
		s->err = 3; /* overlap or out of order */
	if (s->prev_counted >= 0 && N(t).start == s->prev_end &&
	    s->prev_counted == (int)N(t).counted)
		s->err = 4; /* not merged */
	s->prev_end = N(t).end;
	s->prev_counted = (int)N(t).counted;
	if (N(t).counted)
		s->counted += N(t).end - N(t).start;
	s->nodes++;
	check(N(t).r, N(t).prio, s);
}

int mli_maps_check(void)
{
	struct check_state s = { 0, -1, 0, 0, 0 };
	check(root, UINT32_MAX, &s);
	if (s.err)
		return s.err;
	if (s.counted != total_counted)
		return 5;
	if (s.nodes + nfree + 1 != used)
		return 6; /* a node lost or counted twice */
	return 0;
}

static int height(uint32_t t)
{
	if (!t)
		return 0;
	int l = height(N(t).l), r = height(N(t).r);
	return 1 + (l > r ? l : r);
}

int mli_maps_height(void)
{
	return height(root);
}

void mli_maps_reset(void)
{
	begin();
	free_tree(root);
	root = 0;
	total_counted = 0;
	end();
}

bool mli_maps_whole(void)
{
	return __atomic_load_n(&updating, __ATOMIC_ACQUIRE) == 0;
}

/* Nothing of the old account is read: the links of a half-made tree may
 * lead anywhere, and a growth may have moved the storage away from `pool`.
 * Its pages stay mapped, unused, in the child. */
void mli_maps_forget(void)
{
	pool = NULL;
	cap = 0;
	root = 0;
	used = 1;
	free_head = nfree = 0;
	total_counted = 0;
	updating = 0;
}
