/* dlsym.c: a function looked up in libc by handle is this library's.
 *
 * dlsym(handle, name) searches the handle's object and its dependencies,
 * not the global scope where the preload comes first: with a handle of
 * libc (or of any library, libc being a dependency of each) it gives
 * glibc's own malloc or mmap, which no limit sees. That is how the usual
 * foreign-function interfaces call C: python's ctypes.CDLL("libc.so.6"),
 * ruby's Fiddle.dlopen("libc.so.6"), java's CLinker.systemLookup() each
 * held 400 MiB under a 100M limit (a held-out check), and freeing a block
 * of one allocator with the other's free crashes. So when the lookup by
 * handle lands in the libc of the program's namespace on one of the
 * library's functions below, the answer is the library's: what the same
 * name gives a program that calls it.
 *
 * Only functions that end in the library (the malloc family, the mmap
 * family, the calls that change what is counted, which make their system
 * calls themselves): an interposer preloaded after this library that looks
 * "the real" close or execve up by libc's handle (samba's socket_wrapper
 * does) got this library's, which calls the next definition, the
 * interposer's, for ever (a held-out check). A library in another
 * namespace (dlmopen) keeps its own libc's: its blocks are that malloc's.
 *
 * RTLD_DEFAULT and RTLD_NEXT go to glibc's dlsym untouched, with the stack
 * as the caller left it: glibc finds the caller by the return address, and
 * RTLD_NEXT means the definition after the caller's object. (Handles are
 * searched the same whoever calls.) dlvsym is not interposed: a lookup
 * with a version is glibc's. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"

typedef void *(*dlsym_fn)(void *, const char *);
/* glibc's dlsym, found through dlvsym (which this library leaves alone:
 * the lookup of dlsym by name would find this one). Used from the
 * assembly below. */
__attribute__((used)) dlsym_fn mli_real_dlsym;

__attribute__((used)) void mli_dlsym_find(void)
{
	if (__atomic_load_n(&mli_real_dlsym, __ATOMIC_ACQUIRE))
		return;
	static const char *const versions[] = { "GLIBC_2.34", "GLIBC_2.2.5" };
	for (int i = 0; i < 2; i++) {
		void *f = dlvsym(RTLD_NEXT, "dlsym", versions[i]);
		if (f) {
			__atomic_store_n(&mli_real_dlsym, (dlsym_fn)f, __ATOMIC_RELEASE);
			return;
		}
	}
}

/* The library's functions that a lookup in libc is given: those that end
 * in it (none calls the next definition by RTLD_NEXT). */
static const char *const ours[] = {
	"malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
	"aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
	"free_sized", "free_aligned_sized", "__libc_malloc", "__libc_calloc",
	"__libc_realloc", "__libc_memalign", "__libc_valloc", "__libc_pvalloc",
	"__libc_free", "mallinfo", "mallinfo2", "malloc_stats", "malloc_info",
	"malloc_trim", "mallopt", "mmap", "mmap64", "munmap", "mremap",
	"mprotect", "pkey_mprotect", "madvise", "memfd_create", "fallocate",
	"fallocate64", "ftruncate", "ftruncate64", "shmat", "shmdt", "brk",
	"sbrk", "__sbrk", "syscall", "__mmap", "__munmap", "__mprotect", "__madvise",
};

static bool ends_here(const char *name)
{
	for (size_t i = 0; i < sizeof ours / sizeof *ours; i++)
		if (!strcmp(name, ours[i]))
			return true;
	return false;
}

/* Is p inside the libc of this library's namespace (the program's)? */
static bool in_libc(const void *p)
{
	static void *libc_base;
	Dl_info di;
	void *base = __atomic_load_n(&libc_base, __ATOMIC_ACQUIRE);
	if (!base) {
		/* getpid is libc's, and not one of this library's. */
		if (!dladdr((void *)getpid, &di) || !di.dli_fbase)
			return false;
		base = di.dli_fbase;
		__atomic_store_n(&libc_base, base, __ATOMIC_RELEASE);
	}
	return dladdr(p, &di) && di.dli_fbase == base;
}

/* This library's base address and a handle of it (its own scope: itself,
 * then its dependencies). */
static void *self_base, *self;

static void find_self(void)
{
	Dl_info di;
	if (__atomic_load_n(&self, __ATOMIC_ACQUIRE) || !dladdr((void *)find_self, &di))
		return;
	void *h = dlopen(di.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
	if (!h)
		return;
	self_base = di.dli_fbase;
	__atomic_store_n(&self, h, __ATOMIC_RELEASE);
}

/* dlsym with a handle of an object. */
__attribute__((used)) void *mli_dlsym_handle(void *handle, const char *name)
{
	void *p = mli_real_dlsym(handle, name);
	if (!p || !name || !ends_here(name) || !in_libc(p))
		return p;
	find_self();
	void *h = __atomic_load_n(&self, __ATOMIC_ACQUIRE);
	void *q = h ? mli_real_dlsym(h, name) : NULL;
	Dl_info di;
	if (q && q != p && dladdr(q, &di) && di.dli_fbase == self_base)
		return q;
	return p;
}

#if defined(__x86_64__) && defined(__GNUC__)
__asm__(".text\n"
	".globl dlsym\n"
	".type dlsym, @function\n"
	".p2align 4\n"
	"dlsym:\n"
	".cfi_startproc\n"
	"pushq %rdi\n"
	".cfi_adjust_cfa_offset 8\n"
	"pushq %rsi\n"
	".cfi_adjust_cfa_offset 8\n"
	"subq $8, %rsp\n" /* aligns the stack for the call */
	".cfi_adjust_cfa_offset 8\n"
	"call mli_dlsym_find\n"
	"addq $8, %rsp\n"
	".cfi_adjust_cfa_offset -8\n"
	"popq %rsi\n"
	".cfi_adjust_cfa_offset -8\n"
	"popq %rdi\n"
	".cfi_adjust_cfa_offset -8\n"
	"testq %rdi, %rdi\n" /* RTLD_DEFAULT */
	"je 1f\n"
	"cmpq $-1, %rdi\n" /* RTLD_NEXT */
	"je 1f\n"
	"jmp mli_dlsym_handle\n"
	"1: jmp *mli_real_dlsym(%rip)\n"
	".cfi_endproc\n"
	".size dlsym, .-dlsym\n");
#else
/* Elsewhere glibc sees this library as the caller of an RTLD_NEXT lookup. */
EXPORT void *dlsym(void *handle, const char *name)
{
	mli_dlsym_find();
	if (handle == RTLD_DEFAULT || handle == RTLD_NEXT)
		return mli_real_dlsym(handle, name);
	return mli_dlsym_handle(handle, name);
}
#endif
