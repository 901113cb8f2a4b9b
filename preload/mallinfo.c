/* mallinfo.c: glibc's malloc information and tuning calls (mallinfo,
 * mallinfo2, malloc_stats, malloc_info, malloc_trim, mallopt), answered for
 * the heap that is really in use. Without them they reach glibc's own
 * allocator, which this library has replaced, and report its unused arena:
 * all zeros.
 *
 * The figures are jemalloc's statistics, which are what the glibc fields
 * mean: bytes allocated (stats.allocated: usable bytes of live blocks),
 * bytes taken from the system (stats.mapped: the extents jemalloc has mapped,
 * live or free), pages it could give back (dirty and muzzy pages). In the
 * profiling build the profiler's sampled blocks, which live outside
 * jemalloc, are added to both. The one figure from the engine is the peak,
 * in mallinfo's usmblks (once glibc's "maximum allocated space"), which
 * jemalloc does not keep. */
#define _GNU_SOURCE
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "alloc.h"

struct figures {
	uint64_t allocated, mapped, retained, releasable;
};

static uint64_t stat_u64(const char *name)
{
	size_t v = 0, len = sizeof v;
	return mli_je_mallctl(name, &v, &len, NULL, 0) == 0 ? v : 0;
}

/* jemalloc's statistics, refreshed. Its mallctl takes its locks: signals
 * are blocked meanwhile, so that a handler that allocates (wrong, but done)
 * cannot wait on a lock this thread holds. */
static struct figures figures(void)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	uint64_t epoch = 1;
	size_t len = sizeof epoch;
	mli_je_mallctl("epoch", &epoch, &len, &epoch, len);
	struct figures f;
	f.allocated = stat_u64("stats.allocated");
	f.mapped = stat_u64("stats.mapped");
	f.retained = stat_u64("stats.retained");
	/* arena 4096: all arenas merged; pages of free extents not yet
	 * returned to the system */
	f.releasable = (stat_u64("stats.arenas.4096.pdirty") +
			stat_u64("stats.arenas.4096.pmuzzy")) *
		       (uint64_t)sysconf(_SC_PAGESIZE);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	int64_t sampled = mli_be_sample_live(); /* 0 in the default build */
	if (sampled > 0) {
		f.allocated += (uint64_t)sampled;
		f.mapped += (uint64_t)sampled;
	}
	if (f.mapped < f.allocated)
		f.mapped = f.allocated;
	return f;
}

EXPORT struct mallinfo2 mallinfo2(void)
{
	struct figures f = figures();
	int64_t peak = mli_mem_peak();
	struct mallinfo2 m = { 0 };
	m.arena = f.mapped;          /* bytes from the system */
	m.uordblks = f.allocated;    /* allocated */
	m.fordblks = f.mapped - f.allocated; /* free, within those */
	m.keepcost = f.releasable;   /* what malloc_trim would give back */
	m.usmblks = peak > 0 ? (size_t)peak : 0; /* the engine's peak heap */
	/* Chunk counts, fast bins and separately mmapped blocks (hblks,
	 * hblkhd) have no counterpart: jemalloc serves large blocks from the
	 * same extents, counted in arena. */
	return m;
}

static int clamp_int(size_t v)
{
	return v > INT_MAX ? INT_MAX : (int)v;
}

/* The old form with int fields: clamped at INT_MAX rather than wrapped as
 * glibc's are, so that a big heap reads as big. */
EXPORT struct mallinfo mallinfo(void)
{
	struct mallinfo2 m2 = mallinfo2();
	struct mallinfo m = { 0 };
	m.arena = clamp_int(m2.arena);
	m.ordblks = clamp_int(m2.ordblks);
	m.smblks = clamp_int(m2.smblks);
	m.hblks = clamp_int(m2.hblks);
	m.hblkhd = clamp_int(m2.hblkhd);
	m.usmblks = clamp_int(m2.usmblks);
	m.fsmblks = clamp_int(m2.fsmblks);
	m.uordblks = clamp_int(m2.uordblks);
	m.fordblks = clamp_int(m2.fordblks);
	m.keepcost = clamp_int(m2.keepcost);
	return m;
}

static void line(struct mli_buf *b, const char *label, uint64_t v)
{
	char num[24];
	struct mli_buf n = { num, 0, sizeof num };
	mli_buf_u64(&n, v);
	mli_buf_str(b, label);
	for (size_t i = n.len; i < 10; i++)
		mli_buf_str(b, " ");
	mli_buf_str(b, num);
	mli_buf_str(b, "\n");
}

/* glibc's layout, on stderr; one arena (jemalloc's arenas together). */
EXPORT void malloc_stats(void)
{
	struct figures f = figures();
	char text[512];
	struct mli_buf b = { text, 0, sizeof text };
	mli_buf_str(&b, "Arena 0:\n");
	line(&b, "system bytes     = ", f.mapped);
	line(&b, "in use bytes     = ", f.allocated);
	mli_buf_str(&b, "Total (incl. mmap):\n");
	line(&b, "system bytes     = ", f.mapped);
	line(&b, "in use bytes     = ", f.allocated);
	line(&b, "max mmap regions = ", 0);
	line(&b, "max mmap bytes   = ", 0);
	mli_write_all(2, b.p, b.len);
}

static void xml_total(struct mli_buf *b, const char *type, uint64_t count,
		      uint64_t size)
{
	mli_buf_str(b, "<total type=\"");
	mli_buf_str(b, type);
	mli_buf_str(b, "\" count=\"");
	mli_buf_u64(b, count);
	mli_buf_str(b, "\" size=\"");
	mli_buf_u64(b, size);
	mli_buf_str(b, "\"/>\n");
}

static void xml_size(struct mli_buf *b, const char *elem, const char *type,
		     uint64_t size)
{
	mli_buf_str(b, "<");
	mli_buf_str(b, elem);
	mli_buf_str(b, " type=\"");
	mli_buf_str(b, type);
	mli_buf_str(b, "\" size=\"");
	mli_buf_u64(b, size);
	mli_buf_str(b, "\"/>\n");
}

/* glibc's XML document, with the totals only (no per-heap part, no
 * free-chunk histogram: jemalloc has neither). "system max" is the current
 * figure: jemalloc keeps no maximum. Written to the caller's stream with
 * stdio, the one way to respect what the caller has buffered there (as
 * glibc does); the text is formatted without allocating. */
EXPORT int malloc_info(int options, FILE *fp)
{
	if (options != 0) {
		errno = EINVAL;
		return -1;
	}
	struct figures f = figures();
	char text[1024];
	struct mli_buf b = { text, 0, sizeof text };
	mli_buf_str(&b, "<malloc version=\"1\">\n");
	xml_total(&b, "fast", 0, 0);
	xml_total(&b, "rest", 0, f.mapped - f.allocated);
	xml_total(&b, "mmap", 0, 0);
	xml_size(&b, "system", "current", f.mapped);
	xml_size(&b, "system", "max", f.mapped);
	xml_size(&b, "aspace", "total", f.mapped + f.retained);
	xml_size(&b, "aspace", "mprotect", f.mapped);
	mli_buf_str(&b, "</malloc>\n");
	return fputs(text, fp) == EOF ? -1 : 0;
}

/* Returns free pages to the system: jemalloc's purge of every arena (as
 * ml_trim does). 1 if there were any to return, as glibc's says whether
 * memory was released. */
EXPORT int malloc_trim(size_t pad)
{
	(void)pad;
	struct figures f = figures();
	mli_be_trim();
	return f.releasable > 0;
}

/* glibc's tunables have no meaning for jemalloc: accepted and ignored, with
 * glibc's answers (measured on glibc 2.36): 1 for every parameter, known or
 * not, except M_MXFAST outside 0 .. 80 * sizeof(size_t) / 4, which glibc
 * refuses with 0. */
EXPORT int mallopt(int param, int value)
{
	if (param == M_MXFAST)
		return value >= 0 && (size_t)value <= 80 * sizeof(size_t) / 4;
	return 1;
}
