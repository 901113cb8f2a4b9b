/* longjmp.c: a longjmp out of a task leaves the task's scopes.
 *
 * A scope is a record in its task's stack frame, linked into the thread's
 * list (core/task.c). A longjmp (or siglongjmp: the alarm-timeout pattern)
 * out of the task discards that frame without ml_leave, and the list then
 * points into dead stack: the next task at the same depth was refused as
 * "in use" (ML_INVALID), and the next slow path read whatever the stack
 * held there by then (a held-out check: SIGSEGV in check_scopes). So the
 * exported longjmp family first leaves, unreported, every scope of the
 * thread that lies in the stack the jump discards: below its target's
 * stack pointer, in the same stack (within STACK_SPAN of it), and then
 * undoes the masks taken in that stack (ml_mask records where). A jump
 * within a task, to a setjmp made inside it, discards no scope; with no
 * scope entered and no mask, the jump costs two loads more.
 *
 * glibc keeps the target's stack pointer in the jmp_buf mangled with the
 * thread's pointer guard; the constructor checks that it reads it back
 * right on a jmp_buf of its own (else the scopes are left alone, as
 * before). x86-64 only; elsewhere the functions are glibc's. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>

#include "../core/internal.h"

#if defined(__x86_64__) && defined(__GLIBC__)

#define EXPORT __attribute__((visibility("default")))
/* How far below a jump's target a scope may lie and still be on its
 * stack (scopes live on their caller's stack: the header says so). */
#define STACK_SPAN ((uintptr_t)1 << 30)

typedef void (*jump_fn)(struct __jmp_buf_tag *, int);
/* glibc's four entries (__longjmp_chk: what longjmp becomes with
 * _FORTIFY_SOURCE), found by the constructor, before a signal handler can
 * jump (dlsym is not async-signal-safe). */
enum { J_LONGJMP, J__LONGJMP, J_SIGLONGJMP, J_LONGJMP_CHK, NJUMPS };
static const char *const names[NJUMPS] = { "longjmp", "_longjmp", "siglongjmp",
					   "__longjmp_chk" };
static jump_fn real[NJUMPS];
static int readable; /* the jmp_buf's stack pointer is read right */

/* glibc's PTR_DEMANGLE on x86-64: rotate right by 17, xor with the
 * pointer guard (tcbhead_t.pointer_guard, %fs:0x30). jmp_buf word 6 is
 * the stack pointer (JB_RSP). */
static uintptr_t target_sp(struct __jmp_buf_tag *env)
{
	uintptr_t v = (uintptr_t)env->__jmpbuf[6], guard;
	__asm__("movq %%fs:0x30, %0" : "=r"(guard));
	v = (v >> 17) | (v << (64 - 17));
	return v ^ guard;
}

__attribute__((noinline)) static uintptr_t sp_here(void)
{
	return (uintptr_t)__builtin_frame_address(0);
}

/* The discarded stack: from here (below every frame the jump leaves) up to
 * the target, when both are on one stack. A coroutine's stack below this
 * one is then not touched (a jump within the thread's own frames undid a
 * suspended ucontext coroutine's mask: a held-out check). Off a signal
 * stack: that stack from here up, and STACK_SPAN below the target (the
 * interrupted frames; a handler on a malloc'd sigaltstack that masked and
 * jumped out left the thread masked: a held-out check). */
static void leave_discarded(struct __jmp_buf_tag env[1])
{
	if (mli_likely(!mli_tls.top && !mli_tls.mask_depth) ||
	    !__atomic_load_n(&readable, __ATOMIC_RELAXED))
		return;
	uintptr_t to = target_sp(env), here = sp_here();
	struct mli_discard d = { here, to, 0, 0 };
	stack_t ss;
	if (sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_ONSTACK)) {
		uintptr_t alo = (uintptr_t)ss.ss_sp, ahi = alo + ss.ss_size;
		if (to < alo || to >= ahi) {
			d.alo = here;
			d.ahi = ahi;
			here = to; /* for the span below */
		}
	}
	/* Far below the target: another stack (a coroutine's), whose frames
	 * are not the target's: STACK_SPAN below the target, as before (from
	 * here, a jump from one coroutine to the main stack took a suspended
	 * coroutine's scope and mask: a held-out check). */
	if (here >= to || to - here > STACK_SPAN)
		d.lo = to > STACK_SPAN ? to - STACK_SPAN : 0;
	mli_scopes_discarded(&d);
}

/* glibc's function i; looked up here if another library's constructor
 * jumps before ours ran. */
static jump_fn next(int i)
{
	if (!real[i])
		real[i] = (jump_fn)dlsym(RTLD_NEXT, names[i]);
	return real[i];
}

__attribute__((constructor)) static void longjmp_init(void)
{
	for (int i = 0; i < NJUMPS; i++)
		next(i);
	/* setjmp saves the stack pointer of this frame: it must come back
	 * between the frame of a function called from here and this frame's
	 * own top. */
	jmp_buf env;
	if (setjmp(env) == 0) {
		uintptr_t sp = target_sp(env), below = sp_here();
		uintptr_t top = (uintptr_t)__builtin_frame_address(0);
		__atomic_store_n(&readable, below < sp && sp <= top + 16,
				 __ATOMIC_RELAXED);
	}
}

#define JUMP(name, i)                                                        \
	EXPORT __attribute__((noreturn)) void name(struct __jmp_buf_tag env[1], \
						   int val)                     \
	{                                                                    \
		mli_exit_abort_left();                                       \
		leave_discarded(env);                                        \
		next(i)(env, val);                                           \
		__builtin_unreachable();                                     \
	}
JUMP(longjmp, J_LONGJMP)
JUMP(_longjmp, J__LONGJMP)
JUMP(siglongjmp, J_SIGLONGJMP)
JUMP(__longjmp_chk, J_LONGJMP_CHK)

#endif
