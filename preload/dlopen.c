/* dlopen.c: libraries loaded with RTLD_DEEPBIND get this library's malloc.
 *
 * RTLD_DEEPBIND makes a library look up its symbols in its own
 * dependencies before the global scope; libc is one of them, so its calls to
 * malloc and free bind to glibc's allocator, not to this preloaded one, and
 * the first pointer that crosses over (a block from the program freed by
 * the library, or the reverse) crashes the process. php loads its
 * extensions that way: with Debian's php.ini, every php run died at
 * start-up under the preload (and under stock jemalloc preloaded). No
 * lookup order puts a preloaded library ahead of a DEEPBIND library's own
 * dependencies, so dlopen drops the flag: the library then binds like any
 * other, to the global scope first. What DEEPBIND was for (a library's own
 * copy of a symbol winning over the program's) is lost; for an allocator
 * preload that is the price of every block having one owner.
 *
 * Said once on stderr when MEMLIMITS_REPORT is set, never otherwise: php
 * does it at every start, and a line on every run of every php script
 * (cron mails, CGI, test suites comparing stderr) would be noise to users
 * who did not ask memlimits for diagnostics. The README says it.
 *
 * glibc's dlopen uses its return address to find the caller (whose RUNPATH
 * is searched for a bare file name, and whose namespace the library joins),
 * so this dlopen jumps to glibc's with the stack as it found it. */
#define _GNU_SOURCE
#include <dlfcn.h>

#include "alloc.h"

typedef void *(*dlopen_fn)(const char *, int);
/* glibc's dlopen (the next definition); used from the assembly below. */
__attribute__((used)) dlopen_fn mli_real_dlopen;

static void say_dropped(const char *file)
{
	static int said;
	mli_engine_init(); /* the configuration: a dlopen may come before */
	if (!mli_eng.cfg.report[0] || __atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
		return;
	char text[600];
	struct mli_buf b = { text, 0, sizeof text };
	mli_buf_str(&b, "memlimits: dlopen(\"");
	mli_buf_str(&b, file ? file : "(null)");
	mli_buf_str(&b, "\") without RTLD_DEEPBIND, so that its malloc and free are "
			"this library's (said for the first such library only)\n");
	mli_say(b.p, b.len);
}

/* The mode to give glibc's dlopen; also finds it, the first time. */
__attribute__((used)) int mli_dlopen_mode(const char *file, int mode)
{
	if (!__atomic_load_n(&mli_real_dlopen, __ATOMIC_ACQUIRE))
		__atomic_store_n(&mli_real_dlopen, (dlopen_fn)dlsym(RTLD_NEXT, "dlopen"),
				 __ATOMIC_RELEASE);
	if (mode & RTLD_DEEPBIND) {
		mode &= ~RTLD_DEEPBIND;
		say_dropped(file);
	}
	return mode;
}

#if defined(__x86_64__) && defined(__GNUC__)
__asm__(".text\n"
	".globl dlopen\n"
	".type dlopen, @function\n"
	".p2align 4\n"
	"dlopen:\n"
	".cfi_startproc\n"
	"pushq %rdi\n" /* the file; also aligns the stack for the call */
	".cfi_adjust_cfa_offset 8\n"
	"call mli_dlopen_mode\n"
	"movl %eax, %esi\n"
	"popq %rdi\n"
	".cfi_adjust_cfa_offset -8\n"
	"jmp *mli_real_dlopen(%rip)\n"
	".cfi_endproc\n"
	".size dlopen, .-dlopen\n");
#else
/* Elsewhere glibc sees this library as the caller: a bare file name is not
 * looked up in the real caller's RUNPATH. */
EXPORT void *dlopen(const char *file, int mode)
{
	mode = mli_dlopen_mode(file, mode);
	return mli_real_dlopen(file, mode);
}
#endif
