/* mapped_meter.c: a provisional engine side of core/mapped.h, an atomic
 * counter checked against MEMLIMITS_GLOBAL_MEMORY. The engine's meters
 * replace this file; nothing else depends on how it works. What it does not
 * do yet: tasks under ml_limit_global_memory do not see mapped bytes (the
 * malloc side does, through engine.c's global_measure), and no peak of the
 * measure is kept.
 *
 * Mapped memory is refused a reserve below the limit that malloc may still
 * use (see reserve()): a runtime whose heap growth was refused collects
 * garbage before it gives up, and V8's collector mallocs its work lists and
 * page vectors as it goes. Under a 100M limit node 20 segfaulted in
 * Worklist::PublishPushSegment with no reserve, and died of an uncaught
 * std::bad_alloc in 6 runs of 12 with 1/16; with 1/8 it reported its own
 * "JavaScript heap out of memory" in 12 of 12 (under 50M, with 1/8 = 6 MiB,
 * in 5 of 6). */
#include "internal.h"
#include "mapped.h"

static int64_t mapped; /* atomic */

/* The part of the limit only malloc may use: 1/8 of it, at least 8 MiB
 * (but at most half), at most 256 MiB. */
static int64_t reserve(int64_t limit)
{
	const int64_t MiB = (int64_t)1 << 20;
	int64_t r = limit / 8;
	if (r < 8 * MiB)
		r = limit / 2 < 8 * MiB ? limit / 2 : 8 * MiB;
	return r < 256 * MiB ? r : 256 * MiB;
}

bool mli_mapped_charge(uint64_t bytes)
{
	int64_t limit = __atomic_load_n(&mli_eng.global_limit, __ATOMIC_RELAXED);
	if (mli_eng.env_global && limit >= 0 && !mli_tls.in_engine &&
	    mli_tls.state != MLI_T_DEAD) {
		int64_t heap = mli_live_heap(NULL);
		int64_t now = heap + __atomic_load_n(&mapped, __ATOMIC_RELAXED);
		limit -= reserve(limit);
		if (now > limit || bytes > (uint64_t)(limit - now)) {
			mli_report_breach(MLI_BREACH_GLOBAL, bytes, now);
			return false;
		}
	}
	__atomic_fetch_add(&mapped, (int64_t)bytes, __ATOMIC_RELAXED);
	return true;
}

void mli_mapped_sub(uint64_t bytes)
{
	__atomic_fetch_sub(&mapped, (int64_t)bytes, __ATOMIC_RELAXED);
}

int64_t mli_mapped_bytes(void)
{
	return __atomic_load_n(&mapped, __ATOMIC_RELAXED);
}
