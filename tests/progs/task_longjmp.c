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
