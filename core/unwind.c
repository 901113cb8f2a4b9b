/* unwind.c: call stacks for the profiler.
 *
 * glibc's backtrace() runs libgcc's unwinder, which finds and interprets a
 * function's unwind table (.eh_frame) again at every frame of every sample:
 * about 2,000 instructions a frame, several times the profiler's budget.
 * Return addresses repeat (a program allocates from few places), so this
 * file keeps, per return address, the one rule the walk needs: where the
 * caller's frame starts (the CFA: %rsp or %rbp plus an offset) and where
 * %rbp was saved. A cached frame costs about forty instructions. The rules
 * come from the same tables libgcc reads, found with glibc's
 * _dl_find_object (lock-free and async-signal-safe); a frame whose rule is
 * not one of these simple forms (a signal frame, a stack realigned through
 * a DWARF expression, code in no object) makes the whole stack come from
 * backtrace(), so stacks are always libgcc's.
 *
 * The cache holds no lock: an entry is two words, the rule and the rule
 * XOR the return address, so a torn read is a miss. It is emptied when
 * the dynamic linker has unloaded an object since the last walk (glibc's
 * count of unloads, dlpi_subs, read once a walk), because another library
 * may be mapped where the closed one was, with other rules at the same
 * addresses; that includes glibc's own unloads (iconv's modules), which
 * wrapping dlclose would miss. dl_iterate_phdr takes the dynamic linker's
 * write lock for a moment, which glibc does not reset in a fork child:
 * the calls are fenced off around fork (read_subs_fenced), and a child
 * resets the lock if another thread held it at the fork. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "symbols.h"

/* The fork gate around dl_iterate_phdr (read_subs_fenced). */
static int gate_closed, in_iterate;
static __thread int iterating_here; /* this thread's calls in flight */

/* Declared in output.h, whose <signal.h> clashes with this file's names. */
void mli_unwind_fork_prepare(void);
void mli_unwind_fork_parent(void);
void mli_unwind_fork_child(void);

/* glibc's dl_load_write_lock, found in _rtld_global (below), or NULL. */
static pthread_mutex_t *loader_write_lock;

struct find_lock {
	const char *base;
	size_t len;
	int tid, n;
	const int *found;
};

/* Inside dl_iterate_phdr's callback this thread holds the write lock: the
 * one recursive mutex of _rtld_global that it owns once (glibc's layout:
 * __lock, __count, __owner, __nusers, __kind). */
static int find_lock_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)info;
	(void)size;
	struct find_lock *f = arg;
	for (size_t o = 0; o + sizeof(pthread_mutex_t) <= f->len;
	     o += _Alignof(pthread_mutex_t)) {
		const int *m = (const int *)(f->base + o);
		if (m[0] != 0 && m[1] == 1 && m[2] == f->tid &&
		    m[4] == PTHREAD_MUTEX_RECURSIVE_NP) {
			f->found = m;
			f->n++;
		}
	}
	return 1; /* one call is enough */
}

/* Finds the loader's write lock, in the profiling process (a fork's
 * prepare handler, in the forking thread, none of ours iterating): the
 * lock this thread held inside the callback and does not outside. Until it
 * is found: a fork from inside a dl_iterate_phdr callback of the program
 * holds it already, twice in ours, and the next fork looks again. */
static void find_loader_write_lock(void)
{
	if (loader_write_lock || !mli_prof.enabled)
		return;
	void *g = dlsym(RTLD_DEFAULT, "_rtld_global");
	Dl_info di;
	const ElfW(Sym) *sym = NULL;
	if (!g || !dladdr1(g, &di, (void **)&sym, RTLD_DL_SYMENT) || !sym ||
	    sym->st_size < sizeof(pthread_mutex_t))
		return;
	struct find_lock f = { g, sym->st_size, (int)syscall(SYS_gettid), 0, NULL };
	dl_iterate_phdr(find_lock_cb, &f);
	if (f.n == 1 && f.found[0] == 0 && f.found[2] == 0)
		loader_write_lock = (pthread_mutex_t *)f.found;
}

/* At start-up, when the process has one thread: the lookup needs the
 * loader's lock (dlsym), which a fork's prepare handler may not wait for
 * while it holds the mapped-memory account's: a thread in dlopen holds the
 * loader's lock while a constructor maps, which waits for the account's
 * (15 of 20 forks hung in the profiling build: a held-out check). The
 * fork looks again only if this found nothing. */
void mli_unwind_start(void)
{
	find_loader_write_lock();
}

void mli_unwind_fork_prepare(void)
{
	__atomic_store_n(&gate_closed, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&in_iterate, __ATOMIC_SEQ_CST) >
	       iterating_here)
		sched_yield();
	if (!iterating_here)
		find_loader_write_lock();
}

void mli_unwind_fork_parent(void)
{
	__atomic_store_n(&gate_closed, 0, __ATOMIC_RELEASE);
}

/* The child has one thread. If the loader's write lock was held by
 * another thread of the parent at the fork (in a dlopen or dlclose; the
 * gate covers only this library's dl_iterate_phdr), the child's first
 * sample waited for it for ever: glibc resets the loader's other locks in
 * a fork child, not this one (a held-out check: a child of a program whose
 * threads load and unload plugins hung in 20 runs of 20 at a 256-byte
 * interval). So it is reset here as glibc resets the others. */
void mli_unwind_fork_child(void)
{
	in_iterate = iterating_here;
	pthread_mutex_t *l = loader_write_lock;
	if (l) {
		const int *m = (const int *)l;
		if (m[0] != 0 && m[2] != (int)syscall(SYS_gettid)) {
			pthread_mutex_t fresh = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
			memcpy((void *)l, &fresh, sizeof fresh);
		}
	}
	__atomic_store_n(&gate_closed, 0, __ATOMIC_RELEASE);
}

/* dl_iterate_phdr, fenced off around fork. It holds glibc's
 * dl_load_write_lock, which glibc (2.36) does not reset in a fork child: a
 * fork while a thread is inside leaves the child with the lock held, and
 * the child's first sample would wait for it for ever. So the fork's
 * prepare handler (mli_unwind_fork_prepare, from core/output.c) closes a
 * gate and waits for the calls in flight; a call that finds the gate
 * closed does not wait (it may hold the loader's lock itself: an
 * allocation in a dl_iterate_phdr callback of the program's) and returns
 * false. (A program's own dl_iterate_phdr at the moment of a fork can
 * still leave the lock held in the child: glibc's bug.) The profile's
 * writer (symbols.c) uses it too. */
bool mli_dl_iterate_fenced(int (*cb)(struct dl_phdr_info *, size_t, void *),
			   void *arg)
{
	iterating_here++;
	__atomic_fetch_add(&in_iterate, 1, __ATOMIC_SEQ_CST);
	bool open = !__atomic_load_n(&gate_closed, __ATOMIC_SEQ_CST);
	if (open)
		dl_iterate_phdr(cb, arg);
	__atomic_fetch_sub(&in_iterate, 1, __ATOMIC_RELEASE);
	iterating_here--;
	return open;
}

#if defined(__x86_64__)

/* A rule, packed in one word; 0 is an empty slot. */
enum { K_FRAME = 1, K_END = 2, K_OTHER = 3 }; /* bits 0-1 */
#define R_CFA_RBP   4u                         /* else the CFA is %rsp + off */
#define R_RBP_SAVED 8u                         /* at CFA + (int16) bits 8-23 */
/* bits 32-63: the CFA's offset, int32 */

#define CACHE_BITS 12
static struct slot {
	uint64_t check; /* return address ^ rule */
	uint64_t rule;
} cache[1u << CACHE_BITS];

static inline struct slot *slot_of(uintptr_t pc)
{
	return &cache[(pc * 0x9E3779B97F4A7C15ULL) >> (64 - CACHE_BITS)];
}

static int read_subs(struct dl_phdr_info *info, size_t size, void *arg)
{
	*(unsigned long long *)arg = info->dlpi_subs;
	return 1;
}

/* glibc's count of unloads; false if a fork is being prepared: the walk
 * then leaves the cache alone and takes the stack from backtrace(), whose
 * libgcc finds unwind tables with _dl_find_object, without a lock. */
static bool read_subs_fenced(unsigned long long *subs)
{
	return mli_dl_iterate_fenced(read_subs, subs);
}

/* Empties the cache if an object was unloaded since the last walk. Those
 * rules are only for return addresses on some thread's stack, in code that
 * is mapped; a thread that walks while another unloads a library has no
 * frame of it (or of one loaded after its walk began) to look up. */
static bool check_unloads(void)
{
	static unsigned long long seen;
	unsigned long long subs = 0;
	if (!read_subs_fenced(&subs))
		return false; /* a fork is being prepared */
	if (subs == __atomic_load_n(&seen, __ATOMIC_ACQUIRE))
		return true;
	for (size_t i = 0; i < sizeof cache / sizeof cache[0]; i++) {
		__atomic_store_n(&cache[i].check, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&cache[i].rule, 0, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&seen, subs, __ATOMIC_RELEASE);
	return true;
}

/* ---- reading .eh_frame_hdr and .eh_frame (DWARF CFI, x86-64 psABI) ---- */

struct cursor {
	const uint8_t *p, *end;
	bool bad;
};

static uint64_t uleb(struct cursor *c)
{
	uint64_t v = 0;
	for (unsigned shift = 0; c->p < c->end; shift += 7) {
		uint8_t b = *c->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	c->bad = true;
	return 0;
}

static int64_t sleb(struct cursor *c)
{
	uint64_t v = 0;
	unsigned shift = 0;
	while (c->p < c->end) {
		uint8_t b = *c->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80)) {
			if (shift < 64 && (b & 0x40))
				v |= ~(uint64_t)0 << shift;
			return (int64_t)v;
		}
	}
	c->bad = true;
	return 0;
}

static uint64_t fixed(struct cursor *c, size_t n, bool is_signed)
{
	if ((size_t)(c->end - c->p) < n) {
		c->bad = true;
		return 0;
	}
	uint64_t v = 0;
	memcpy(&v, c->p, n); /* little-endian */
	c->p += n;
	if (is_signed && n < 8 && (v >> (8 * n - 1)))
		v |= ~(uint64_t)0 << (8 * n);
	return v;
}

/* A pointer in the DW_EH_PE_* encoding enc; datarel is the base of
 * DW_EH_PE_datarel (the start of .eh_frame_hdr). */
static uintptr_t encoded(struct cursor *c, uint8_t enc, uintptr_t datarel)
{
	uintptr_t base;
	switch (enc & 0x70) {
	case 0x00: base = 0; break;                   /* absptr */
	case 0x10: base = (uintptr_t)c->p; break;     /* pcrel */
	case 0x30: base = datarel; break;             /* datarel */
	default: c->bad = true; return 0;
	}
	uint64_t v;
	switch (enc & 0x0f) {
	case 0x00: v = fixed(c, 8, false); break;
	case 0x01: v = uleb(c); break;
	case 0x02: v = fixed(c, 2, false); break;
	case 0x03: v = fixed(c, 4, false); break;
	case 0x04: v = fixed(c, 8, false); break;
	case 0x09: v = (uint64_t)sleb(c); break;
	case 0x0a: v = fixed(c, 2, true); break;
	case 0x0b: v = fixed(c, 4, true); break;
	case 0x0c: v = fixed(c, 8, true); break;
	default: c->bad = true; return 0;
	}
	return base + v; /* DW_EH_PE_indirect: only the personality, skipped */
}

/* One length-prefixed .eh_frame record: [start, end) after the length. */
static bool record(const uint8_t *at, struct cursor *rec)
{
	uint32_t len;
	memcpy(&len, at, 4);
	if (len == 0 || len == 0xffffffffu) /* terminator, 64-bit DWARF */
		return false;
	rec->p = at + 4;
	rec->end = at + 4 + len;
	rec->bad = false;
	return true;
}

/* The registers the walk follows (DWARF numbering for x86-64). */
enum { REG_RBP = 6, REG_RSP = 7, REG_RA = 16 };
enum { HOW_SAME, HOW_AT, HOW_UNDEF, HOW_OTHER }; /* a register's rule */

struct row {
	uint64_t cfa_reg;
	int64_t cfa_off;
	uint8_t rbp_how, ra_how, other;
	int64_t rbp_off, ra_off;
};

struct cie {
	uint64_t code_align;
	int64_t data_align;
	uint64_t ra_reg;
	uint8_t fde_enc;
	bool augmented; /* 'z': FDEs carry augmentation data */
	struct cursor insns;
};

static bool parse_cie(const uint8_t *at, struct cie *cie)
{
	struct cursor c;
	if (!record(at, &c) || fixed(&c, 4, false) != 0) /* CIE id */
		return false;
	uint8_t version = (uint8_t)fixed(&c, 1, false);
	const char *aug = (const char *)c.p;
	size_t alen = strnlen(aug, (size_t)(c.end - c.p));
	c.p += alen + 1;
	if (version != 1 && version != 3)
		return false;
	cie->code_align = uleb(&c);
	cie->data_align = sleb(&c);
	cie->ra_reg = version == 1 ? fixed(&c, 1, false) : uleb(&c);
	cie->fde_enc = 0; /* absptr */
	cie->augmented = aug[0] == 'z';
	if (cie->augmented) {
		uint64_t dlen = uleb(&c);
		const uint8_t *data_end = c.p + dlen;
		for (const char *a = aug + 1; *a && !c.bad; a++) {
			if (*a == 'R')
				cie->fde_enc = (uint8_t)fixed(&c, 1, false);
			else if (*a == 'P') {
				uint8_t enc = (uint8_t)fixed(&c, 1, false);
				encoded(&c, enc & 0x7f, 0);
			} else if (*a == 'L')
				fixed(&c, 1, false);
			else /* 'S' (a signal frame), 'B', unknown */
				return false;
		}
		c.p = data_end;
	} else if (aug[0])
		return false;
	if (c.bad || c.p > c.end)
		return false;
	cie->insns = c;
	return true;
}

static void set_reg(struct row *r, uint64_t reg, uint8_t how, int64_t off)
{
	if (reg == REG_RBP) {
		r->rbp_how = how;
		r->rbp_off = off;
	} else if (reg == REG_RA) {
		r->ra_how = how;
		r->ra_off = off;
	} else if (reg == REG_RSP && how != HOW_SAME)
		r->other = 1;
}

/* Runs CFA instructions until the row for target (or the end); false if
 * one of them is beyond what the walk supports. */
static bool run_cfa(struct cursor *c, const struct cie *cie, uintptr_t loc,
		    uintptr_t target, struct row *r, const struct row *init)
{
	struct row saved[8];
	unsigned nsaved = 0;
	while (c->p < c->end && !c->bad) {
		uint8_t op = *c->p++;
		uint64_t reg, delta = 0;
		switch (op >> 6) {
		case 1: delta = (op & 0x3f) * cie->code_align; goto advance;
		case 2:
			set_reg(r, op & 0x3f, HOW_AT, (int64_t)uleb(c) * cie->data_align);
			continue;
		case 3:
			reg = op & 0x3f;
			goto restore;
		}
		switch (op) {
		case 0x00: break;                                           /* nop */
		case 0x01: loc = encoded(c, cie->fde_enc, 0); break;        /* set_loc */
		case 0x02: delta = fixed(c, 1, false) * cie->code_align; goto advance;
		case 0x03: delta = fixed(c, 2, false) * cie->code_align; goto advance;
		case 0x04: delta = fixed(c, 4, false) * cie->code_align; goto advance;
		case 0x05: /* offset_extended */
			reg = uleb(c);
			set_reg(r, reg, HOW_AT, (int64_t)uleb(c) * cie->data_align);
			break;
		case 0x06: reg = uleb(c); goto restore;
		case 0x07: set_reg(r, uleb(c), HOW_UNDEF, 0); break;
		case 0x08: set_reg(r, uleb(c), HOW_SAME, 0); break;
		case 0x09: /* register: saved in another register */
			reg = uleb(c);
			uleb(c);
			set_reg(r, reg, HOW_OTHER, 0);
			break;
		case 0x0a:
			if (nsaved == 8)
				return false;
			saved[nsaved++] = *r;
			break;
		case 0x0b: /* the CFA rule is part of the state (libgcc) */
			if (!nsaved)
				return false;
			*r = saved[--nsaved];
			break;
		case 0x0c: r->cfa_reg = uleb(c); r->cfa_off = (int64_t)uleb(c); break;
		case 0x0d: r->cfa_reg = uleb(c); break;
		case 0x0e: r->cfa_off = (int64_t)uleb(c); break;
		case 0x0f: return false; /* def_cfa_expression */
		case 0x10:               /* expression */
		case 0x16:               /* val_expression */
			reg = uleb(c);
			c->p += uleb(c);
			set_reg(r, reg, HOW_OTHER, 0);
			break;
		case 0x11: /* offset_extended_sf */
			reg = uleb(c);
			set_reg(r, reg, HOW_AT, sleb(c) * cie->data_align);
			break;
		case 0x12:
			r->cfa_reg = uleb(c);
			r->cfa_off = sleb(c) * cie->data_align;
			break;
		case 0x13: r->cfa_off = sleb(c) * cie->data_align; break;
		case 0x14: /* val_offset */
		case 0x15:
			reg = uleb(c);
			if (op == 0x14)
				uleb(c);
			else
				sleb(c);
			set_reg(r, reg, HOW_OTHER, 0);
			break;
		case 0x2e: uleb(c); break; /* GNU_args_size */
		case 0x2f: /* GNU_negative_offset_extended */
			reg = uleb(c);
			set_reg(r, reg, HOW_AT, -(int64_t)uleb(c) * cie->data_align);
			break;
		default: return false;
		}
		continue;
	advance:
		loc += delta;
		if (loc > target)
			return !c->bad;
		continue;
	restore:
		if (!init)
			return false;
		if (reg == REG_RBP)
			set_reg(r, reg, init->rbp_how, init->rbp_off);
		else if (reg == REG_RA)
			set_reg(r, reg, init->ra_how, init->ra_off);
	}
	return !c->bad;
}

/* The FDE covering pc, from the object's sorted .eh_frame_hdr table. */
static const uint8_t *find_fde(const uint8_t *hdr, uintptr_t pc)
{
	struct cursor c = { hdr, hdr + 4 + 16, false };
	if (fixed(&c, 1, false) != 1)
		return NULL;
	uint8_t ptr_enc = (uint8_t)fixed(&c, 1, false);
	uint8_t count_enc = (uint8_t)fixed(&c, 1, false);
	uint8_t table_enc = (uint8_t)fixed(&c, 1, false);
	if (table_enc != 0x3b || count_enc == 0xff) /* datarel sdata4 */
		return NULL;
	encoded(&c, ptr_enc, (uintptr_t)hdr);
	size_t n = encoded(&c, count_enc, (uintptr_t)hdr);
	if (c.bad || !n)
		return NULL;
	const int32_t *tab = (const int32_t *)(const void *)c.p;
	size_t lo = 0, hi = n; /* last entry with start <= pc */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if ((uintptr_t)hdr + (intptr_t)tab[2 * mid] <= pc)
			lo = mid;
		else
			hi = mid;
	}
	if ((uintptr_t)hdr + (intptr_t)tab[2 * lo] > pc)
		return NULL;
	return hdr + tab[2 * lo + 1];
}

/* The rule for the frame that returns to pc; the table's row is that of
 * the call, pc - 1. Code in no loaded object (a JIT's) is left to libgcc,
 * which also knows the tables registered with __register_frame, and is
 * not cached: that memory may hold other code later. */
static uint64_t compute_rule(uintptr_t pc, bool *cacheable)
{
	struct dl_find_object obj;
	*cacheable = false;
	if (_dl_find_object((void *)(pc - 1), &obj) != 0)
		return K_OTHER;
	*cacheable = true;
	if (!obj.dlfo_eh_frame)
		return K_END; /* an object without unwind tables: libgcc stops */
	const uint8_t *fde = find_fde(obj.dlfo_eh_frame, pc - 1);
	if (!fde)
		return K_OTHER;
	struct cursor c;
	if (!record(fde, &c))
		return K_OTHER;
	const uint8_t *id_at = c.p;
	uint32_t cie_off = (uint32_t)fixed(&c, 4, false);
	struct cie cie;
	if (!cie_off || !parse_cie(id_at - cie_off, &cie))
		return K_OTHER;
	uintptr_t start = encoded(&c, cie.fde_enc, 0);
	uintptr_t range = encoded(&c, cie.fde_enc & 0x0f, 0);
	if (c.bad || pc - 1 < start || pc - 1 >= start + range)
		return K_END; /* not covered: libgcc's end of stack too */
	if (cie.augmented)
		c.p += uleb(&c);
	/* Before the CIE's instructions: RA not yet known (they set it). */
	struct row init = { .cfa_reg = REG_RSP, .cfa_off = 8,
			    .rbp_how = HOW_SAME, .ra_how = HOW_OTHER };
	if (!run_cfa(&cie.insns, &cie, start, pc - 1, &init, NULL))
		return K_OTHER;
	struct row r = init;
	if (cie.ra_reg != REG_RA || !run_cfa(&c, &cie, start, pc - 1, &r, &init) ||
	    r.other)
		return K_OTHER;
	if (r.ra_how == HOW_UNDEF)
		return K_END; /* the outermost frame: _start, a thread's clone */
	if (r.ra_how != HOW_AT || r.ra_off != -8 ||
	    (r.cfa_reg != REG_RSP && r.cfa_reg != REG_RBP) ||
	    r.cfa_off != (int32_t)r.cfa_off ||
	    (r.rbp_how != HOW_SAME && r.rbp_how != HOW_AT) ||
	    r.rbp_off != (int16_t)r.rbp_off)
		return K_OTHER;
	uint64_t rule = K_FRAME | (uint64_t)(uint32_t)(int32_t)r.cfa_off << 32;
	if (r.cfa_reg == REG_RBP)
		rule |= R_CFA_RBP;
	if (r.rbp_how == HOW_AT)
		rule |= R_RBP_SAVED | (uint64_t)(uint16_t)(int16_t)r.rbp_off << 8;
	return rule;
}

static inline uint64_t rule_of(uintptr_t pc)
{
	struct slot *s = slot_of(pc);
	uint64_t rule = __atomic_load_n(&s->rule, __ATOMIC_RELAXED);
	uint64_t check = __atomic_load_n(&s->check, __ATOMIC_RELAXED);
	if (rule && (check ^ rule) == pc)
		return rule;
	bool cacheable;
	rule = compute_rule(pc, &cacheable);
	if (cacheable) {
		__atomic_store_n(&s->rule, rule, __ATOMIC_RELAXED);
		__atomic_store_n(&s->check, pc ^ rule, __ATOMIC_RELAXED);
	}
	return rule;
}

/* A frame larger than this is taken for a broken rule, not followed. */
#define MAX_FRAME ((uintptr_t)1 << 30)

/* From mli_unwind with the state of its caller: pc is the caller's return
 * address into it, sp and rbp the caller's registers. */
__attribute__((visibility("hidden"), used)) int
mli_unwind_from(void **buf, int size, uintptr_t pc, uintptr_t sp,
		uintptr_t rbp)
{
	int n = 0;
	if (!check_unloads())
		return backtrace(buf, size);
	while (n < size) {
		buf[n++] = (void *)pc;
		uint64_t rule = rule_of(pc);
		if ((rule & 3) == K_END)
			break;
		if ((rule & 3) == K_OTHER)
			return backtrace(buf, size);
		uintptr_t cfa = (rule & R_CFA_RBP ? rbp : sp) + (int32_t)(rule >> 32);
		if (cfa <= sp || cfa - sp > MAX_FRAME)
			break;
		if (rule & R_RBP_SAVED)
			rbp = *(const uintptr_t *)(cfa + (int16_t)(rule >> 8));
		pc = *(const uintptr_t *)(cfa - 8);
		sp = cfa;
		if (!pc)
			break;
	}
	return n;
}

/* Takes the caller's registers as the walk's start, then tail-calls the
 * walk, so that no frame of this file is in the stack. */
__asm__(".text\n"
	".globl mli_unwind\n"
	".hidden mli_unwind\n"
	".type mli_unwind, @function\n"
	"mli_unwind:\n"
	".cfi_startproc\n"
	"	movq (%rsp), %rdx\n"
	"	leaq 8(%rsp), %rcx\n"
	"	movq %rbp, %r8\n"
	"	jmp mli_unwind_from\n"
	".cfi_endproc\n"
	".size mli_unwind, .-mli_unwind\n");

#else /* not x86-64: libgcc's unwinder, uncached */

int mli_unwind(void **buf, int size)
{
	return backtrace(buf, size);
}

#endif
