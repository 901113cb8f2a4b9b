/* prof.c: Memprof, the sampling allocation profiler.
 *
 * Sampling is a Poisson process over requested bytes: each byte is sampled
 * with probability rate, so the gap to the next sampled byte is geometric.
 * The thread's distance to its next sampled byte, sample_left, is one more
 * bound on its grant, so sampling costs the fast path nothing: the
 * allocation that reaches a sample point falls into the slow path, which
 * counts its samples and asks for a block from preload/region.c, whose free
 * the tracking free() recognises.
 *
 * Callbacks run in the allocating (or freeing) thread as invisible callouts
 * (callout.c): the slow path admits their allocations without counting,
 * sampling or refusing them, so profiling changes nothing the limits do.
 * No engine lock is held around them. */
#define _GNU_SOURCE
#include <elf.h>
#include <execinfo.h>
#include <link.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/auxv.h>

#include "output.h"

/* gen starts at 1 so that a new thread (prof_gen 0) syncs at its first slow
 * path. */
struct mli_prof mli_prof = { .gen = 1, .interval = 512 * 1024 };

static uint64_t rng_next(struct mli_thread *t)
{
	/* xorshift64*: enough for sampling, and seedable. */
	uint64_t x = t->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	t->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Unsampled bytes before the next sampled one: Geometric(rate) on 0, 1, ... */
static uint64_t draw_gap(struct mli_thread *t, double rate, double log1m)
{
	if (rate >= 1.0)
		return 0;
	if (rate <= 0.0)
		return UINT64_MAX;
	double u = (double)(rng_next(t) >> 11) * 0x1.0p-53; /* [0, 1) */
	double g = floor(log1p(-u) / log1m);
	return g >= 0x1.0p62 ? (uint64_t)1 << 62 : (uint64_t)g;
}

static void seed_thread(struct mli_thread *t)
{
	uint64_t s = mli_prof.seed ^ (t->id * 0x9E3779B97F4A7C15ULL);
	t->rng = s ? s : 0x853c49e6748fea9bULL;
}

static void prof_sync(struct mli_thread *t)
{
	uint32_t gen = __atomic_load_n(&mli_prof.gen, __ATOMIC_ACQUIRE);
	if (t->prof_gen == gen)
		return;
	t->prof_gen = gen;
	if (__atomic_load_n(&mli_prof.running, __ATOMIC_ACQUIRE) == 1) {
		if (!t->rng)
			seed_thread(t);
		t->sample_left = draw_gap(t, mli_prof.rate, mli_prof.log1m);
	} else
		t->sample_left = UINT64_MAX;
}

/* A standard normal draw (Box-Muller). */
static double normal_draw(struct mli_thread *t)
{
	double u1 = (double)((rng_next(t) >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
	double u2 = (double)(rng_next(t) >> 11) * 0x1.0p-53;
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Past this many expected samples in one block, count_samples draws their
 * number at once rather than gap by gap. */
#define SAMPLES_LOOP_MAX 256.0

/* Samples in the next n bytes of t; updates t->sample_left. */
static uint64_t count_samples(struct mli_thread *t, uint64_t n)
{
	if (n <= t->sample_left) {
		t->sample_left -= n;
		return 0;
	}
	double rate = mli_prof.rate, log1m = mli_prof.log1m;
	if (rate >= 1.0) {
		uint64_t k = n - t->sample_left;
		t->sample_left = 0;
		return k;
	}
	uint64_t k = 1, rem = n - t->sample_left - 1;
	if ((double)rem * rate > SAMPLES_LOOP_MAX) {
		/* A draw a sample would take days for malloc(1 << 62) at the
		 * default rate (a program probing for the largest block hung
		 * in this loop). The bytes after the first sample are
		 * independent trials: their count is Binomial(rem, rate), drawn
		 * from its normal approximation (a mean of 256 or more), and
		 * the gap after the block is a fresh one (the gaps are
		 * memoryless). */
		double mean = (double)rem * rate;
		double x = floor(mean + sqrt(mean * (1.0 - rate)) * normal_draw(t) + 0.5);
		k += x <= 0.0 ? 0 : x >= (double)rem ? rem : (uint64_t)x;
		t->sample_left = draw_gap(t, rate, log1m);
		return k;
	}
	for (;;) {
		uint64_t g = draw_gap(t, rate, log1m);
		if (g < rem) {
			k++;
			rem -= g + 1;
		} else {
			t->sample_left = g - rem;
			return k;
		}
	}
}

/* Address range of this library's code, to drop its frames from stacks. */
static uintptr_t self_lo, self_hi;

static int find_text(struct dl_phdr_info *info, size_t size, void *arg)
{
	uintptr_t me = (uintptr_t)arg;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && me >= lo &&
		    me < lo + ph->p_memsz) {
			self_lo = lo;
			self_hi = lo + ph->p_memsz;
			return 1;
		}
	}
	return 0;
}

/* Stacks come from core/unwind.c. libunwind's cached unw_backtrace was
 * tried first: it keeps a pipe open in every profiled process (two file
 * descriptors that its children see as well), which broke CPython's
 * test_pass_fds_redirected and coreutils' tests under `ulimit -n`. */
static int capture(void **buf, int size)
{
	return mli_unwind(buf, size);
}

/* What the profiler needs, set up by its first start rather than at
 * start-up, so that a process of the profiling build that never profiles
 * pays nothing for it: libgcc's unwinder, the fallback of ours, which
 * dlopens libgcc_s and allocates at its first use, and the sampled blocks'
 * address range (16 GiB of address space, less under `ulimit -v`). */
static bool prepare(void)
{
	static int state; /* 0 not yet, 1 ready, 2 failed */
	if (state)
		return state == 1;
	void *frames[2];
	backtrace(frames, 2); /* libgcc's unwinder allocates on first use: now */
	dl_iterate_phdr(find_text, (void *)(uintptr_t)prepare);
	state = mli_be_sample_init() == 0 ? 1 : 2;
	return state == 1;
}

/* Profiler callbacks on this thread's stack (a dealloc callback nested in
 * an alloc callback is two): ml_memprof_stop does not wait for its own. */
static __thread uint32_t prof_depth;

/* Callbacks run as invisible callouts (callout.c), with cancellation
 * disabled: a callback cancelled at one of its cancellation points would
 * leave inflight counted for ever, and ml_memprof_stop would wait for it
 * for ever (rules in core/output.c). */
static void callback_enter(struct mli_thread *t, int *cancel_state)
{
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, cancel_state);
	prof_depth++;
	mli_callout_begin(t, MLI_CALLOUT_TRACKER);
}

static void callback_leave(struct mli_thread *t, int cancel_state)
{
	mli_callout_end(t, MLI_CALLOUT_TRACKER);
	prof_depth--;
	pthread_setcancelstate(cancel_state, NULL);
}

static uint64_t random_seed(void)
{
	const uint64_t *r = (const uint64_t *)getauxval(AT_RANDOM);
	return r ? r[0] ^ r[1] : (uint64_t)(uintptr_t)&r;
}

void mli_prof_sampled(void *p, size_t n, uint64_t nsamples,
		      struct mli_sampled *rec)
{
	struct mli_thread *t = &mli_tls;
	if (__atomic_load_n(&mli_prof.running, __ATOMIC_ACQUIRE) != 1)
		return;
	__atomic_fetch_add(&mli_prof.inflight, 1, __ATOMIC_ACQ_REL);
	uint32_t gen = __atomic_load_n(&mli_prof.gen, __ATOMIC_ACQUIRE);
	if (__atomic_load_n(&mli_prof.running, __ATOMIC_ACQUIRE) == 1) {
		int cs;
		callback_enter(t, &cs);
		void *raw[ML_MAX_CALLSTACK + 16];
		int got = capture(raw, (int)(mli_prof.depth + 16));
		int skip = 0;
		while (skip < got && (uintptr_t)raw[skip] >= self_lo &&
		       (uintptr_t)raw[skip] < self_hi)
			skip++;
		size_t depth = (size_t)(got - skip);
		if (depth > mli_prof.depth)
			depth = mli_prof.depth;
		ml_sample s = { nsamples, n, p, raw + skip, depth, t->id };
		void *cookie = mli_prof.tracker.alloc(&s, mli_prof.tracker.data);
		if (cookie) {
			rec->cookie = cookie;
			rec->gen = gen;
			rec->tracked = 1;
		}
		rec->nsamples = nsamples;
		callback_leave(t, cs);
	}
	__atomic_fetch_sub(&mli_prof.inflight, 1, __ATOMIC_ACQ_REL);
}

void mli_prof_freed(void *p)
{
	struct mli_sampled *rec = mli_be_sample_record(p);
	if (!rec->tracked)
		return;
	rec->tracked = 0;
	struct mli_thread *t = &mli_tls;
	__atomic_fetch_add(&mli_prof.inflight, 1, __ATOMIC_ACQ_REL);
	if (__atomic_load_n(&mli_prof.running, __ATOMIC_ACQUIRE) == 1 &&
	    rec->gen == __atomic_load_n(&mli_prof.gen, __ATOMIC_ACQUIRE) &&
	    mli_prof.tracker.dealloc) {
		int cs;
		callback_enter(t, &cs);
		mli_prof.tracker.dealloc(rec->cookie, mli_prof.tracker.data);
		callback_leave(t, cs);
	}
	__atomic_fetch_sub(&mli_prof.inflight, 1, __ATOMIC_ACQ_REL);
}

void *mli_prof_alloc(size_t n, size_t align, bool zero)
{
	struct mli_thread *t = &mli_tls;
	uint64_t ns = t->pending_samples;
	t->pending_samples = 0;
	struct mli_sampled *rec;
	void *p = mli_be_sample_alloc(n, align, zero, &rec);
	if (p)
		mli_prof_sampled(p, n, ns, rec);
	return p;
}

/* A sampled block that grew in place (realloc) by a sampled growth: to the
 * tracker, the old block is freed and a new one of n bytes allocated at
 * the same address (a realloc is a free and an allocation, as for
 * jemalloc's profiler), with the growth's samples. */
void mli_prof_resampled(void *p, size_t n)
{
	struct mli_thread *t = &mli_tls;
	uint64_t ns = t->pending_samples;
	t->pending_samples = 0;
	mli_prof_freed(p);
	struct mli_sampled *rec = mli_be_sample_record(p);
	memset(rec, 0, sizeof *rec);
	mli_prof_sampled(p, n, ns, rec);
}

ml_status mli_prof_start(double rate, size_t depth, const ml_tracker *tr)
{
	mli_engine_init();
	if (!mli_prof.enabled)
		return ML_NOT_STARTED;
	if (!tr || !tr->alloc || !(rate >= 0.0 && rate <= 1.0))
		return ML_INVALID;
	int expect = 0;
	if (!__atomic_compare_exchange_n(&mli_prof.running, &expect, 2, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return ML_INVALID;
	if (!prepare()) {
		__atomic_store_n(&mli_prof.running, 0, __ATOMIC_RELEASE);
		return ML_NOT_STARTED;
	}
	mli_prof.rate = rate;
	mli_prof.log1m = log1p(-rate);
	mli_prof.depth = depth > ML_MAX_CALLSTACK ? ML_MAX_CALLSTACK : depth;
	mli_prof.tracker = *tr;
	/* running before gen: a thread that sees the new gen sees running. */
	__atomic_store_n(&mli_prof.running, 1, __ATOMIC_RELEASE);
	__atomic_fetch_add(&mli_prof.gen, 1, __ATOMIC_ACQ_REL);
	mli_refill(&mli_tls);
	return ML_OK;
}

/* A fork child has one thread: callbacks in flight are the ones it was
 * running itself (fork from a callback), one per level of nesting. */
void mli_prof_fork_child(void)
{
	__atomic_store_n(&mli_prof.inflight, (int)prof_depth, __ATOMIC_RELEASE);
}

ml_status mli_prof_stop(void)
{
	int expect = 1;
	if (!__atomic_compare_exchange_n(&mli_prof.running, &expect, 0, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return ML_INVALID;
	__atomic_fetch_add(&mli_prof.gen, 1, __ATOMIC_ACQ_REL);
	/* No callback starts after running is 0; wait for those in flight,
	 * from outside a callback only: a stop inside one waited for the
	 * others, and two such (each thread's callback stopping, or stopping
	 * a profiler that another callback had started again) waited on each
	 * other for ever (a held-out check: 4 runs of 5 hung). */
	if (prof_depth == 0)
		while (__atomic_load_n(&mli_prof.inflight, __ATOMIC_ACQUIRE) > 0)
			sched_yield();
	mli_refill(&mli_tls);
	return ML_OK;
}

/* Start-up, from the engine's initialisation: the profiling build always
 * has the profiler ready; in the default build its variables are an error,
 * not something to ignore. */
void mli_prof_init(void)
{
	const struct mli_config *c = &mli_eng.cfg;
	bool wanted = c->profile[0] || c->sample_interval || c->seed_set;
	if (!mli_be_free_tracking()) {
		if (wanted)
			mli_die("memlimits: MEMLIMITS_PROFILE, MEMLIMITS_SAMPLE_INTERVAL"
				" and MEMLIMITS_SEED need the profiling build: preload"
				" libmemlimits-prof.so (scripts/memlimit --profile does)");
		return;
	}
	if (c->sample_interval)
		mli_prof.interval = c->sample_interval;
	mli_prof.seed = c->seed_set ? c->seed : random_seed();
	mli_prof.enabled = true;
}

/* ---- the sampler: the distance to the next sampled byte, as a meter ---- */

static bool sampler_admit(struct mli_thread *t, struct mli_adm *a)
{
	prof_sync(t);
	if (t->sample_left != UINT64_MAX &&
	    (t->pending_samples = count_samples(t, a->n)) != 0)
		a->sampled = true;
	return true;
}

static void sampler_bound(struct mli_thread *t, struct mli_adm *a)
{
	prof_sync(t);
	if (t->sample_left == UINT64_MAX)
		return;
	a->wait = mli_min(a->wait, t->sample_left);
	a->room = 0; /* the sampler sees every byte */
}

/* The grant never exceeds sample_left, but `used` can: a signal handler
 * that lands between the fast path's subtraction that wrapped `left` and
 * the slow path's undoing of it finds `left` huge and takes the fast path
 * itself. Those bytes passed unsampled; the next allocation is sampled. A
 * wrapped sample_left was near UINT64_MAX: the thread was never sampled
 * again, and its blocks came from jemalloc, into which the test's handler
 * then re-entered (CI's one SIGSEGV in test_outputs' signal stress). */
static void sampler_fold(struct mli_thread *t, uint64_t used)
{
	if (t->sample_left != UINT64_MAX)
		t->sample_left = used < t->sample_left ? t->sample_left - used : 0;
}

const struct mli_meter mli_meter_sampler = {
	.name = "sampler",
	.kinds = MLI_ADM_ALLOC,
	.admit = sampler_admit,
	.bound = sampler_bound,
	.fold = sampler_fold,
};
