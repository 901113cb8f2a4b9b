// cxx_ops MODE: the library's C++ operators new and delete (preload/cxx.c),
// run under the preload by test_alloc. Prints "ok: ..." or "FAIL: ..." per
// check and "N failures"; exit 0 iff none failed.
//   forms    each of the twenty forms is the library's (dladdr), each new
//            form is charged exactly what malloc's family would in an
//            ml_enter_allocations scope (its request; an alignment above 16,
//            the block's usable size), aligned forms are aligned, every
//            delete form frees
//   refuse   a task's limit refuses: the throwing forms throw std::bad_alloc
//            (after calling the new_handler), the nothrow forms give nullptr
//   handler  (MEMLIMITS_GLOBAL_MEMORY=64M) a new_handler that frees a reserve
//            makes the retry succeed, in every form; one that throws
//            propagates from the throwing forms and gives nullptr from the
//            nothrow ones; the handler is called until it helps
#include <dlfcn.h>

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <new>

#include "shim/memlimits.h"

static int failures;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	std::printf("%s: ", ok ? "ok" : "FAIL");
	std::vprintf(fmt, ap);
	std::printf("\n");
	va_end(ap);
	if (!ok)
		failures++;
}

// Keeps the compiler from folding sizes or removing new/delete pairs.
static void *volatile sink;
static volatile std::size_t vsize;

using std::align_val_t;
using std::nothrow_t;
using std::size_t;

// Every form, as the program's calls resolve it.
#define NEW_FORMS(X)                                                              \
	X(new_, void *(*)(size_t), ::operator new)                                \
	X(new_array, void *(*)(size_t), ::operator new[])                         \
	X(new_nothrow, void *(*)(size_t, const nothrow_t &), ::operator new)      \
	X(new_array_nothrow, void *(*)(size_t, const nothrow_t &), ::operator new[]) \
	X(new_aligned, void *(*)(size_t, align_val_t), ::operator new)            \
	X(new_array_aligned, void *(*)(size_t, align_val_t), ::operator new[])    \
	X(new_aligned_nothrow, void *(*)(size_t, align_val_t, const nothrow_t &), \
	  ::operator new)                                                         \
	X(new_array_aligned_nothrow,                                              \
	  void *(*)(size_t, align_val_t, const nothrow_t &), ::operator new[])
#define DELETE_FORMS(X)                                                           \
	X(delete_, void (*)(void *), ::operator delete)                           \
	X(delete_array, void (*)(void *), ::operator delete[])                    \
	X(delete_sized, void (*)(void *, size_t), ::operator delete)              \
	X(delete_array_sized, void (*)(void *, size_t), ::operator delete[])      \
	X(delete_nothrow, void (*)(void *, const nothrow_t &), ::operator delete) \
	X(delete_array_nothrow, void (*)(void *, const nothrow_t &),              \
	  ::operator delete[])                                                    \
	X(delete_aligned, void (*)(void *, align_val_t), ::operator delete)       \
	X(delete_array_aligned, void (*)(void *, align_val_t), ::operator delete[]) \
	X(delete_sized_aligned, void (*)(void *, size_t, align_val_t),            \
	  ::operator delete)                                                      \
	X(delete_array_sized_aligned, void (*)(void *, size_t, align_val_t),      \
	  ::operator delete[])                                                    \
	X(delete_aligned_nothrow, void (*)(void *, align_val_t, const nothrow_t &), \
	  ::operator delete)                                                      \
	X(delete_array_aligned_nothrow,                                           \
	  void (*)(void *, align_val_t, const nothrow_t &), ::operator delete[])

#define DECLARE(name, type, op) \
	using t_##name = type;  \
	static t_##name volatile f_##name = static_cast<t_##name>(&op);
NEW_FORMS(DECLARE)
DELETE_FORMS(DECLARE)

static bool in_library(void *f)
{
	Dl_info info;
	return dladdr(f, &info) && info.dli_fname && std::strstr(info.dli_fname, "libmemlimits");
}

// Allocates n bytes (alignment al if the form has one) with new form k.
static void *new_form(int k, size_t n, size_t al)
{
	align_val_t a = align_val_t(al);
	switch (k) {
	case 0: return f_new_(n);
	case 1: return f_new_array(n);
	case 2: return f_new_nothrow(n, std::nothrow);
	case 3: return f_new_array_nothrow(n, std::nothrow);
	case 4: return f_new_aligned(n, a);
	case 5: return f_new_array_aligned(n, a);
	case 6: return f_new_aligned_nothrow(n, a, std::nothrow);
	default: return f_new_array_aligned_nothrow(n, a, std::nothrow);
	}
}
static const char *const new_name[] = {
	"new", "new[]", "new nothrow", "new[] nothrow", "new aligned",
	"new[] aligned", "new aligned nothrow", "new[] aligned nothrow",
};
static bool new_aligned(int k) { return k >= 4; }
static bool new_nothrow(int k) { return k == 2 || k == 3 || k >= 6; }

// Frees p (from new form k, n bytes, alignment al) with its matching delete
// form number d: 0 plain, 1 sized, 2 nothrow.
static void delete_form(int k, int d, void *p, size_t n, size_t al)
{
	align_val_t a = align_val_t(al);
	bool array = k & 1;
	if (!new_aligned(k)) {
		switch (d) {
		case 0: array ? f_delete_array(p) : f_delete_(p); break;
		case 1: array ? f_delete_array_sized(p, n) : f_delete_sized(p, n); break;
		default: array ? f_delete_array_nothrow(p, std::nothrow)
			       : f_delete_nothrow(p, std::nothrow);
		}
	} else {
		switch (d) {
		case 0: array ? f_delete_array_aligned(p, a) : f_delete_aligned(p, a); break;
		case 1: array ? f_delete_array_sized_aligned(p, n, a)
			      : f_delete_sized_aligned(p, n, a); break;
		default: array ? f_delete_array_aligned_nothrow(p, a, std::nothrow)
			       : f_delete_aligned_nothrow(p, a, std::nothrow);
		}
	}
}

static void forms(void)
{
#define IS_OURS(name, type, op) \
	check(in_library(reinterpret_cast<void *>(f_##name)), "%s is the library's", #name);
	NEW_FORMS(IS_OURS)
	DELETE_FORMS(IS_OURS)

	static const size_t sizes[] = { 0, 1, 8, 24, 100, 1000, 4097, 40000, 300000, 3 << 20 };
	static const size_t aligns[] = { 8, 16, 32, 64, 256, 4096, 65536 };
	for (int k = 0; k < 8; k++) {
		for (size_t n : sizes)
			for (size_t ai = 0; ai < (new_aligned(k) ? 7u : 1u); ai++) {
				size_t al = new_aligned(k) ? aligns[ai] : 0;
				for (int d = 0; d < 3; d++) {
					vsize = n;
					ml_scope s;
					uint64_t used = 0;
					if (ml_enter_allocations(&s, 1 << 30) != ML_OK) {
						check(false, "enter");
						return;
					}
					void *p = new_form(k, vsize, al);
					sink = p;
					ml_status st = ml_leave(&s, &used);
					// An alignment above 16 is charged the
					// block's usable size (alloc.h).
					size_t want = al > 16 && p && malloc_usable_size(p) > n
							      ? malloc_usable_size(p) : n;
					bool ok = p && st == ML_OK && used == want;
					if (al)
						ok = ok && ((uintptr_t)p & (al - 1)) == 0;
					if (p && n)
						std::memset(p, 0x5a, n);
					if (!ok)
						check(false, "%s(%zu%s%zu): %p, charged %llu",
						      new_name[k], n, al ? ", align " : "", al,
						      p, (unsigned long long)used);
					// Freeing charges nothing.
					ml_enter_allocations(&s, 1 << 30);
					delete_form(k, d, p, n, al);
					ml_leave(&s, &used);
					if (used != 0)
						check(false, "delete form %d of %s charged %llu", d,
						      new_name[k], (unsigned long long)used);
				}
			}
		check(true, "%s: every size%s charged exactly, freed by each delete form",
		      new_name[k], new_aligned(k) ? " and alignment aligned," : "");
	}
	// Many blocks at once, freed by sized delete in another order: the size
	// classes sized delete computes are those new gave.
	enum { N = 5000 };
	static void *blocks[N];
	for (int i = 0; i < N; i++)
		blocks[i] = f_new_((size_t)(i * 37 % 3000));
	for (int i = N - 1; i >= 0; i -= 2)
		f_delete_sized(blocks[i], (size_t)(i * 37 % 3000));
	for (int i = 0; i < N; i += 2)
		f_delete_sized(blocks[i], (size_t)(i * 37 % 3000));
	check(true, "5000 blocks freed by sized delete");
}

// ---- refusals ---------------------------------------------------------------

static int handler_calls;
static void counting_handler()
{
	handler_calls++;
	std::set_new_handler(nullptr); // then the standard's loop throws
}

static void refuse(void)
{
	for (int k = 0; k < 8; k++) {
		ml_scope s;
		uint64_t used = 0;
		ml_enter_allocations(&s, 4096);
		handler_calls = 0;
		std::set_new_handler(counting_handler);
		vsize = 8192;
		bool threw = false;
		void *p = nullptr;
		try {
			p = new_form(k, vsize, 64);
			sink = p;
		} catch (const std::bad_alloc &) {
			threw = true;
		}
		std::set_new_handler(nullptr);
		ml_status st = ml_leave(&s, &used);
		if (new_nothrow(k))
			check(!threw && p == nullptr && handler_calls == 1,
			      "%s over a task's limit: nullptr (got %p), handler called once (%d)",
			      new_name[k], p, handler_calls);
		else
			check(threw && handler_calls == 1,
			      "%s over a task's limit: std::bad_alloc (%s), handler called once (%d)",
			      new_name[k], threw ? "thrown" : "not thrown", handler_calls);
		check(st == ML_ALLOCATION_LIMIT, "%s: the task's status names its limit (%s)",
		      new_name[k], ml_status_string(st));
	}
	// Without a handler: straight to std::bad_alloc / nullptr.
	ml_scope s;
	ml_enter_allocations(&s, 4096);
	bool threw = false;
	try {
		sink = f_new_(8192);
	} catch (const std::bad_alloc &) {
		threw = true;
	}
	void *p = f_new_nothrow(8192, std::nothrow);
	ml_leave(&s, nullptr);
	check(threw && p == nullptr, "no handler: bad_alloc and nullptr");
	// An impossible size throws too (no limit involved).
	threw = false;
	vsize = SIZE_MAX / 2;
	try {
		sink = f_new_(vsize);
	} catch (const std::bad_alloc &) {
		threw = true;
	}
	check(threw, "new(SIZE_MAX / 2) throws std::bad_alloc");
	check(f_new_array_aligned_nothrow(vsize, align_val_t(64), std::nothrow) == nullptr,
	      "new[](SIZE_MAX / 2, align, nothrow) is nullptr");
}

// ---- new_handler under MEMLIMITS_GLOBAL_MEMORY=64M ---------------------------

#define MiB ((size_t)1 << 20)
static void *reserve;
static int calls_before_freeing;
static void freeing_handler()
{
	handler_calls++;
	if (handler_calls >= calls_before_freeing && reserve) {
		std::free(reserve);
		reserve = nullptr;
	}
}

struct Custom {
	int code;
};
static void throwing_handler()
{
	handler_calls++;
	throw Custom{ 42 };
}

static void handler(void)
{
	for (int k = 0; k < 8; k++)
		for (int need = 1; need <= 3; need += 2) {
			reserve = std::malloc(40 * MiB);
			sink = reserve;
			if (!reserve) {
				check(false, "reserve");
				return;
			}
			handler_calls = 0;
			calls_before_freeing = need;
			std::set_new_handler(freeing_handler);
			void *p = nullptr;
			bool threw = false;
			try {
				p = new_form(k, 40 * MiB, 4096);
				sink = p;
			} catch (const std::bad_alloc &) {
				threw = true;
			}
			std::set_new_handler(nullptr);
			check(p && !threw && handler_calls == need && !reserve,
			      "%s of 40 MiB with a 40 MiB reserve under a 64 MiB limit: the "
			      "handler freed it at its call %d of %d, the retry succeeded (%p)",
			      new_name[k], handler_calls, need, p);
			if (new_aligned(k))
				::operator delete(p, align_val_t(4096));
			else
				::operator delete(p);
			std::free(reserve);
		}
	// A handler that throws: the throwing forms propagate its exception; the
	// nothrow ones give nullptr (they are noexcept).
	void *hold = std::malloc(50 * MiB);
	sink = hold;
	for (int k = 0; k < 8; k++) {
		handler_calls = 0;
		std::set_new_handler(throwing_handler);
		int code = 0;
		void *p = nullptr;
		try {
			p = new_form(k, 40 * MiB, 64);
			sink = p;
		} catch (const Custom &c) {
			code = c.code;
		} catch (...) {
			code = -1;
		}
		std::set_new_handler(nullptr);
		if (new_nothrow(k))
			check(p == nullptr && code == 0 && handler_calls == 1,
			      "%s: a handler's exception gives nullptr (%p, handler called %d)",
			      new_name[k], p, handler_calls);
		else
			check(code == 42 && handler_calls == 1,
			      "%s: a handler's exception propagates (%d, handler called %d)",
			      new_name[k], code, handler_calls);
		std::free(p);
	}
	std::free(hold);
}

int main(int argc, char **argv)
{
	if (!ml_loaded()) {
		std::printf("FAIL: not under the preload\n");
		return 1;
	}
	ml_start();
	const char *mode = argc > 1 ? argv[1] : "";
	if (!std::strcmp(mode, "forms"))
		forms();
	else if (!std::strcmp(mode, "refuse"))
		refuse();
	else if (!std::strcmp(mode, "handler"))
		handler();
	else {
		std::printf("usage: cxx_ops forms|refuse|handler\n");
		return 2;
	}
	std::printf("%d failures\n", failures);
	return failures ? 1 : 0;
}
