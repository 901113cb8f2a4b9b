/* profile.c: MEMLIMITS_PROFILE, the heap profiler for unmodified programs.
 *
 * A tracker (the same interface as ml_memprof_start's) that aggregates the
 * sampled blocks by call stack and writes, at exit and when a limit fires:
 *  - PATH: the gperftools heap profile text format that google-pprof reads
 *    (per stack: estimated live objects and bytes, then estimated objects
 *    and bytes allocated in all), followed by the process's mappings so that
 *    addresses in shared libraries resolve;
 *  - PATH.folded: folded stacks ("outer;inner bytes"), estimated live bytes,
 *    for flame graphs; PATH.alloc.folded: the same for bytes allocated.
 * A block of n bytes sampled at least once stands for 1 / (1 - (1-rate)^n)
 * such blocks (each byte is sampled with probability rate), which makes the
 * estimates unbiased. At a breach the files get the suffix .breach. Memory
 * for the table comes from the allocator directly: it is not the program's. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define DEPTH 32

struct site {
	uint64_t hash;
	uint32_t depth;
	void *frames[DEPTH];
	double live_objs, live_bytes, alloc_objs, alloc_bytes;
};

struct block {
	struct site *site;
	double objs, bytes;
};

static struct site *sites;  /* open addressing */
static size_t nsites, cap;
static int lock;
static double rate;


static uint64_t hash_stack(void *const *f, size_t d)
{
	uint64_t h = 1469598103934665603ULL ^ d;
	for (size_t i = 0; i < d; i++)
		h = (h ^ (uint64_t)(uintptr_t)f[i]) * 1099511628211ULL;
	return h ? h : 1;
}

static struct site *find(void *const *f, size_t d, uint64_t h)
{
	if ((nsites + 1) * 2 > cap) {
		size_t ncap = cap ? cap * 2 : 1024;
		struct site *n = mli_be_malloc(ncap * sizeof *n);
		if (!n)
			return NULL;
		memset(n, 0, ncap * sizeof *n);
		for (size_t i = 0; i < cap; i++)
			if (sites[i].hash) {
				size_t j = sites[i].hash & (ncap - 1);
				while (n[j].hash)
					j = (j + 1) & (ncap - 1);
				n[j] = sites[i];
			}
		mli_be_free(sites); /* cookies point into the table: see below */
		sites = n;
		cap = ncap;
	}
	size_t j = h & (cap - 1);
	while (sites[j].hash) {
		if (sites[j].hash == h && sites[j].depth == d &&
		    memcmp(sites[j].frames, f, d * sizeof *f) == 0)
			return &sites[j];
		j = (j + 1) & (cap - 1);
	}
	sites[j].hash = h;
	sites[j].depth = (uint32_t)d;
	memcpy(sites[j].frames, f, d * sizeof *f);
	nsites++;
	return &sites[j];
}

/* Cookies hold the stack's hash, not a pointer: the table moves when it
 * grows. */
struct cookie {
	uint64_t hash;
	uint32_t depth;
	void *frames[DEPTH];
	double objs, bytes;
};

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)data;
	size_t d = s->depth < DEPTH ? s->depth : DEPTH;
	struct cookie *c = mli_be_malloc(sizeof *c);
	if (!c)
		return NULL;
	double p = -expm1((double)s->size * log1p(-rate));
	c->objs = p > 0 ? 1.0 / p : 1.0;
	c->bytes = c->objs * (double)s->size;
	c->hash = hash_stack(s->callstack, d);
	c->depth = (uint32_t)d;
	memcpy(c->frames, s->callstack, d * sizeof(void *));
	mli_spin_lock(&lock);
	struct site *st = find(s->callstack, d, c->hash);
	if (st) {
		st->live_objs += c->objs;
		st->live_bytes += c->bytes;
		st->alloc_objs += c->objs;
		st->alloc_bytes += c->bytes;
	}
	mli_spin_unlock(&lock);
	return c;
}

static void on_dealloc(void *cookie, void *data)
{
	(void)data;
	struct cookie *c = cookie;
	mli_spin_lock(&lock);
	struct site *st = find(c->frames, c->depth, c->hash);
	if (st) {
		st->live_objs -= c->objs;
		st->live_bytes -= c->bytes;
	}
	mli_spin_unlock(&lock);
	mli_be_free(c);
}

static void at_exit(void)
{
	mli_profile_write(NULL);
}

void mli_profile_start_env(void)
{
	static const ml_tracker tr = { on_alloc, on_dealloc, NULL };
	rate = 1.0 / (double)mli_prof.interval;
	if (mli_prof_start(rate, DEPTH, &tr) != ML_OK) {
		/* The program must still run. */
		static const char msg[] =
			"memlimits: MEMLIMITS_PROFILE: cannot reserve address space for"
			" the profiler's blocks (16 MiB at least; ulimit -v?); running"
			" without the profiler\n";
		mli_write_all(2, msg, sizeof msg - 1);
		return;
	}
	atexit(at_exit);
}

static uint64_t rnd(double v)
{
	return v > 0 ? (uint64_t)llround(v) : 0;
}

/* Writes through a buffer; flushes when full. */
struct out {
	int fd;
	struct mli_buf b;
	char mem[8192];
};

static void flush(struct out *o)
{
	mli_write_all(o->fd, o->b.p, o->b.len);
	o->b.len = 0;
}

static void put(struct out *o, const char *s)
{
	size_t n = strlen(s);
	if (o->b.len + n + 1 >= o->b.cap)
		flush(o);
	if (n + 1 >= o->b.cap) {
		mli_write_all(o->fd, s, n);
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

static bool open_out(struct out *o, const char *path, const char *suffix,
		     const char *suffix2)
{
	char name[600];
	struct mli_buf n = { name, 0, sizeof name };
	mli_buf_str(&n, path);
	mli_buf_str(&n, suffix);
	mli_buf_str(&n, suffix2);
	o->fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	o->b = (struct mli_buf){ o->mem, 0, sizeof o->mem };
	return o->fd >= 0;
}

static void close_out(struct out *o)
{
	flush(o);
	close(o->fd);
}

static void write_pprof(const char *path, const char *sfx)
{
	struct out o;
	if (!open_out(&o, path, sfx, ""))
		return;
	double lo = 0, lb = 0, ao = 0, ab = 0;
	for (size_t i = 0; i < cap; i++)
		if (sites[i].hash) {
			lo += sites[i].live_objs;
			lb += sites[i].live_bytes;
			ao += sites[i].alloc_objs;
			ab += sites[i].alloc_bytes;
		}
	put(&o, "heap profile: ");
	put_u64(&o, rnd(lo));
	put(&o, ": ");
	put_u64(&o, rnd(lb));
	put(&o, " [");
	put_u64(&o, rnd(ao));
	put(&o, ": ");
	put_u64(&o, rnd(ab));
	put(&o, "] @ heapprofile\n");
	for (size_t i = 0; i < cap; i++) {
		const struct site *s = &sites[i];
		if (!s->hash)
			continue;
		put_u64(&o, rnd(s->live_objs));
		put(&o, ": ");
		put_u64(&o, rnd(s->live_bytes));
		put(&o, " [");
		put_u64(&o, rnd(s->alloc_objs));
		put(&o, ": ");
		put_u64(&o, rnd(s->alloc_bytes));
		put(&o, "] @");
		for (uint32_t k = 0; k < s->depth; k++) {
			put(&o, " ");
			put_hex(&o, (uintptr_t)s->frames[k]);
		}
		put(&o, "\n");
	}
	put(&o, "\nMAPPED_LIBRARIES:\n");
	flush(&o);
	int maps = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (maps >= 0) {
		char buf[4096];
		ssize_t got;
		while ((got = read(maps, buf, sizeof buf)) > 0)
			mli_write_all(o.fd, buf, (size_t)got);
		close(maps);
	}
	close_out(&o);
}

/* One frame as a flame-graph name: the symbol, else library+offset. */
static void put_frame(struct out *o, void *addr)
{
	Dl_info info;
	/* A return address points after the call: look up the call itself. */
	void *pc = (char *)addr - 1;
	if (dladdr(pc, &info) && info.dli_sname) {
		put(o, info.dli_sname);
	} else if (info.dli_fname) {
		const char *base = strrchr(info.dli_fname, '/');
		put(o, base ? base + 1 : info.dli_fname);
		put(o, "+");
		put_hex(o, (uintptr_t)pc - (uintptr_t)info.dli_fbase);
	} else
		put_hex(o, (uintptr_t)pc);
}

static void write_folded(const char *path, const char *sfx, bool live)
{
	struct out o;
	if (!open_out(&o, path, live ? ".folded" : ".alloc.folded", sfx))
		return;
	for (size_t i = 0; i < cap; i++) {
		const struct site *s = &sites[i];
		uint64_t v = rnd(live ? s->live_bytes : s->alloc_bytes);
		if (!s->hash || !v)
			continue;
		for (uint32_t k = s->depth; k-- > 0;) {
			put_frame(&o, s->frames[k]);
			if (k)
				put(&o, ";");
		}
		if (!s->depth)
			put(&o, "[unknown]");
		put(&o, " ");
		put_u64(&o, v);
		put(&o, "\n");
	}
	close_out(&o);
}

void mli_profile_write(const char *why)
{
	const char *path = mli_eng.cfg.profile;
	if (!path[0])
		return;
	const char *sfx = !why ? "" : strcmp(why, "soft") == 0 ? ".soft" : ".breach";
	mli_spin_lock(&lock);
	write_pprof(path, sfx);
	write_folded(path, sfx, true);
	write_folded(path, sfx, false);
	mli_spin_unlock(&lock);
}
