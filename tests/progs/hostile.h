/* hostile.h: what the hostile-conditions helpers share: a failure counter
 * and a report that uses write(2) only (it may run in a signal handler or
 * after the exit report). */
#ifndef MLT_HOSTILE_H
#define MLT_HOSTILE_H
#include <execinfo.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>
#include <unistd.h>

static atomic_int failures;

static void fail(const char *fmt, ...)
{
	char b[512];
	int n = snprintf(b, sizeof b, "FAIL ");
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(b + n, sizeof b - (size_t)n, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof b - 2)
		n = (int)sizeof b - 2;
	b[n++] = '\n';
	if (write(2, b, (size_t)n) < 0)
		_exit(99);
	atomic_fetch_add(&failures, 1);
}
#define CHECK(c, ...) do { if (!(c)) fail(__VA_ARGS__); } while (0)

/* A crash says where: the signal, the faulting address, the instruction
 * and the stack (objects and offsets, for addr2line), on stderr, then
 * dies of the same signal. A rare crash in a stress test is otherwise a
 * bare "status 139". On its own stack, in case the stack overflowed. */
static void crash_said(int sig, siginfo_t *si, void *uc)
{
	char b[160];
	uintptr_t pc = 0;
#if defined(__x86_64__)
	pc = (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
#else
	(void)uc;
#endif
	int n = snprintf(b, sizeof b, "CRASH signal %d at address %p, pc %p; stack:\n",
			 sig, si->si_addr, (void *)pc);
	if (write(2, b, (size_t)n) < 0)
		_exit(98);
	void *f[64];
	int k = backtrace(f, 64);
	backtrace_symbols_fd(f, k, 2);
	signal(sig, SIG_DFL);
	raise(sig);
}

static __attribute__((unused)) void say_crashes(void)
{
	static char alt[64 << 10];
	stack_t ss = { .ss_sp = alt, .ss_size = sizeof alt };
	sigaltstack(&ss, NULL);
	struct sigaction sa;
	sa.sa_sigaction = crash_said;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGILL, &sa, NULL);
	sigaction(SIGFPE, &sa, NULL);
}

#endif
