/* callout.c: the one place where the engine runs code that is not its own
 * from an allocating thread (see internal.h). It is never called inside
 * the engine or under one of its locks, so the code may allocate, free,
 * take its own locks and call the API. */
#include "internal.h"

void mli_callout_begin(struct mli_thread *t, int mode)
{
	if (mode != MLI_CALLOUT_MASKED) {
		/* Every allocation of the thread to the slow path, which admits it
		 * without counting or sampling it (nor refusing it, but at the
		 * hard cap for the tracker). */
		t->callout++;
		t->tracker += mode == MLI_CALLOUT_TRACKER;
		mli_poke(t);
	} else
		/* counted, but no task limit refuses it */
		mli_mask(t, MLI_CALLER_SP());
}

void mli_callout_end(struct mli_thread *t, int mode)
{
	if (mode != MLI_CALLOUT_MASKED) {
		t->tracker -= mode == MLI_CALLOUT_TRACKER;
		/* Not from a signal handler that interrupted the engine (a
		 * sampled block freed there): the refill may measure memory under
		 * the registry's lock, which the interrupted code may hold. That
		 * code regrants when it is done. */
		if (--t->callout == 0 && !t->in_engine)
			mli_refill(t);
	} else if (--t->mask_depth == 0 && t->nfired)
		mli_refill(t); /* a pending interrupt: grant 0 */
}
