/* cxx.c: C++'s operator new and delete, the twenty forms libstdc++ exports
 * (plain, array, nothrow, aligned, sized), straight onto the engine's fast
 * path as malloc is: without them every `new` went through libstdc++'s
 * operator and then malloc. Written in C under their mangled names: the
 * library must not depend on libstdc++, and a C program preloading it must
 * not load it.
 *
 * - new charges the request like malloc; plain and array delete are free
 *   itself (the build defines _ZdlPv and _ZdaPv... as aliases, see the
 *   Makefile); sized delete is free too (see "Freeing" below).
 * - A refusal follows the standard: loop { allocate; if that failed, call
 *   the new_handler if there is one (it may free memory, or throw), else
 *   throw std::bad_alloc }. The nothrow forms do the same with the handler's
 *   exception caught and NULL returned, as libstdc++'s do (catch (...)).
 *   std::get_new_handler and std::__throw_bad_alloc come from the program's
 *   C++ runtime, found with dlsym only when an allocation has failed; the
 *   catch is cxx_catch.cc, whose few references to the runtime are renamed by
 *   the build to trampolines here.
 * - A program that defines its own operator new or delete (a tracking
 *   allocator, say) keeps it: libstdc++'s other forms call those, so that,
 *   e.g., a sized delete reaches the program's unsized one. When any form
 *   is not ours in the global scope, every form here that libstdc++ makes
 *   of another one steps aside for the runtime's (found with
 *   dlsym(RTLD_NEXT)), whose allocations still reach the limits through
 *   malloc. Checked once, at the first such call. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdlib.h>
#include <unwind.h>

#include "alloc.h"

typedef void (*new_handler)(void);

/* ---- The C++ runtime, found when first needed -------------------------- */

/* dlsym and dlopen may allocate (dlerror's message, the loader's lists):
 * those allocations are the library's need, not the program's, and the
 * thread is here because a limit refused it, so they are made as an
 * invisible callout (core/callout.c): neither counted nor refused. */
struct guard {
	int unused;
};
static struct guard guard_enter(void)
{
	struct mli_thread *t = &mli_tls;
	if (t->state == MLI_T_NEW)
		mli_thread_start();
	mli_callout_begin(t, MLI_CALLOUT_INVISIBLE);
	return (struct guard){ 0 };
}
static void guard_leave(struct guard g)
{
	(void)g;
	mli_callout_end(&mli_tls, MLI_CALLOUT_INVISIBLE);
}

static struct {
	new_handler (*get_new_handler)(void);
	void (*throw_bad_alloc)(void) __attribute__((noreturn));
	_Unwind_Reason_Code (*personality)(int, _Unwind_Action,
					   _Unwind_Exception_Class,
					   struct _Unwind_Exception *,
					   struct _Unwind_Context *);
	void *(*begin_catch)(void *);
	void (*end_catch)(void);
} rt;
static int rt_state; /* 0 not found yet, 1 found (atomic, release) */

#define SET(field, value) __atomic_store_n(&rt.field, (__typeof__(rt.field))(value), __ATOMIC_RELAXED)

/* The runtime that defines std::get_new_handler: the global scope's, or,
 * if the caller's runtime was loaded locally (a C++ extension dlopened by
 * python, with RTLD_LOCAL), the one in the caller's own dependencies. The
 * other names come from that same object, which is kept loaded
 * (RTLD_NOLOAD adds a reference) so that the pointers stay valid. Several
 * threads may resolve at once: they store the same values, without a lock
 * (one held across dlsym could wait on a thread inside dlopen that waits
 * on it). */
static bool rt_find(const void *caller)
{
	if (__atomic_load_n(&rt_state, __ATOMIC_ACQUIRE))
		return true;
	struct guard g = guard_enter();
	void *gh = dlsym(RTLD_DEFAULT, "_ZSt15get_new_handlerv");
	Dl_info info;
	struct link_map *map = NULL;
	if (!gh && caller && dladdr1(caller, &info, (void **)&map, RTLD_DL_LINKMAP) && map)
		gh = dlsym(map, "_ZSt15get_new_handlerv");
	void *h = NULL;
	map = NULL;
	if (gh && dladdr1(gh, &info, (void **)&map, RTLD_DL_LINKMAP) && map)
		h = dlopen(map->l_name && map->l_name[0] ? map->l_name : NULL,
			   RTLD_LAZY | RTLD_NOLOAD);
	bool ok = false;
	if (h) {
		void *thr = dlsym(h, "_ZSt17__throw_bad_allocv");
		if (thr) {
			SET(get_new_handler, gh);
			SET(throw_bad_alloc, thr);
			SET(personality, dlsym(h, "__gxx_personality_v0"));
			SET(begin_catch, dlsym(h, "__cxa_begin_catch"));
			SET(end_catch, dlsym(h, "__cxa_end_catch"));
			__atomic_store_n(&rt_state, 1, __ATOMIC_RELEASE);
			ok = true;
		}
	}
	guard_leave(g);
	return ok;
}

/* The current new_handler, NULL if none (or no C++ runtime at all). */
static new_handler current_handler(const void *caller)
{
	if (!rt_find(caller))
		return NULL;
	return __atomic_load_n(&rt.get_new_handler, __ATOMIC_RELAXED)();
}

static __attribute__((noreturn)) void throw_bad_alloc(const void *caller)
{
	if (rt_find(caller))
		__atomic_load_n(&rt.throw_bad_alloc, __ATOMIC_RELAXED)();
	static const char msg[] = "memlimits: operator new failed and no C++ runtime "
				  "was found to throw std::bad_alloc: aborting\n";
	mli_say(msg, sizeof msg - 1);
	abort();
}

/* cxx_catch.cc's references to the runtime, renamed by the build. They are
 * reached only through mli_cxx_catch, called after rt_find found them. */
_Unwind_Reason_Code mli_cxx_personality(int version, _Unwind_Action actions,
					_Unwind_Exception_Class cls,
					struct _Unwind_Exception *ue,
					struct _Unwind_Context *ctx)
{
	return __atomic_load_n(&rt.personality, __ATOMIC_RELAXED)(version, actions,
								  cls, ue, ctx);
}
void *mli_cxx_begin_catch(void *e)
{
	return __atomic_load_n(&rt.begin_catch, __ATOMIC_RELAXED)(e);
}
void mli_cxx_end_catch(void)
{
	__atomic_load_n(&rt.end_catch, __ATOMIC_RELAXED)();
}
/* cxx_catch.cc: fn(arg), 0; or -1 if it threw (the exception is gone). */
int mli_cxx_catch(void (*fn)(void *), void *arg);

static void call_handler(void *h)
{
	((new_handler)h)();
}

/* ---- Allocation --------------------------------------------------------- */

/* NULL if a limit refused it or jemalloc has no memory. */
static inline void *plain_new(size_t n)
{
	if (mli_likely(mli_admit_fast(n)))
		return mli_je_malloc(n);
	return mli_malloc_slow(n);
}

static inline void *any_new(size_t n, size_t align)
{
	return align ? mli_aligned(align, n) : plain_new(n);
}

/* The standard's loop, after a first attempt failed. */
static MLI_NOINLINE void *new_failed(size_t n, size_t align, const void *caller)
{
	for (;;) {
		new_handler h = current_handler(caller);
		if (!h)
			throw_bad_alloc(caller);
		h();
		void *p = any_new(n, align);
		if (p)
			return p;
	}
}

static MLI_NOINLINE void *new_failed_nothrow(size_t n, size_t align,
					     const void *caller)
{
	for (;;) {
		new_handler h = current_handler(caller);
		if (!h || !__atomic_load_n(&rt.personality, __ATOMIC_RELAXED) ||
		    !__atomic_load_n(&rt.begin_catch, __ATOMIC_RELAXED) ||
		    !__atomic_load_n(&rt.end_catch, __ATOMIC_RELAXED))
			return NULL;
		if (mli_cxx_catch(call_handler, (void *)h) != 0)
			return NULL;
		void *p = any_new(n, align);
		if (p)
			return p;
	}
}

static inline void *new_throwing(size_t n, size_t align, const void *caller)
{
	void *p = any_new(n, align);
	if (mli_likely(p != NULL))
		return p;
	return new_failed(n, align, caller);
}

static inline void *new_nothrow(size_t n, size_t align, const void *caller)
{
	void *p = any_new(n, align);
	if (mli_likely(p != NULL))
		return p;
	return new_failed_nothrow(n, align, caller);
}

/* ---- Freeing ------------------------------------------------------------ */

/* Every delete is free (mli_user_free): a sized one too, since jemalloc's
 * sized free (sdallocx) runs its slow path (about 98 instructions against
 * 30 for free's fast path, callgrind, new + sized delete of 48 bytes), and
 * free is also safe from a wrong size. */

/* ---- Stepping aside for the program's own operators -------------------- */

enum form {
	F_NAM, F_NWM_NT, F_NAM_NT, F_NAM_AL, F_NWM_AL_NT, F_NAM_AL_NT,
	F_DLM, F_DAM, F_DL_NT, F_DA_NT, F_DLM_AL, F_DAM_AL, F_DA_AL,
	F_DL_AL_NT, F_DA_AL_NT, F_DA, NFORMS
};
static const char *const form_name[NFORMS] = {
	[F_NAM] = "_Znam",
	[F_NWM_NT] = "_ZnwmRKSt9nothrow_t",
	[F_NAM_NT] = "_ZnamRKSt9nothrow_t",
	[F_NAM_AL] = "_ZnamSt11align_val_t",
	[F_NWM_AL_NT] = "_ZnwmSt11align_val_tRKSt9nothrow_t",
	[F_NAM_AL_NT] = "_ZnamSt11align_val_tRKSt9nothrow_t",
	[F_DLM] = "_ZdlPvm",
	[F_DAM] = "_ZdaPvm",
	[F_DL_NT] = "_ZdlPvRKSt9nothrow_t",
	[F_DA_NT] = "_ZdaPvRKSt9nothrow_t",
	[F_DLM_AL] = "_ZdlPvmSt11align_val_t",
	[F_DAM_AL] = "_ZdaPvmSt11align_val_t",
	[F_DA_AL] = "_ZdaPvSt11align_val_t",
	[F_DL_AL_NT] = "_ZdlPvSt11align_val_tRKSt9nothrow_t",
	[F_DA_AL_NT] = "_ZdaPvSt11align_val_tRKSt9nothrow_t",
	[F_DA] = "_ZdaPv",
};
/* The forms every other one is made of in libstdc++, which use malloc,
 * aligned_alloc and free and so never step aside. */
static const char *const basic_name[] = {
	"_Znwm", "_ZdlPv", "_ZnwmSt11align_val_t", "_ZdlPvSt11align_val_t",
};

/* Is the global scope's definition of name in another object than ours? */
static bool not_ours(const char *name, const Dl_info *mine)
{
	Dl_info info;
	void *f = dlsym(RTLD_DEFAULT, name);
	return f && dladdr(f, &info) && info.dli_fbase != mine->dli_fbase;
}
static void *next_form[NFORMS];
enum { MODE_UNKNOWN, MODE_OURS, MODE_RUNTIME };
static int mode;

static MLI_NOINLINE bool step_aside_slow(void)
{
	int m = __atomic_load_n(&mode, __ATOMIC_ACQUIRE);
	if (m != MODE_UNKNOWN)
		return m == MODE_RUNTIME;
	struct guard g = guard_enter();
	Dl_info mine;
	bool replaced = false;
	if (dladdr((void *)step_aside_slow, &mine)) {
		for (size_t i = 0; i < sizeof basic_name / sizeof *basic_name; i++)
			replaced |= not_ours(basic_name[i], &mine);
		for (int i = 0; i < NFORMS; i++)
			replaced |= not_ours(form_name[i], &mine);
	}
	m = MODE_OURS;
	if (replaced) {
		m = MODE_RUNTIME;
		for (int i = 0; i < NFORMS; i++) {
			void *f = dlsym(RTLD_NEXT, form_name[i]);
			if (!f)
				m = MODE_OURS; /* no runtime behind us: ours, then */
			__atomic_store_n(&next_form[i], f, __ATOMIC_RELAXED);
		}
	}
	guard_leave(g);
	__atomic_store_n(&mode, m, __ATOMIC_RELEASE);
	return m == MODE_RUNTIME;
}

/* Should the forms below be the runtime's? One compare once known. */
static inline bool step_aside(void)
{
	if (mli_likely(__atomic_load_n(&mode, __ATOMIC_RELAXED) == MODE_OURS))
		return false;
	return step_aside_slow();
}

#define NEXT(f, type) ((type)__atomic_load_n(&next_form[f], __ATOMIC_RELAXED))

/* ---- The operators ------------------------------------------------------ */

#define CALLER __builtin_return_address(0)
typedef void *(*new_fn)(size_t);
typedef void *(*new_nt_fn)(size_t, const void *);
typedef void *(*new_al_fn)(size_t, size_t);
typedef void *(*new_al_nt_fn)(size_t, size_t, const void *);
typedef void (*del_fn)(void *);
typedef void (*del_sized_fn)(void *, size_t);
typedef void (*del_nt_fn)(void *, const void *);
typedef void (*del_al_fn)(void *, size_t);
typedef void (*del_sized_al_fn)(void *, size_t, size_t);
typedef void (*del_al_nt_fn)(void *, size_t, const void *);

/* operator new(size_t), the one nearly every `new` and std::allocator
 * calls. Its slow and failing sides are entered by a jump, with the stack as
 * at entry, so that their return address is the caller's. */
__attribute__((used)) void *mli_new_slow(size_t n)
{
	void *p = mli_malloc_slow(n);
	if (mli_likely(p != NULL))
		return p;
	return new_failed(n, 0, CALLER);
}

__attribute__((used)) void *mli_new_oom(size_t n)
{
	return new_failed(n, 0, CALLER);
}

/* operator new[](size_t), when the program replaced an operator or has not
 * been looked at yet: entered by a jump from _Znam below. */
__attribute__((used)) void *mli_new_array_other(size_t n)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_NAM, new_fn)(n);
	return new_throwing(n, 0, CALLER);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(MLI_PORTABLE_MALLOC)
/* malloc's fast path (alloc.c), and n kept across the call for the rare
 * NULL: five instructions over malloc's, where gcc's version of the C below
 * takes twelve. new[] first checks that it need not step aside (two more;
 * the C version took nineteen in all). */
_Static_assert(__builtin_offsetof(struct mli_thread, left) == 0,
	       "left must be the first word of the thread block");
_Static_assert(MODE_OURS == 1, "new[]'s check of mode");
#define NEW_FAST                                \
	"movq mli_tls@gottpoff(%rip), %rax\n"   \
	"subq %rdi, %fs:(%rax)\n"               \
	"jbe 1f\n" /* left > n: mli_admit_fast */  \
	"pushq %rdi\n"                          \
	".cfi_adjust_cfa_offset 8\n"            \
	"call mli_je_malloc\n"                  \
	"popq %rdi\n"                           \
	".cfi_adjust_cfa_offset -8\n"           \
	"testq %rax, %rax\n"                    \
	"jz mli_new_oom\n"                      \
	"ret\n"                                 \
	"1: addq %rdi, %fs:(%rax)\n"            \
	"jmp mli_new_slow\n"
__asm__(".text\n"
	".globl _Znwm\n"
	".type _Znwm, @function\n"
	".p2align 4\n"
	"_Znwm:\n"
	".cfi_startproc\n"
	NEW_FAST
	".cfi_endproc\n"
	".size _Znwm, .-_Znwm\n"
	".globl _Znam\n"
	".type _Znam, @function\n"
	".p2align 4\n"
	"_Znam:\n"
	".cfi_startproc\n"
	"cmpl $1, mode(%rip)\n"
	"jne mli_new_array_other\n"
	NEW_FAST
	".cfi_endproc\n"
	".size _Znam, .-_Znam\n");
#else
EXPORT void *_Znwm(size_t n)
{
	return new_throwing(n, 0, CALLER);
}

/* operator new[](size_t) */
EXPORT void *_Znam(size_t n)
{
	return mli_new_array_other(n);
}
#endif

/* operator new(size_t, const std::nothrow_t &) */
EXPORT void *_ZnwmRKSt9nothrow_t(size_t n, const void *nt)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_NWM_NT, new_nt_fn)(n, nt);
	return new_nothrow(n, 0, CALLER);
}

/* operator new[](size_t, const std::nothrow_t &) */
EXPORT void *_ZnamRKSt9nothrow_t(size_t n, const void *nt)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_NAM_NT, new_nt_fn)(n, nt);
	return new_nothrow(n, 0, CALLER);
}

/* operator new(size_t, std::align_val_t) */
EXPORT void *_ZnwmSt11align_val_t(size_t n, size_t al)
{
	return new_throwing(n, al, CALLER);
}

/* operator new[](size_t, std::align_val_t) */
EXPORT void *_ZnamSt11align_val_t(size_t n, size_t al)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_NAM_AL, new_al_fn)(n, al);
	return new_throwing(n, al, CALLER);
}

/* operator new(size_t, std::align_val_t, const std::nothrow_t &) */
EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_NWM_AL_NT, new_al_nt_fn)(n, al, nt);
	return new_nothrow(n, al, CALLER);
}

/* operator new[](size_t, std::align_val_t, const std::nothrow_t &) */
EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, const void *nt)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_NAM_AL_NT, new_al_nt_fn)(n, al, nt);
	return new_nothrow(n, al, CALLER);
}

/* operator delete(void *) and operator delete(void *, std::align_val_t) are
 * free: aliases the build defines (Makefile, CXX_ALIASES). */

/* operator delete[](void *) */
EXPORT void _ZdaPv(void *p)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_DA, del_fn)(p);
	mli_user_free(p);
}

/* operator delete(void *, size_t) */
EXPORT void _ZdlPvm(void *p, size_t n)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_DLM, del_sized_fn)(p, n);
	(void)n;
	mli_user_free(p);
}

/* operator delete[](void *, size_t) */
EXPORT void _ZdaPvm(void *p, size_t n)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_DAM, del_sized_fn)(p, n);
	(void)n;
	mli_user_free(p);
}

/* operator delete(void *, const std::nothrow_t &) */
EXPORT void _ZdlPvRKSt9nothrow_t(void *p, const void *nt)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_DL_NT, del_nt_fn)(p, nt);
	mli_user_free(p);
}

/* operator delete[](void *, const std::nothrow_t &) */
EXPORT void _ZdaPvRKSt9nothrow_t(void *p, const void *nt)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_DA_NT, del_nt_fn)(p, nt);
	mli_user_free(p);
}

/* operator delete(void *, size_t, std::align_val_t) */
EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t al)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_DLM_AL, del_sized_al_fn)(p, n, al);
	(void)n;
	(void)al;
	mli_user_free(p);
}

/* operator delete[](void *, size_t, std::align_val_t) */
EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t al)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_DAM_AL, del_sized_al_fn)(p, n, al);
	(void)n;
	(void)al;
	mli_user_free(p);
}

/* operator delete[](void *, std::align_val_t) */
EXPORT void _ZdaPvSt11align_val_t(void *p, size_t al)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_DA_AL, del_al_fn)(p, al);
	mli_user_free(p);
}

/* operator delete(void *, std::align_val_t, const std::nothrow_t &) */
EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *nt)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_DL_AL_NT, del_al_nt_fn)(p, al, nt);
	mli_user_free(p);
}

/* operator delete[](void *, std::align_val_t, const std::nothrow_t &) */
EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *nt)
{
	if (mli_unlikely(step_aside()))
		return NEXT(F_DA_AL_NT, del_al_nt_fn)(p, al, nt);
	mli_user_free(p);
}
