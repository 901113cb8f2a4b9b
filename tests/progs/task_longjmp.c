/* task_longjmp.c: leaving tasks by longjmp. Each case prints "ok NAME" or
 * "FAIL NAME: why"; a case that breaks the thread's scopes crashes a later
 * one (the dead frames are overwritten before each check).
 *
 *   out        longjmp from inside an allocation task to before it
 *   signal     siglongjmp from a signal handler out of a token task
 *   _longjmp, __longjmp_chk   the other two entries, out of a scope
 *   inside     a longjmp within a task: its limit still holds
 *   nested     a longjmp out of an inner scope into its outer task: the
 *              outer's limit still holds, and its leave reports it
 *   masked     siglongjmp from a signal handler out of ml_with_resource's
 *              acquire (masked) in a task: the thread is unmasked again
 *   mask-left  a task that returns with an ml_mask() not undone: the same
 *   masked-outside  a longjmp out of ml_with_resource's acquire to a setjmp
 *              made outside any task (no scope to leave): the same
 *   pressure   a longjmp out of a memory-pressure callback (run masked):
 *              the same
 *   same-frame a longjmp to a setjmp in the function that masked, from it
 *              or from a callee: the mask stays (it was undone); also
 *              ML_MASKED_BLOCK then setjmp (this file is built at -O2, where
 *              it was undone when return addresses told the code order)
 *   nine-masks nine nested masks in a callee, then a jump out: all undone
 *              (the ninth has no position; none was)
 *   leave-all-in-task  ml_leave_all of a scope outside the running task,
 *              from inside it: ML_INVALID, nothing done (it crashed)
 *   altstack   a handler on a sigaltstack masks and siglongjmps out: unmasked
 *   coroutine  a ucontext coroutine of a thread masks and yields; the
 *              thread jumps within its own frames: the coroutine's mask
 *              stays (it was undone)
 *   leave-all-frame    ml_leave_all of the outer of two scopes of one
 *              frame, the inner open: both left (it refused)
 *   leave-all-static   ml_leave_all of a static scope with a forgotten
 *              inner one on the stack: left, the thread's scopes sound
 *   leave-all-dropped  ml_leave_all of a scope an earlier one dropped:
 *              ML_INVALID, nothing changed (it relinked the list)
 *   left-open  a task that returns with a scope it entered still entered
 *              (an error path that forgot ml_leave): ML_INVALID, and the
 *              thread's scopes are sound (it crashed at the next slow
 *              path); the scope's own ml_leave is ML_INVALID */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <ucontext.h>

#include "shim/memlimits.h"

void __longjmp_chk(struct __jmp_buf_tag *env, int val) __attribute__((noreturn));

static void *(*volatile v_malloc)(size_t) = malloc;
static jmp_buf jb;
static sigjmp_buf sjb;
static int failures;

static void check(const char *name, int ok, const char *why)
{
	printf(ok ? "ok %s\n" : "FAIL %s: %s\n", name, why);
	failures += !ok;
}

/* Overwrites the stack where the abandoned frames were. */
__attribute__((noinline)) static void scribble(void)
{
	volatile char buf[16384];
	memset((char *)buf, 0xa5, sizeof buf);
}

static void *small(void *arg)
{
	(void)arg;
	void *p = v_malloc(100);
	free(p);
	return p ? arg : NULL;
}

/* After a jump: a new task runs and reports its own status, and the slow
 * path (big blocks) finds the thread's scopes sound. */
static void after(const char *name)
{
	scribble();
	int ok = 1;
	for (int i = 0; i < 50; i++) {
		void *p = v_malloc((size_t)1 << 20);
		ok &= p != NULL;
		free(p);
	}
	void *r = NULL;
	uint64_t used = 0;
	ml_status st = ml_limit_allocations(1000, small, &used, &r, &used);
	ok &= st == ML_OK && r == &used && used == 100 && !ml_is_interrupted();
	check(name, ok, "the thread's scopes were left broken");
}

static void *big(void *arg)
{
	(void)arg;
	void *p = v_malloc((size_t)1 << 20);
	free(p);
	return p ? arg : NULL;
}

static void *jump_out(void *arg)
{
	(void)arg;
	free(v_malloc(500));
	longjmp(jb, 1);
}

static void on_alarm(int sig)
{
	(void)sig;
	siglongjmp(sjb, 1);
}

static void *wait_for_signal(void *arg)
{
	(void)arg;
	raise(SIGALRM);
	return NULL;
}

static void *jump_inside(void *arg)
{
	jmp_buf here;
	int *ok = arg;
	if (setjmp(here) == 0) {
		free(v_malloc(600));
		longjmp(here, 1);
	}
	/* 600 of 1000 used: 500 more must fail */
	void *p = v_malloc(500);
	*ok = p == NULL;
	free(p);
	return NULL;
}

static void on_alarm_masked(int sig)
{
	(void)sig;
	if (ml_is_blocked())
		siglongjmp(sjb, 1);
}

static void *acquire_forever(void *arg)
{
	(void)arg;
	raise(SIGALRM); /* masked here: the handler jumps out */
	return NULL;
}

static void *use_it(void *r, void *arg)
{
	(void)arg;
	return r;
}

static void drop_it(void *r, void *arg)
{
	(void)r;
	(void)arg;
}

static void *with_resource_task(void *arg)
{
	(void)arg;
	ml_with_resource(acquire_forever, use_it, drop_it, NULL, NULL);
	return NULL;
}

static void *mask_and_return(void *arg)
{
	(void)arg;
	ml_mask();
	return NULL;
}

static ml_scope left_open_scope; /* static: it outlives the task */

static void *enter_and_return(void *arg)
{
	ml_scope *s = arg ? arg : &left_open_scope;
	ml_enter_allocations(s, 1 << 20);
	free(v_malloc(10));
	return NULL; /* no ml_leave */
}

static void *acquire_and_jump(void *arg)
{
	(void)arg;
	longjmp(jb, 1);
}

static void jump_from_pressure(int64_t memory, int64_t threshold, void *arg)
{
	(void)memory;
	(void)threshold;
	(void)arg;
	longjmp(jb, 1);
}

__attribute__((noinline)) static void jump_back(jmp_buf *j)
{
	longjmp(*j, 1);
}

/* Masks, then jumps back into this frame from a callee and from itself. */
__attribute__((noinline)) static int mask_and_jump_home(void)
{
	jmp_buf j;
	volatile int kept = 1;
	ml_mask();
	if (setjmp(j) == 0)
		jump_back(&j);
	kept &= ml_is_blocked();
	if (setjmp(j) == 0)
		longjmp(j, 1);
	kept &= ml_is_blocked();
	ml_unmask();
	return kept && !ml_is_blocked();
}

__attribute__((noinline)) static int masked_block_then_setjmp(void)
{
	jmp_buf j;
	ML_MASKED_BLOCK;
	if (setjmp(j))
		return ml_is_blocked();
	jump_back(&j);
	return 0;
}

__attribute__((noinline)) static void nine_masks_and_jump(void)
{
	for (int i = 0; i < 9; i++)
		ml_mask();
	longjmp(jb, 1);
}

static ml_scope outside;

static void *leave_outside(void *arg)
{
	*(ml_status *)arg = ml_leave_all(&outside, NULL);
	return NULL;
}

static sigjmp_buf alt_jb;

static void masked_handler(int sig)
{
	(void)sig;
	ml_mask();
	siglongjmp(alt_jb, 1);
}

static ucontext_t main_ctx, co_ctx;
static int co_kept;

static void coroutine(void)
{
	ml_mask();
	swapcontext(&co_ctx, &main_ctx); /* yields, masked */
	co_kept = ml_is_blocked();
	ml_unmask();
}

__attribute__((noinline)) static void own_error_path(void)
{
	jmp_buf j;
	if (setjmp(j) == 0)
		jump_back(&j);
}

static void *coroutine_thread(void *arg)
{
	int *ok = arg;
	static char stack[1 << 16];
	getcontext(&co_ctx);
	co_ctx.uc_stack.ss_sp = stack;
	co_ctx.uc_stack.ss_size = sizeof stack;
	co_ctx.uc_link = &main_ctx;
	makecontext(&co_ctx, coroutine, 0);
	swapcontext(&main_ctx, &co_ctx);
	own_error_path();
	int kept = ml_is_blocked(); /* the coroutine's mask, this thread's */
	swapcontext(&main_ctx, &co_ctx);
	*ok = kept && co_kept && !ml_is_blocked();
	return NULL;
}

static ml_scope static_outer, slots[3];

__attribute__((noinline)) static void enter_forgotten(void)
{
	ml_scope inner;
	ml_enter_allocations(&inner, (uint64_t)1 << 40);
}

__attribute__((noinline)) static int two_in_one_frame(void)
{
	ml_scope a, b;
	ml_enter_allocations(&a, (uint64_t)1 << 40);
	ml_enter_allocations(&b, (uint64_t)1 << 40);
	ml_status st = ml_leave_all(&a, NULL); /* b still open */
	return st == ML_INVALID && ml_leave(&b, NULL) == ML_INVALID &&
	       ml_leave(&a, NULL) == ML_INVALID;
}

/* A scope around the leave_all cases: it must still be the innermost. */
static void leave_all_cases(void)
{
	ml_scope around;
	ml_enter_allocations(&around, (uint64_t)1 << 40);
	int ok = two_in_one_frame();
	scribble();
	ok &= ml_leave(&around, NULL) == ML_OK;
	check("leave-all-frame", ok, "the outer of two scopes of one frame was not left");

	ml_enter_allocations(&static_outer, 1 << 20);
	enter_forgotten();
	scribble();
	ml_status st = ml_leave_all(&static_outer, NULL);
	void *p = v_malloc(4 << 20);
	ok = st == ML_INVALID && p != NULL && ml_leave(&static_outer, NULL) == ML_INVALID;
	free(p);
	check("leave-all-static", ok, "a static scope with a forgotten inner one was not left");

	ml_enter_allocations(&slots[2], 1 << 20);
	ml_enter_allocations(&slots[1], (uint64_t)1 << 40);
	ml_leave_all(&slots[2], NULL); /* drops slots[1] */
	ml_enter_allocations(&slots[0], (uint64_t)1 << 40);
	ok = ml_leave_all(&slots[1], NULL) == ML_INVALID;
	ok &= ml_leave(&slots[0], NULL) == ML_OK;
	p = v_malloc(4 << 20);
	ok &= p != NULL;
	free(p);
	check("leave-all-dropped", ok, "a dropped scope was taken back into the list");
}

/* A later task's limit refuses, and the thread is not masked. */
static void refuses_after(const char *name)
{
	scribble();
	void *r = NULL;
	ml_status st = ml_limit_allocations(1000, big, &r, &r, NULL);
	check(name, !ml_is_blocked() && st == ML_ALLOCATION_LIMIT && r == NULL,
	      "the thread stayed masked: a later task's limit refused nothing");
}

/* A scope entered in this frame, which the jump discards. */
__attribute__((noinline)) static void enter_and_jump(int how, size_t alloc)
{
	ml_scope s;
	if (ml_enter_allocations(&s, 1 << 20) != ML_OK)
		return;
	free(v_malloc(alloc));
	if (how == 0)
		longjmp(jb, 1);
	if (how == 1)
		_longjmp(jb, 1);
	__longjmp_chk(jb, 1);
}

int main(void)
{
	if (ml_start() != ML_OK) {
		printf("FAIL start: engine not loaded\n");
		return 1;
	}
	if (setjmp(jb) == 0)
		ml_limit_allocations(1000, jump_out, NULL, NULL, NULL);
	after("out");

	signal(SIGALRM, on_alarm);
	if (sigsetjmp(sjb, 1) == 0) {
		ml_token *t = ml_token_create();
		ml_limit_with_token(t, wait_for_signal, NULL, NULL);
	}
	after("signal");

	if (setjmp(jb) == 0)
		enter_and_jump(1, 10);
	after("_longjmp");
	if (setjmp(jb) == 0)
		enter_and_jump(2, 10);
	after("__longjmp_chk");

	int ok = 0;
	ml_status st = ml_limit_allocations(1000, jump_inside, &ok, NULL, NULL);
	check("inside", ok && st == ML_ALLOCATION_LIMIT, "the task's limit was lost");

	ml_scope outer;
	ml_enter_allocations(&outer, 1000);
	free(v_malloc(600));
	if (setjmp(jb) == 0)
		enter_and_jump(0, 100);
	scribble();
	void *p = v_malloc(500); /* 700 + 500 > 1000 */
	uint64_t used = 0;
	st = ml_leave(&outer, &used);
	check("nested", p == NULL && st == ML_ALLOCATION_LIMIT && used == 700,
	      "the outer task lost its limit or count");
	free(p);
	after("nested-after");

	signal(SIGALRM, on_alarm_masked);
	if (sigsetjmp(sjb, 1) == 0)
		ml_limit_allocations(1 << 20, with_resource_task, NULL, NULL, NULL);
	refuses_after("masked");
	ml_limit_allocations(1 << 20, mask_and_return, NULL, NULL, NULL);
	refuses_after("mask-left");
	if (setjmp(jb) == 0)
		ml_with_resource(acquire_and_jump, use_it, drop_it, NULL, NULL);
	refuses_after("masked-outside");
	void *volatile hold = NULL;
	volatile int jumped = 0;
	if (setjmp(jb) == 0) {
		struct ml_stats now;
		ml_stats(&now);
		ml_on_memory_pressure(now.peak_bytes + (8 << 20), jump_from_pressure, NULL);
		hold = v_malloc(16 << 20);
	} else
		jumped = 1;
	ml_on_memory_pressure(-1, jump_from_pressure, NULL);
	free(hold);
	if (jumped)
		refuses_after("pressure");
	else
		check("pressure", 0, "the callback did not run");

	int same = mask_and_jump_home();
	same &= masked_block_then_setjmp() && !ml_is_blocked();
	check("same-frame", same, "a jump back into the masking function undid its mask");
	if (setjmp(jb) == 0)
		nine_masks_and_jump();
	check("nine-masks", !ml_is_blocked(), "masks past the eighth kept the thread masked");
	ml_status in_task = ML_OK;
	ml_enter_allocations(&outside, (uint64_t)1 << 40);
	ml_limit_allocations((uint64_t)1 << 40, leave_outside, &in_task, NULL, NULL);
	ml_scope next;
	ok = in_task == ML_INVALID && ml_leave(&outside, NULL) == ML_OK &&
	     ml_enter_allocations(&next, 1000) == ML_OK && v_malloc(2000) == NULL &&
	     ml_leave(&next, NULL) == ML_ALLOCATION_LIMIT;
	check("leave-all-in-task", ok, "a task's scope was dropped from inside it");

	static char alt[1 << 16];
	stack_t ss = { .ss_sp = alt, .ss_size = sizeof alt };
	sigaltstack(&ss, NULL);
	struct sigaction sa = { .sa_handler = masked_handler, .sa_flags = SA_ONSTACK };
	sigaction(SIGUSR1, &sa, NULL);
	if (sigsetjmp(alt_jb, 1) == 0)
		raise(SIGUSR1);
	refuses_after("altstack");

	int co_ok = 0;
	pthread_t th;
	if (pthread_create(&th, NULL, coroutine_thread, &co_ok) == 0)
		pthread_join(th, NULL);
	check("coroutine", co_ok, "a suspended coroutine's mask was undone");

	leave_all_cases();

	int left_ok = 1;
	for (int i = 0; i < 3; i++) {
		ml_scope on_stack;
		st = ml_limit_allocations(64 << 20, enter_and_return,
					  i ? &on_stack : NULL, NULL, NULL);
		left_ok &= st == ML_INVALID;
		scribble();
		left_ok &= ml_leave(i ? &on_stack : &left_open_scope, NULL) == ML_INVALID;
	}
	check("left-open-status", left_ok, "not ML_INVALID");
	after("left-open");
	return failures;
}
