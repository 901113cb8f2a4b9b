/* profile.c: MEMLIMITS_PROFILE, the heap profiler for unmodified programs.
 *
 * A tracker (the same interface as ml_memprof_start's) that aggregates the
 * sampled blocks by call stack and writes, at exit, at the first breach of
 * a limit and when the soft limit is crossed:
 *  - NAME: the gperftools heap profile text format that google-pprof reads
 *    (per stack: estimated live objects and bytes, then estimated objects
 *    and bytes allocated in all), followed by the process's mappings so that
 *    addresses in shared libraries resolve; a comment line after the header
 *    names the process (pid, parent, command line);
 *  - NAME.folded: folded stacks ("outer;inner bytes"), estimated live bytes,
 *    for flame graphs, frames named from the objects' symbol tables
 *    (symbols.c); NAME.alloc.folded: the same for bytes allocated;
 *  - at exit, NAME.peak and NAME.folded.peak: the sites live when memory
 *    was highest (the peak copy, below).
 * NAME is the variable's value, or per process (core/output.c). A block of
 * n bytes sampled at least once stands for 1 / (1 - (1-rate)^n) such
 * blocks (each byte is sampled with probability rate), which makes the
 * estimates unbiased. At a breach the files get the suffix .breach, at the
 * soft limit .soft. Memory for the tables comes from the allocator
 * directly: it is not the program's.
 *
 * The table's lock is a leaf (rules in core/output.c): nothing under it
 * allocates, frees, or calls the loader. The table grows outside it; the
 * writer copies the table under it and names frames and writes files
 * after. A signal handler whose thread holds it (the thread-local
 * `holding`) queues its update on a lock-free list instead of waiting:
 * the next holder applies it. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "output.h"
#include "symbols.h"

#define DEPTH 32

struct site {
	uint64_t hash;
	uint32_t depth;
	void *frames[DEPTH];
	double live_objs, live_bytes, alloc_objs, alloc_bytes;
};

/* A tracked block's record (the tracker's cookie). It holds the stack's
 * hash, not a pointer into the table, which moves when it grows. */
struct cookie {
	uint64_t hash;
	uint32_t depth;
	void *frames[DEPTH];
	double objs, bytes;
	double charged; /* the estimate of the bytes allocated (on_alloc) */
	struct cookie *alloc_next, *free_next; /* on the pending lists */
};

static struct site *sites;  /* open addressing, under lock */
static size_t nsites, cap;  /* written under lock, read outside as hints */
static int lock;
static __thread int holding; /* this thread holds or is taking lock */
/* Updates queued by signal handlers whose thread held the lock. */
static struct cookie *pending_alloc, *pending_free;
static double rate;
static int breach_written; /* the breach profile is written once */

static bool enter(void)
{
	if (holding)
		return false; /* a handler that interrupted its thread's holder */
	holding = 1;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	mli_spin_lock(&lock);
	return true;
}

static void leave(void)
{
	mli_spin_unlock(&lock);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	holding = 0;
}

static void push(struct cookie **list, struct cookie *c, bool alloc)
{
	struct cookie *head = __atomic_load_n(list, __ATOMIC_RELAXED);
	do {
		if (alloc)
			c->alloc_next = head;
		else
			c->free_next = head;
	} while (!__atomic_compare_exchange_n(list, &head, c, true, __ATOMIC_RELEASE,
					      __ATOMIC_RELAXED));
}

/* The profiler's own blocks, from jemalloc with signals blocked: a signal
 * handler that allocates would otherwise re-enter jemalloc's thread cache
 * in the middle of this thread's operation on it (jemalloc, like any
 * malloc, is not async-signal-safe), and the profiler runs in whatever the
 * program was doing when a sample fell due. ml_stats does the same. */
static void *pmalloc(size_t n)
{
	return mli_be_malloc(n); /* with signals blocked (backend.c) */
}

static void pfree(void *p)
{
	mli_be_free(p);
}

/* The same for symbols.c, whose tables serve the profile's writer. */
void *mli_profile_malloc(size_t n)
{
	return pmalloc(n);
}

void mli_profile_free(void *p)
{
	pfree(p);
}

static uint64_t hash_stack(void *const *f, size_t d)
{
	uint64_t h = 1469598103934665603ULL ^ d;
	for (size_t i = 0; i < d; i++)
		h = (h ^ (uint64_t)(uintptr_t)f[i]) * 1099511628211ULL;
	return h ? h : 1;
}

/* Under lock: the site of c's stack, added if missing and the table is at
 * most 3/4 full; NULL if it must grow first. */
static struct site *find(const struct cookie *c)
{
	if (!cap)
		return NULL;
	size_t j = c->hash & (cap - 1);
	while (sites[j].hash) {
		if (sites[j].hash == c->hash && sites[j].depth == c->depth &&
		    memcmp(sites[j].frames, c->frames, c->depth * sizeof(void *)) == 0)
			return &sites[j];
		j = (j + 1) & (cap - 1);
	}
	if ((nsites + 1) * 4 > cap * 3)
		return NULL;
	sites[j].hash = c->hash;
	sites[j].depth = c->depth;
	memcpy(sites[j].frames, c->frames, c->depth * sizeof(void *));
	__atomic_store_n(&nsites, nsites + 1, __ATOMIC_RELAXED);
	return &sites[j];
}

/* Under lock: adds (alloc) or takes off (free) c's estimate. */
static bool apply(const struct cookie *c, bool alloc)
{
	struct site *st = find(c);
	if (!st)
		return false;
	if (alloc) {
		st->live_objs += c->objs;
		st->live_bytes += c->bytes;
		st->alloc_objs += c->objs;
		st->alloc_bytes += c->charged;
	} else {
		st->live_objs -= c->objs;
		st->live_bytes -= c->bytes;
	}
	return true;
}

/* Under lock: applies the queued updates (allocations first: a block's
 * free follows its allocation). The freed cookies go to *done, to be freed
 * after the lock; an update that finds no room is queued again. */
static void drain(struct cookie **done)
{
	struct cookie *c = __atomic_exchange_n(&pending_alloc, NULL, __ATOMIC_ACQUIRE);
	while (c) {
		struct cookie *next = c->alloc_next;
		if (!apply(c, true))
			push(&pending_alloc, c, true);
		c = next;
	}
	c = __atomic_exchange_n(&pending_free, NULL, __ATOMIC_ACQUIRE);
	while (c) {
		struct cookie *next = c->free_next;
		if (apply(c, false)) {
			c->free_next = *done;
			*done = c;
		} else
			push(&pending_free, c, false);
		c = next;
	}
}

static void free_done(struct cookie *c)
{
	while (c) {
		struct cookie *next = c->free_next;
		pfree(c);
		c = next;
	}
}

/* Grows the table, outside the lock, when the next site would fill it
 * beyond half. */
static void grow(void)
{
	size_t c = __atomic_load_n(&cap, __ATOMIC_RELAXED);
	if ((__atomic_load_n(&nsites, __ATOMIC_RELAXED) + 2) * 2 <= c)
		return;
	size_t ncap = c ? c * 2 : 1024;
	struct site *t = pmalloc(ncap * sizeof *t), *old = NULL;
	if (!t)
		return;
	memset(t, 0, ncap * sizeof *t);
	if (enter()) {
		if (cap < ncap) {
			for (size_t i = 0; i < cap; i++)
				if (sites[i].hash) {
					size_t j = sites[i].hash & (ncap - 1);
					while (t[j].hash)
						j = (j + 1) & (ncap - 1);
					t[j] = sites[i];
				}
			old = sites;
			sites = t;
			__atomic_store_n(&cap, ncap, __ATOMIC_RELAXED);
			t = NULL;
		}
		leave();
	}
	pfree(old);
	pfree(t);
}

/* Applies c (alloc or free) now, or queues it. True if it is done with
 * (a freed cookie may then be freed). */
static bool update(struct cookie *c, bool alloc)
{
	grow();
	if (!enter()) {
		push(alloc ? &pending_alloc : &pending_free, c, alloc);
		return false;
	}
	struct cookie *done = NULL;
	drain(&done);
	bool ok = apply(c, alloc);
	if (!ok)
		push(alloc ? &pending_alloc : &pending_free, c, alloc);
	leave();
	free_done(done);
	return ok;
}

/* ---- the peak profile ----------------------------------------------------
 * The sites' live figures as they were when the process's memory (the
 * global measure, core/memory.c) was highest: at a sampled allocation
 * whose memory is more than 1/8 (and PEAK_STEP) above the last snapshot's,
 * the live sites are copied into a new table under the lock (a copy: no
 * system call, no allocation under it; the table is allocated before), and
 * the previous copy is freed after. At most about log(peak / PEAK_STEP) /
 * log(9/8) copies in a run (80 for 10 GiB). So the snapshot written at
 * exit was taken at a sampled allocation where memory was M, and no later
 * sampled allocation saw more than M + max(M/8, PEAK_STEP). */
#define PEAK_STEP ((int64_t)1 << 20)

static struct site *peak_tab; /* under lock; NULL before the first copy */
static size_t peak_n;
static int64_t peak_mem;      /* memory at the copy, under lock */
static int64_t peak_next;     /* copy again at this memory (atomic) */
static int peak_busy;         /* one thread copies at a time */

static void peak_check(void)
{
	int64_t mem = mli_mem_estimate(&mli_tls);
	if (mem < __atomic_load_n(&peak_next, __ATOMIC_RELAXED) ||
	    __atomic_exchange_n(&peak_busy, 1, __ATOMIC_ACQUIRE))
		return;
	/* Room for the live sites, and for some added meanwhile. */
	size_t want = __atomic_load_n(&nsites, __ATOMIC_RELAXED) + 64;
	struct site *t = pmalloc(want * sizeof *t), *old = NULL;
	if (t && enter()) {
		struct cookie *done = NULL;
		drain(&done);
		size_t k = 0;
		bool fits = true;
		for (size_t i = 0; i < cap && fits; i++) {
			if (!sites[i].hash || sites[i].live_bytes < 0.5)
				continue;
			if (k == want)
				fits = false;
			else
				t[k++] = sites[i];
		}
		if (fits) {
			old = peak_tab;
			peak_tab = t;
			peak_n = k;
			peak_mem = mem;
			t = NULL;
			int64_t step = mem / 8 > PEAK_STEP ? mem / 8 : PEAK_STEP;
			__atomic_store_n(&peak_next, mem + step, __ATOMIC_RELAXED);
		}
		leave();
		free_done(done);
	}
	pfree(t);
	pfree(old);
	__atomic_store_n(&peak_busy, 0, __ATOMIC_RELEASE);
}

/* The last copy and the memory it was taken at, taken away from the
 * table (at exit: no copy is made after). NULL if none was made. */
static struct site *peak_take(size_t *n, int64_t *mem)
{
	__atomic_store_n(&peak_next, INT64_MAX, __ATOMIC_RELAXED);
	struct site *t = NULL;
	if (enter()) {
		t = peak_tab;
		*n = peak_n;
		*mem = peak_mem;
		peak_tab = NULL;
		leave();
	}
	return t;
}

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)data;
	size_t d = s->depth < DEPTH ? s->depth : DEPTH;
	struct cookie *c = pmalloc(sizeof *c);
	if (!c)
		return NULL;
	double p = -expm1((double)s->size * log1p(-rate));
	c->objs = p > 0 ? 1.0 / p : 1.0;
	c->bytes = c->objs * (double)s->size;
	/* Allocated: each sample stands for 1/rate charged bytes (unbiased
	 * whatever was charged). The block's size was wrong for a realloc,
	 * sampled over its growth: a buffer grown 4 KiB at a time to 100 MiB
	 * showed 620 MB allocated where 112 MiB were charged (held-out). */
	c->charged = rate > 0 ? (double)s->nsamples / rate : c->bytes;
	c->hash = hash_stack(s->callstack, d);
	c->depth = (uint32_t)d;
	memcpy(c->frames, s->callstack, d * sizeof(void *));
	update(c, true);
	peak_check();
	return c;
}

static void on_dealloc(void *cookie, void *data)
{
	(void)data;
	if (update(cookie, false))
		pfree(cookie);
}

/* ---- fork: the child gets the table unlocked (rules in output.c) ---------- */

static bool fork_took;

void mli_profile_fork_prepare(void)
{
	fork_took = enter();
}

void mli_profile_fork_parent(void)
{
	if (fork_took)
		leave();
}

/* exit()'s profile is written once: from its exit handler, or from the
 * thread that ends the process (report.c's gate), whichever comes first. */
static int exit_written;

void mli_profile_fork_child(void)
{
	if (fork_took)
		leave();
	breach_written = 0; /* the child's first breach is its own */
	exit_written = 0;
	/* So is its peak: the parent's copy is dropped, not freed (its pages
	 * stay shared with the parent, untouched), and the child's first
	 * sample makes its own. A thread the child does not have may have
	 * been copying. */
	peak_tab = NULL;
	peak_n = 0;
	peak_mem = 0; /* a child with no sample said its parent's peak */
	peak_next = 0;
	peak_busy = 0;
}

void mli_profile_exit(void)
{
	mli_exit_work_begin(); /* report.c: another thread's exit() waits */
	if (!__atomic_exchange_n(&exit_written, 1, __ATOMIC_ACQ_REL))
		mli_profile_write(NULL);
	mli_exit_work_end();
}

void mli_profile_start_env(void)
{
	static const ml_tracker tr = { on_alloc, on_dealloc, NULL };
	/* A limit fired before this process's exec: NAME.breach is the
	 * first breach's, the old image's, and stays (this image's
	 * overwrote it: a held-out check). */
	if (mli_fired_before_exec())
		breach_written = 1;
	rate = 1.0 / (double)mli_prof.interval;
	if (mli_prof_start(rate, DEPTH, &tr) != ML_OK) {
		/* The program must still run. */
		static const char msg[] =
			"memlimits: MEMLIMITS_PROFILE: cannot reserve address space for"
			" the profiler's blocks (16 MiB at least; ulimit -v?); running"
			" without the profiler\n";
		mli_say(msg, sizeof msg - 1);
		return;
	}
	atexit(mli_profile_exit);
}

static uint64_t rnd(double v)
{
	return v > 0 ? (uint64_t)llround(v) : 0;
}

/* ---- writing ------------------------------------------------------------- */

/* A file being written through a buffer. Allocated, not on the stack: the
 * breach profile is written by whichever thread breached, whose stack may
 * be small. */
struct out {
	struct mli_file f;
	struct mli_buf b;
	struct mli_symbols *syms; /* the folded stacks' names */
	char mem[8192];
};

/* Which profile a set of files holds. */
struct kind {
	const char *sfx;        /* "", ".breach", ".soft", ".peak" */
	const char *written_at; /* "exit", "breach", "soft" */
	bool peak;              /* the copy at the peak */
	int64_t mem;            /* the peak copy's memory */
};

static void flush(struct out *o)
{
	mli_file_write(&o->f, o->b.p, o->b.len);
	o->b.len = 0;
}

static void put(struct out *o, const char *s)
{
	size_t n = strlen(s);
	if (o->b.len + n + 1 >= o->b.cap)
		flush(o);
	if (n + 1 >= o->b.cap) {
		mli_file_write(&o->f, s, n);
		return;
	}
	mli_buf_str(&o->b, s);
}

static void put_u64(struct out *o, uint64_t v)
{
	char t[24];
	struct mli_buf b = { t, 0, sizeof t };
	mli_buf_u64(&b, v);
	put(o, t);
}

static void put_hex(struct out *o, uintptr_t v)
{
	char t[24];
	int i = sizeof t - 1;
	t[i] = '\0';
	do {
		t[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	t[--i] = 'x';
	t[--i] = '0';
	put(o, t + i);
}

static bool open_out(struct out *o, const char *suffix, const char *suffix2)
{
	char sfx[64];
	struct mli_buf n = { sfx, 0, sizeof sfx };
	mli_buf_str(&n, suffix);
	mli_buf_str(&n, suffix2);
	o->b = (struct mli_buf){ o->mem, 0, sizeof o->mem };
	return mli_file_open(&o->f, MLI_OUT_PROFILE, sfx);
}

static void close_out(struct out *o)
{
	flush(o);
	mli_file_close(&o->f);
}

static void write_pprof(struct out *o, const struct site *t, size_t n,
			const struct kind *k)
{
	if (!open_out(o, k->sfx, ""))
		return;
	double lo = 0, lb = 0, ao = 0, ab = 0;
	for (size_t i = 0; i < n; i++) {
		lo += t[i].live_objs;
		lb += t[i].live_bytes;
		ao += t[i].alloc_objs;
		ab += t[i].alloc_bytes;
	}
	put(o, "heap profile: ");
	put_u64(o, rnd(lo));
	put(o, ": ");
	put_u64(o, rnd(lb));
	put(o, " [");
	put_u64(o, rnd(ao));
	put(o, ": ");
	put_u64(o, rnd(ab));
	put(o, "] @ heapprofile\n");
	/* Which process: a comment line, which pprof skips. */
	flush(o);
	mli_buf_str(&o->b, "# memlimits: {");
	mli_buf_process_json(&o->b);
	mli_buf_str(&o->b, ", \"written_at\": \"");
	mli_buf_str(&o->b, k->written_at);
	mli_buf_str(&o->b, "\"");
	if (k->peak) {
		mli_buf_str(&o->b, ", \"live_at\": \"peak\", \"memory_then\": ");
		mli_buf_i64(&o->b, k->mem);
		mli_buf_str(&o->b, ", \"peak_memory\": ");
		mli_buf_i64(&o->b, mli_mem_peak());
	}
	mli_buf_str(&o->b, "}\n");
	if (o->b.len + 1 >= o->b.cap)
		o->b.p[o->b.len - 1] = '\n'; /* cut short, still one line */
	flush(o);
	for (size_t i = 0; i < n; i++) {
		const struct site *s = &t[i];
		put_u64(o, rnd(s->live_objs));
		put(o, ": ");
		put_u64(o, rnd(s->live_bytes));
		put(o, " [");
		put_u64(o, rnd(s->alloc_objs));
		put(o, ": ");
		put_u64(o, rnd(s->alloc_bytes));
		put(o, "] @");
		for (uint32_t f = 0; f < s->depth; f++) {
			put(o, " ");
			put_hex(o, (uintptr_t)s->frames[f]);
		}
		put(o, "\n");
	}
	put(o, "\nMAPPED_LIBRARIES:\n");
	flush(o);
	int maps = mli_proc_open("maps");
	if (maps >= 0) {
		for (;;) {
			ssize_t got = read(maps, o->mem, sizeof o->mem);
			if (got <= 0)
				break;
			mli_file_write(&o->f, o->mem, (size_t)got);
		}
		close(maps);
	}
	close_out(o);
}

/* A name in a folded line, where ';' separates frames and the last space
 * the count: those, and line breaks, become '_' (an object named
 * "lib;evil x.so" made one frame two and the line three fields). */
static void put_name(struct out *o, const char *s)
{
	char part[128];
	size_t k = 0;
	for (; *s; s++) {
		char c = *s;
		part[k++] = c == ';' || c == ' ' || c == '\n' || c == '\r' || c == '\t'
				    ? '_' : c;
		if (k == sizeof part - 1) {
			part[k] = '\0';
			put(o, part);
			k = 0;
		}
	}
	part[k] = '\0';
	put(o, part);
}

/* One frame as a flame-graph name: the function (symbols.c), else
 * object+offset, else the address. Reads files and calls the loader: never
 * under the table's lock. */
static void put_frame(struct out *o, void *addr)
{
	/* A return address points after the call: name the call itself. */
	uintptr_t pc = (uintptr_t)addr - 1;
	struct mli_frame_name fn;
	mli_symbols_name(o->syms, pc, &fn);
	if (fn.sym) {
		put_name(o, fn.sym);
	} else if (fn.object) {
		put_name(o, fn.object);
		put(o, "+");
		put_hex(o, fn.off);
	} else
		put_hex(o, pc);
}

static void write_folded(struct out *o, const struct site *t, size_t n,
			 const char *sfx, bool live)
{
	if (!open_out(o, live ? ".folded" : ".alloc.folded", sfx))
		return;
	if (!o->syms)
		o->syms = mli_symbols_new();
	for (size_t i = 0; i < n; i++) {
		const struct site *s = &t[i];
		uint64_t v = rnd(live ? s->live_bytes : s->alloc_bytes);
		if (!v)
			continue;
		for (uint32_t k = s->depth; k-- > 0;) {
			put_frame(o, s->frames[k]);
			if (k)
				put(o, ";");
		}
		if (!s->depth)
			put(o, "[unknown]");
		put(o, " ");
		put_u64(o, v);
		put(o, "\n");
	}
	close_out(o);
}

/* A copy of the table's sites, taken under the lock; false if it cannot
 * be had (no memory, or a signal handler whose thread holds the lock). */
static bool snapshot(struct site **out, size_t *n)
{
	for (;;) {
		size_t c = __atomic_load_n(&cap, __ATOMIC_RELAXED);
		struct site *t = pmalloc((c ? c : 1) * sizeof *t);
		if (!t)
			return false;
		if (!enter()) {
			pfree(t);
			return false;
		}
		struct cookie *done = NULL;
		drain(&done);
		if (cap != c) { /* it grew meanwhile */
			leave();
			free_done(done);
			pfree(t);
			continue;
		}
		size_t k = 0;
		for (size_t i = 0; i < cap; i++)
			if (sites[i].hash)
				t[k++] = sites[i];
		leave();
		free_done(done);
		*out = t;
		*n = k;
		return true;
	}
}

static void write_set(struct out *o, const struct site *t, size_t n,
		      const struct kind *k)
{
	write_pprof(o, t, n, k);
	write_folded(o, t, n, k->sfx, true);
	/* At the peak only live sites were copied: no allocated view. */
	if (!k->peak)
		write_folded(o, t, n, k->sfx, false);
}

void mli_profile_write(const char *why)
{
	if (!mli_eng.cfg.profile[0] || !mli_prof.enabled)
		return;
	struct kind k = { "", "exit", false, 0 };
	if (why && !strcmp(why, "soft"))
		k = (struct kind){ ".soft", "soft", false, 0 };
	else if (why)
		k = (struct kind){ ".breach", "breach", false, 0 };
	if (why && !strcmp(k.sfx, ".breach") &&
	    __atomic_exchange_n(&breach_written, 1, __ATOMIC_ACQ_REL))
		return;
	struct site *t;
	size_t n;
	struct out *o = pmalloc(sizeof *o);
	if (!o || !snapshot(&t, &n)) {
		static const char msg[] =
			"memlimits: MEMLIMITS_PROFILE: the profile was not written (no"
			" memory for a copy of its table, or written from a signal"
			" handler that interrupted the profiler)\n";
		mli_say(msg, sizeof msg - 1);
		pfree(o);
		return;
	}
	o->syms = NULL;
	write_set(o, t, n, &k);
	pfree(t);
	if (!why) {
		/* The peak copy, empty if no sample was ever taken. */
		struct kind pk = { ".peak", "exit", true, 0 };
		size_t pn = 0;
		struct site *pt = peak_take(&pn, &pk.mem);
		write_set(o, pt, pt ? pn : 0, &pk);
		pfree(pt);
	}
	mli_symbols_free(o->syms);
	pfree(o);
}
