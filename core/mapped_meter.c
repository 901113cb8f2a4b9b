/* mapped_meter.c: a provisional engine side of core/mapped.h, an atomic
 * counter checked against MEMLIMITS_GLOBAL_MEMORY. The engine's meters
 * replace this file; nothing else depends on how it works. What it does not
 * do yet: tasks under ml_limit_global_memory do not see mapped bytes (the
 * malloc side does, through engine.c's global_measure), and no peak of the
 * measure is kept.
 *
 * Mapped memory is refused a reserve below the limit (1/16 of it, at most
 * 64 MiB) that malloc may still use: a runtime whose heap growth was refused
 * collects garbage before it gives up, and V8's collector allocates its work
 * lists with malloc and crashes on NULL (node 20 segfaulted in
 * Worklist::PublishPushSegment without the reserve, and reports its own
 * "JavaScript heap out of memory" with it). */
#include "internal.h"
#include "mapped.h"

static int64_t mapped; /* atomic */

bool mli_mapped_charge(uint64_t bytes)
{
	int64_t limit = __atomic_load_n(&mli_eng.global_limit, __ATOMIC_RELAXED);
	if (mli_eng.env_global && limit >= 0 && !mli_tls.in_engine &&
	    mli_tls.state != MLI_T_DEAD) {
		int64_t heap = mli_live_heap(NULL);
		int64_t now = heap + __atomic_load_n(&mapped, __ATOMIC_RELAXED);
		int64_t reserve = limit / 16;
		limit -= reserve < ((int64_t)64 << 20) ? reserve : (int64_t)64 << 20;
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
