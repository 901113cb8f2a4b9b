/* test_alloc: the exported malloc family under the preload. Every entry
 * point's C/POSIX/glibc contract, its exact accounting in ml_stats, the
 * exported symbol set, and the process-level robustness of issue 2: threads
 * with cross-thread frees, dead threads, fork from a threaded process, dlopen,
 * C++ new/delete, allocation before constructors.
 *
 * Every allocation function is called through a volatile function pointer:
 * otherwise the compiler uses what it knows of the builtins (malloc results
 * are 16-byte aligned, calloc memory reads as zero, unused malloc/free pairs
 * vanish) and folds the very checks this file makes. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim/memlimits.h"
#include "tests/harness.h"

/* C23, not in every libc's headers (nor in glibc 2.36's library, so they
 * are looked up at run time, from the preload). */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);

static void *(*volatile f_malloc)(size_t) = malloc;
static void (*volatile f_free)(void *) = free;
static void *(*volatile f_calloc)(size_t, size_t) = calloc;
static void *(*volatile f_realloc)(void *, size_t) = realloc;
static void *(*volatile f_reallocarray)(void *, size_t, size_t) = reallocarray;
static int (*volatile f_posix_memalign)(void **, size_t, size_t) = posix_memalign;
static void *(*volatile f_aligned_alloc)(size_t, size_t) = aligned_alloc;
static void *(*volatile f_memalign)(size_t, size_t) = memalign;
static void *(*volatile f_valloc)(size_t) = valloc;
static void *(*volatile f_pvalloc)(size_t) = pvalloc;
static size_t (*volatile f_usable)(void *) = malloc_usable_size;
static void (*volatile f_free_sized)(void *, size_t);
static void (*volatile f_free_aligned_sized)(void *, size_t, size_t);

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static size_t page(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static bool aligned_to(const void *p, size_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

static struct ml_stats stats(void)
{
	struct ml_stats s;
	memset(&s, 0, sizeof s);
	assert_int_equal(ml_stats(&s), ML_OK);
	return s;
}

/* Requested bytes this thread allocated since `before`. */
static uint64_t counted_since(const struct ml_stats *before)
{
	struct ml_stats s = stats();
	return s.thread_allocated - before->thread_allocated;
}

static void fill(void *p, size_t n, unsigned seed)
{
	unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)(seed + i * 7);
}

static bool check_fill(const void *p, size_t n, unsigned seed)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i] != (unsigned char)(seed + i * 7))
			return false;
	return true;
}

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i])
			return false;
	return true;
}

/* Sizes worth trying: every small one, then around powers of two. */
static size_t sizes[2048];
static size_t nsizes;

static int setup_sizes(void **state)
{
	(void)state;
	nsizes = 0;
	for (size_t n = 0; n <= 600; n++)
		sizes[nsizes++] = n;
	for (size_t p = 512; p <= 8 * MiB; p <<= 1) {
		sizes[nsizes++] = p - 1;
		sizes[nsizes++] = p;
		sizes[nsizes++] = p + 1;
		sizes[nsizes++] = p + p / 3;
	}
	return 0;
}

/* ---- The engine is there, and the library exports exactly the family -- */

static void engine_loaded(void **state)
{
	(void)state;
	assert_true(ml_loaded());
}

/* The C23 forms come from the preload (and are used from here on). */
static int resolve_c23(void)
{
	f_free_sized = (__typeof__(&free_sized))dlsym(RTLD_DEFAULT,
						      "free_sized");
	f_free_aligned_sized = (__typeof__(&free_aligned_sized))dlsym(
		RTLD_DEFAULT, "free_aligned_sized");
	return f_free_sized && f_free_aligned_sized ? 0 : -1;
}

static void c23_forms_exported(void **state)
{
	(void)state;
	assert_int_equal(resolve_c23(), 0);
	Dl_info info;
	assert_true(dladdr((void *)f_free_sized, &info) != 0);
	assert_non_null(strstr(info.dli_fname, "libmemlimits"));
}

/* glibc's other names of the malloc family are the library's functions
 * (glibc's own __libc_malloc block freed by free crashed). */
static void libc_names_are_ours(void **state)
{
	(void)state;
	static const char *pairs[][2] = {
		{ "__libc_malloc", "malloc" }, { "__libc_calloc", "calloc" },
		{ "__libc_realloc", "realloc" }, { "__libc_memalign", "memalign" },
		{ "__libc_valloc", "valloc" }, { "__libc_pvalloc", "pvalloc" },
		{ "__libc_free", "free" },
	};
	for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
		void *a = dlsym(RTLD_DEFAULT, pairs[i][0]);
		void *b = dlsym(RTLD_DEFAULT, pairs[i][1]);
		assert_non_null(a);
		assert_ptr_equal(a, b);
	}
	void *(*lm)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_malloc");
	void *p = lm(100);
	assert_non_null(p);
	assert_true(malloc_usable_size(p) >= 100);
	f_free(p);
}

/* A function looked up by a handle of libc (python's ctypes.CDLL
 * ("libc.so.6"), ruby's Fiddle, java's CLinker.systemLookup()) is the
 * library's when the library defines the name: glibc's own malloc and mmap
 * held 400 MiB under a 100M limit that way (a held-out check). Names the
 * library does not define stay libc's; RTLD_NEXT from the program still
 * means the definitions after it (the library's, which comes next). */
static void libc_by_handle_is_ours(void **state)
{
	(void)state;
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	void *libm = dlopen("libm.so.6", RTLD_NOW);
	assert_non_null(libc);
	assert_non_null(libm);
	static const char *const ours[] = { "malloc", "free", "calloc", "realloc",
					    "__libc_malloc", "mmap", "munmap",
					    "posix_memalign", "shmat", "sbrk" };
	for (size_t i = 0; i < sizeof ours / sizeof *ours; i++) {
		void *want = dlsym(RTLD_DEFAULT, ours[i]);
		assert_non_null(want);
		if (dlsym(libc, ours[i]) != want || dlsym(libm, ours[i]) != want ||
		    dlsym(RTLD_NEXT, ours[i]) != want)
			fail_msg("%s by handle is not the library's", ours[i]);
	}
	Dl_info di;
	void *s = dlsym(libc, "strlen");
	assert_non_null(s);
	assert_true(dladdr(s, &di) && strstr(di.dli_fname, "libc.so"));
	/* Functions of the library's that call the next definition stay
	 * libc's: an interposer preloaded after the library that looks "the
	 * real" close up by libc's handle (samba's socket_wrapper) got the
	 * library's, which called the interposer's, for ever. */
	static const char *const next[] = { "close", "execve", "popen", "posix_spawn",
					    "dlopen", "pthread_create", "abort" };
	for (size_t i = 0; i < sizeof next / sizeof *next; i++) {
		void *f = dlsym(libc, next[i]);
		if (!f || !dladdr(f, &di) || !strstr(di.dli_fname, "libc.so"))
			fail_msg("%s by libc's handle is not libc's", next[i]);
	}
	/* Another namespace's libc keeps its own malloc (its blocks are that
	 * malloc's: free of one of them by the library's crashed). */
	void *ns = dlmopen(LM_ID_NEWLM, "libc.so.6", RTLD_NOW);
	if (ns) {
		assert_ptr_not_equal(dlsym(ns, "malloc"), dlsym(RTLD_DEFAULT, "malloc"));
		char *(*dup)(const char *) = (char *(*)(const char *))dlsym(ns, "strdup");
		void (*fr)(void *) = (void (*)(void *))dlsym(ns, "free");
		assert_non_null(dup);
		assert_non_null(fr);
		fr(dup("a block of the other namespace's malloc"));
	} else
		print_message("dlmopen of libc.so.6 failed here: %s\n", dlerror());
	assert_null(dlsym(libc, "no_such_function_here"));
	void *(*m)(size_t) = (void *(*)(size_t))dlsym(libc, "malloc");
	void *p = m(100);
	assert_true(malloc_usable_size(p) >= 100);
	f_free(p);
	dlclose(libm);
	dlclose(libc);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Both builds export exactly the malloc family, the C++ operators
 * (cxx.c), jemalloc's API (jeapi.c), glibc's information calls
 * (mallinfo.c), dlopen (dlopen.c), dlsym (dlsym.c), the mmap family (mmap.c), memfd files'
 * commits (memfd.c), System V segments (sysvshm.c), the program break
 * (brk.c) and syscall (syscall.c), the exec and spawn family
 * (exec.c), _exit and
 * _Exit (exit.c), _Fork and __clone (fork.c), glibc's private names of the
 * mmap family, the longjmp family (longjmp.c), glibc's __libc_ names
 * of the malloc family, the thread wrappers and ml_engine. */
static void exports_exact(const char *cmd)
{
	static const char *want[] = {
		"_Exit", "_Fork", "_ZdaPv", "_ZdaPvRKSt9nothrow_t", "_ZdaPvSt11align_val_t",
		"_ZdaPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvm", "_ZdaPvmSt11align_val_t",
		"_ZdlPv", "_ZdlPvRKSt9nothrow_t", "_ZdlPvSt11align_val_t",
		"_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdlPvm", "_ZdlPvmSt11align_val_t",
		"_Znam", "_ZnamRKSt9nothrow_t", "_ZnamSt11align_val_t",
		"_ZnamSt11align_val_tRKSt9nothrow_t", "_Znwm", "_ZnwmRKSt9nothrow_t",
		"_ZnwmSt11align_val_t", "_ZnwmSt11align_val_tRKSt9nothrow_t",
		"__clone", "__cxa_at_quick_exit", "__fork", "__libc_calloc", "__libc_fork", "__libc_free", "__libc_malloc",
		"__libc_memalign", "__libc_pvalloc", "__libc_realloc", "__libc_valloc", "__longjmp_chk",
		"__madvise", "__mmap", "__mprotect", "__munmap", "__sbrk",
		"_exit", "_longjmp", "abort", "aligned_alloc", "brk", "calloc", "clone", "close", "dallocx",
		"dlopen", "dlsym", "execl", "execle", "execlp", "execv", "execve", "execveat",
		"execvp", "execvpe", "fallocate", "fallocate64", "fexecve", "fork", "forkpty", "free",
		"free_aligned_sized",
		"free_sized", "ftruncate", "ftruncate64", "longjmp", "madvise", "mallctl",
		"mallctlbymib", "mallctlnametomib", "mallinfo", "mallinfo2", "malloc",
		"malloc_info", "malloc_stats", "malloc_stats_print", "malloc_trim",
		"malloc_usable_size", "mallocx", "mallopt", "memalign", "memfd_create",
		"ml_engine", "mmap", "mmap64", "mprotect", "mremap", "munmap", "nallocx",
		"pkey_mprotect", "popen", "posix_fallocate", "posix_fallocate64",
		"posix_memalign", "posix_spawn", "posix_spawnp",
		"pthread_create", "pthread_exit",
		"pvalloc", "quick_exit", "rallocx", "realloc", "reallocarray", "sallocx", "sbrk", "sdallocx",
		"shmat", "shmdt", "siglongjmp", "syscall", "system", "truncate", "truncate64", "valloc", "xallocx",
	};
	const size_t nwant = sizeof want / sizeof *want;
	struct mlt_run r;
	assert_int_equal(mlt_sh(cmd, NULL, 0, NULL, &r), 0);
	if (r.status != 0)
		fail_msg("nm failed (%d): %s", r.status, r.err);
	char *got[256];
	size_t ngot = 0;
	for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n")) {
		/* "ADDRESS TYPE NAME[@VERSION]" */
		char *name = strrchr(line, ' ');
		if (!name)
			continue;
		name++;
		name[strcspn(name, "@")] = '\0';
		assert_true(ngot < 256);
		got[ngot++] = name;
	}
	qsort(got, ngot, sizeof *got, cmp_str);
	for (size_t i = 0; i < ngot; i++)
		print_message("exported: %s\n", got[i]);
	size_t i = 0, j = 0;
	bool ok = true;
	while (i < nwant || j < ngot) {
		int c = i == nwant ? 1 : j == ngot ? -1 : strcmp(want[i], got[j]);
		if (c < 0) {
			print_error("missing export: %s\n", want[i++]);
			ok = false;
		} else if (c > 0) {
			print_error("unexpected export: %s\n", got[j++]);
			ok = false;
		} else {
			i++;
			j++;
		}
	}
	mlt_run_free(&r);
	assert_true(ok);
}

static void exported_symbols_exact(void **state)
{
	(void)state;
	exports_exact("nm -D --defined-only \"$MLT_LIB\"");
	exports_exact("nm -D --defined-only \"$(dirname \"$MLT_LIB\")/libmemlimits-prof.so\"");
}

/* ---- malloc, free, malloc_usable_size ---------------------------------- */

static void malloc_zero_unique(void **state)
{
	(void)state;
	enum { N = 200 };
	void *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = f_malloc(0);
		assert_non_null(p[i]);
	}
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++)
			assert_ptr_not_equal(p[i], p[j]);
	for (int i = 0; i < N; i++)
		f_free(p[i]);
	f_free(NULL);
}

static void malloc_usable(void **state)
{
	(void)state;
	for (size_t k = 0; k < nsizes; k++) {
		size_t n = sizes[k];
		unsigned char *p = f_malloc(n);
		if (!p)
			fail_msg("malloc(%zu) = NULL", n);
		size_t u = f_usable(p);
		if (u < n)
			fail_msg("malloc_usable_size(malloc(%zu)) = %zu", n, u);
		fill(p, u, (unsigned)k); /* all of the usable size is ours */
		assert_true(check_fill(p, u, (unsigned)k));
		f_free(p);
	}
	assert_int_equal(f_usable(NULL), 0);
}

/* Every returned pointer is 16-byte aligned, as glibc's on x86-64 and
 * aarch64 (MALLOC_ALIGNMENT), whatever the size and entry point. Many blocks
 * are live at once: a lone block may sit at an aligned slot by chance. */
enum kind { K_MALLOC, K_CALLOC, K_REALLOC_NULL, K_REALLOC_SHRINK,
	    K_REALLOC_GROW, K_MEMALIGN, K_ALIGNED_ALLOC, K_POSIX_MEMALIGN,
	    K_NKINDS };
static const char *const kind_name[] = {
	"malloc(n)", "calloc(1, n)", "realloc(NULL, n)", "realloc(p1000, n)",
	"realloc(p1, n)", "memalign(8, n)", "aligned_alloc(8, n)",
	"posix_memalign(8, n)",
};

static void *alloc_kind(enum kind k, size_t n)
{
	void *p = NULL;
	switch (k) {
	case K_MALLOC: return f_malloc(n);
	case K_CALLOC: return f_calloc(1, n);
	case K_REALLOC_NULL: return f_realloc(NULL, n);
	case K_REALLOC_SHRINK:
		p = f_malloc(1000);
		return p ? f_realloc(p, n ? n : 1) : NULL;
	case K_REALLOC_GROW:
		p = f_malloc(1);
		return p ? f_realloc(p, n ? n : 1) : NULL;
	case K_MEMALIGN: return f_memalign(8, n);
	case K_ALIGNED_ALLOC: return f_aligned_alloc(8, n);
	case K_POSIX_MEMALIGN:
		return f_posix_memalign(&p, 8, n) == 0 ? p : NULL;
	default: return NULL;
	}
}

static void alignment_16_everywhere(void **state)
{
	(void)state;
	enum { LIVE = 32 };
	static void *p[LIVE];
	int bad = 0;
	for (int k = 0; k < K_NKINDS; k++) {
		size_t bad_lo = SIZE_MAX, bad_hi = 0, nbad = 0;
		for (size_t s = 0; s < nsizes; s++) {
			size_t n = sizes[s];
			if (n > 64 * KiB && k != K_MALLOC)
				continue;
			for (int i = 0; i < LIVE; i++) {
				p[i] = alloc_kind((enum kind)k, n);
				if (!p[i])
					fail_msg("%s with n=%zu = NULL",
						 kind_name[k], n);
			}
			for (int i = 0; i < LIVE; i++)
				if (!aligned_to(p[i], 16)) {
					nbad++;
					bad_lo = n < bad_lo ? n : bad_lo;
					bad_hi = n > bad_hi ? n : bad_hi;
					break;
				}
			for (int i = 0; i < LIVE; i++)
				f_free(p[i]);
		}
		if (nbad) {
			print_error("%s: not 16-byte aligned for %zu sizes "
				    "in [%zu, %zu]\n", kind_name[k], nbad,
				    bad_lo, bad_hi);
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

/* Many blocks alive at once do not overlap. */
static void malloc_blocks_disjoint(void **state)
{
	(void)state;
	enum { N = 2000 };
	static unsigned char *p[N];
	static size_t n[N];
	for (int i = 0; i < N; i++) {
		n[i] = (size_t)(i * 37) % 3000 + 1;
		p[i] = f_malloc(n[i]);
		assert_non_null(p[i]);
		fill(p[i], n[i], (unsigned)i);
	}
	for (int i = 0; i < N; i++)
		assert_true(check_fill(p[i], n[i], (unsigned)i));
	for (int i = 0; i < N; i++)
		f_free(p[i]);
}

/* ---- calloc ----------------------------------------------------------- */

static void calloc_zeroes(void **state)
{
	(void)state;
	static const size_t n[] = { 1, 8, 16, 24, 100, 1000, 4096, 5000,
				    64 * KiB, 100 * KiB, MiB, 3 * MiB };
	for (size_t k = 0; k < sizeof n / sizeof *n; k++) {
		/* Dirty memory of that size class, freed, then calloc: it
		 * likely reuses the same blocks. */
		void *d[8];
		for (int i = 0; i < 8; i++) {
			d[i] = f_malloc(n[k]);
			assert_non_null(d[i]);
			memset(d[i], 0xAB, f_usable(d[i]));
		}
		for (int i = 7; i >= 0; i--)
			f_free(d[i]);
		for (int i = 0; i < 8; i++) {
			d[i] = f_calloc(1, n[k]);
			assert_non_null(d[i]);
			if (!all_zero(d[i], n[k]))
				fail_msg("calloc(1, %zu) not zeroed", n[k]);
		}
		for (int i = 0; i < 8; i++)
			f_free(d[i]);
		unsigned char *p = f_calloc(n[k], 3);
		assert_non_null(p);
		assert_true(all_zero(p, n[k] * 3));
		assert_true(f_usable(p) >= n[k] * 3);
		f_free(p);
	}
	void *z = f_calloc(0, 0), *z2 = f_calloc(0, 100), *z3 = f_calloc(100, 0);
	assert_non_null(z);
	assert_non_null(z2);
	assert_non_null(z3);
	assert_ptr_not_equal(z, z2);
	assert_ptr_not_equal(z2, z3);
	f_free(z);
	f_free(z2);
	f_free(z3);
}

static void calloc_overflow(void **state)
{
	(void)state;
	static const size_t pairs[][2] = {
		{ SIZE_MAX, 2 }, { 2, SIZE_MAX }, { SIZE_MAX / 2 + 1, 2 },
		{ (size_t)1 << 32, (size_t)1 << 32 }, { SIZE_MAX, SIZE_MAX },
		{ (SIZE_MAX / 3) + 1, 3 },
	};
	struct ml_stats s = stats();
	for (size_t k = 0; k < sizeof pairs / sizeof *pairs; k++) {
		errno = 0;
		void *p = f_calloc(pairs[k][0], pairs[k][1]);
		if (p)
			fail_msg("calloc(%zu, %zu) = %p", pairs[k][0],
				 pairs[k][1], p);
		assert_int_equal(errno, ENOMEM);
	}
	assert_int_equal(counted_since(&s), 0);
}

/* ---- realloc, reallocarray ---------------------------------------------- */

static void realloc_null_is_malloc(void **state)
{
	(void)state;
	struct ml_stats s = stats();
	void *p = f_realloc(NULL, 777);
	assert_non_null(p);
	assert_int_equal(counted_since(&s), 777);
	assert_true(aligned_to(p, 16));
	assert_true(f_usable(p) >= 777);
	fill(p, 777, 3);
	f_free(p);
	s = stats();
	p = f_reallocarray(NULL, 10, 33);
	assert_non_null(p);
	assert_int_equal(counted_since(&s), 330);
	assert_true(f_usable(p) >= 330);
	f_free(p);
	p = f_realloc(NULL, 0);
	assert_non_null(p); /* glibc: realloc(NULL, 0) is malloc(0) */
	f_free(p);
}

static void realloc_zero_frees(void **state)
{
	(void)state;
	void *p = f_malloc(2 * MiB);
	assert_non_null(p);
	size_t u = f_usable(p);
	struct ml_stats a = stats();
	void *q = f_realloc(p, 0);
	struct ml_stats b = stats();
	assert_null(q);
	assert_int_equal(b.thread_allocated - a.thread_allocated, 0);
	/* The block is gone from the live heap. */
	assert_int_equal(a.live_bytes - b.live_bytes, (int64_t)u);
}

static void realloc_preserves(void **state)
{
	(void)state;
	size_t n = 1;
	unsigned char *p = f_malloc(n);
	assert_non_null(p);
	fill(p, n, 9);
	/* Grow step by step up to 4 MiB, then shrink back. */
	while (n < 4 * MiB) {
		size_t m = n * 3 / 2 + 1;
		unsigned char *q = f_realloc(p, m);
		assert_non_null(q);
		assert_true(aligned_to(q, 16));
		if (!check_fill(q, n, 9))
			fail_msg("realloc %zu -> %zu lost contents", n, m);
		assert_true(f_usable(q) >= m);
		fill(q, m, 9);
		p = q;
		n = m;
	}
	while (n > 1) {
		size_t m = n / 3;
		unsigned char *q = f_realloc(p, m ? m : 1);
		m = m ? m : 1;
		assert_non_null(q);
		assert_true(aligned_to(q, 16));
		if (!check_fill(q, m, 9))
			fail_msg("realloc %zu -> %zu lost contents", n, m);
		assert_true(f_usable(q) >= m);
		p = q;
		n = m;
	}
	f_free(p);
}

static void reallocarray_overflow_keeps_old(void **state)
{
	(void)state;
	unsigned char *p = f_malloc(1000);
	assert_non_null(p);
	fill(p, 1000, 5);
	struct ml_stats s = stats();
	errno = 0;
	void *q = f_reallocarray(p, SIZE_MAX / 2, 3);
	assert_null(q);
	assert_int_equal(errno, ENOMEM);
	errno = 0;
	q = f_reallocarray(p, (size_t)1 << 33, (size_t)1 << 33);
	assert_null(q);
	assert_int_equal(errno, ENOMEM);
	assert_int_equal(counted_since(&s), 0);
	assert_true(check_fill(p, 1000, 5));
	/* Still a valid block: it can grow and be freed. */
	q = f_reallocarray(p, 100, 30);
	assert_non_null(q);
	assert_true(check_fill(q, 1000, 5));
	f_free(q);
}

/* ---- Huge sizes --------------------------------------------------------- */

static const size_t huge[] = {
	SIZE_MAX, SIZE_MAX - 1, SIZE_MAX / 2, (size_t)PTRDIFF_MAX + 1,
	SIZE_MAX - 4096, (size_t)1 << 62, (size_t)1 << 48,
};
#define NHUGE (sizeof huge / sizeof *huge)

static void huge_sizes_fail_cleanly(void **state)
{
	(void)state;
	unsigned char *old = f_malloc(100);
	assert_non_null(old);
	fill(old, 100, 1);
	struct ml_stats s = stats();
	int bad = 0;
	for (size_t k = 0; k < NHUGE; k++) {
		size_t n = huge[k];
		void *p;
		int rc;
		/* Every failing call is listed before the test fails. */
#define EXPECT_ENOMEM(call)                                                  \
	do {                                                                 \
		errno = 0;                                                   \
		p = (call);                                                  \
		if (p)                                                       \
			fail_msg("%s with n=%zu gave %p", #call, n, p);      \
		if (errno != ENOMEM) {                                       \
			print_error("%s with n=%zu: NULL but errno %d, not "  \
				    "ENOMEM\n", #call, n, errno);             \
			bad++;                                               \
		}                                                            \
	} while (0)
		EXPECT_ENOMEM(f_malloc(n));
		EXPECT_ENOMEM(f_calloc(1, n));
		EXPECT_ENOMEM(f_calloc(n, 1));
		EXPECT_ENOMEM(f_realloc(NULL, n));
		EXPECT_ENOMEM(f_realloc(old, n));
		EXPECT_ENOMEM(f_reallocarray(old, n, 1));
		EXPECT_ENOMEM(f_aligned_alloc(64, n));
		EXPECT_ENOMEM(f_aligned_alloc(4096, n));
		EXPECT_ENOMEM(f_memalign(64, n));
		EXPECT_ENOMEM(f_valloc(n));
		EXPECT_ENOMEM(f_pvalloc(n));
#undef EXPECT_ENOMEM
		void *out = (void *)&s;
		rc = f_posix_memalign(&out, 64, n);
		if (rc != ENOMEM) {
			print_error("posix_memalign(64, %zu) = %d\n", n, rc);
			bad++;
		}
		assert_ptr_equal(out, (void *)&s);
	}
	assert_int_equal(bad, 0);
	/* Nothing was counted, the old block is intact. */
	assert_int_equal(counted_since(&s), 0);
	assert_true(check_fill(old, 100, 1));
	f_free(old);
	/* And ordinary allocation still works. */
	void *p = f_malloc(1000);
	assert_non_null(p);
	f_free(p);
}

/* ---- Aligned forms ------------------------------------------------------ */

/* What an aligned allocation of n bytes at alignment a is charged: with
 * an alignment above 16 its block's usable size (which the alignment can
 * make much larger than n), else n. */
static size_t acost(size_t n, size_t a, void *p)
{
	return a > 16 && f_usable(p) > n ? f_usable(p) : n;
}

static void posix_memalign_contract(void **state)
{
	(void)state;
	static const size_t bad[] = { 0, 1, 2, 3, 4, 5, 12, 24, 48, 100,
				      4097, 3 << 12, SIZE_MAX,
				      SIZE_MAX / 2 + 2 };
	struct ml_stats s = stats();
	for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
		void *out = (void *)&s;
		int rc = f_posix_memalign(&out, bad[k], 100);
		if (rc != EINVAL)
			fail_msg("posix_memalign(align %zu) = %d, not EINVAL",
				 bad[k], rc);
		assert_ptr_equal(out, (void *)&s); /* *out untouched */
	}
	assert_int_equal(counted_since(&s), 0);
	for (size_t a = sizeof(void *); a <= 2 * MiB; a <<= 1) {
		static const size_t n[] = { 0, 1, 16, 100, 4096, 70000 };
		for (size_t k = 0; k < sizeof n / sizeof *n; k++) {
			void *p = NULL;
			errno = 1234;
			s = stats();
			int rc = f_posix_memalign(&p, a, n[k]);
			if (rc != 0 || !p)
				fail_msg("posix_memalign(%zu, %zu) = %d", a,
					 n[k], rc);
			assert_int_equal(counted_since(&s), acost(n[k], a, p));
			assert_int_equal(errno, 1234); /* errno untouched */
			assert_true(aligned_to(p, a));
			assert_true(aligned_to(p, 16));
			assert_true(f_usable(p) >= n[k]);
			fill(p, n[k], 2);
			f_free(p);
		}
	}
}

static size_t next_pow2(size_t a)
{
	size_t r = 1;
	while (r < a)
		r <<= 1;
	return r;
}

static void aligned_alloc_contract(void **state)
{
	(void)state;
	static const size_t bad[] = { 0, 3, 5, 6, 12, 24, 48, 100, 4097,
				      3 << 12, SIZE_MAX };
	/* glibc 2.38 and later refuse an alignment that is not a power of
	 * two; before, aligned_alloc is memalign (rounded up to a power of
	 * two, 0 as malloc): as the running glibc does (it was always EINVAL,
	 * where Debian 12's glibc 2.36 succeeds). */
	const char *v = gnu_get_libc_version();
	int major = atoi(v), minor = strchr(v, '.') ? atoi(strchr(v, '.') + 1) : 0;
	bool before_2_38 = major == 2 && minor < 38;
	struct ml_stats s = stats();
	for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
		errno = 0;
		void *p = f_aligned_alloc(bad[k], 64);
		if (before_2_38 && bad[k] != SIZE_MAX) {
			if (!p || !aligned_to(p, bad[k] < 16 ? 16 : next_pow2(bad[k])))
				fail_msg("aligned_alloc(%zu, 64) = %p (glibc %s)", bad[k], p, v);
			f_free(p);
			continue;
		}
		if (p)
			fail_msg("aligned_alloc(%zu, 64) = %p", bad[k], p);
		if (errno != EINVAL)
			fail_msg("aligned_alloc(%zu, 64): errno %d, not EINVAL",
				 bad[k], errno);
	}
	if (!before_2_38)
		assert_int_equal(counted_since(&s), 0);
	for (size_t a = 1; a <= 2 * MiB; a <<= 1) {
		static const size_t n[] = { 0, 1, 7, 64, 100, 4096, 70000 };
		for (size_t k = 0; k < sizeof n / sizeof *n; k++) {
			s = stats();
			void *p = f_aligned_alloc(a, n[k]);
			if (!p)
				fail_msg("aligned_alloc(%zu, %zu) = NULL", a, n[k]);
			assert_int_equal(counted_since(&s), acost(n[k], a, p));
			if (!aligned_to(p, a < 16 ? 16 : a))
				fail_msg("aligned_alloc(%zu, %zu) = %p", a, n[k], p);
			assert_true(f_usable(p) >= n[k]);
			fill(p, n[k], 4);
			f_free(p);
		}
	}
}


static void memalign_contract(void **state)
{
	(void)state;
	/* Non-powers of two are rounded up, as glibc does. */
	for (size_t a = 0; a <= 300; a++) {
		size_t want = next_pow2(a);
		if (want < 16)
			want = 16;
		struct ml_stats s = stats();
		void *p = f_memalign(a, 40);
		if (!p)
			fail_msg("memalign(%zu, 40) = NULL", a);
		assert_int_equal(counted_since(&s), acost(40, want, p));
		if (!aligned_to(p, want))
			fail_msg("memalign(%zu, 40) = %p, not %zu-aligned", a, p,
				 want);
		assert_true(f_usable(p) >= 40);
		f_free(p);
	}
	static const size_t odd[] = { 3000, 5000, 100000, 3 * MiB / 2 };
	for (size_t k = 0; k < sizeof odd / sizeof *odd; k++) {
		void *p = f_memalign(odd[k], 10);
		assert_non_null(p);
		assert_true(aligned_to(p, next_pow2(odd[k])));
		f_free(p);
	}
	/* Beyond the largest power of two: glibc gives EINVAL. */
	errno = 0;
	assert_null(f_memalign(SIZE_MAX / 2 + 2, 10));
	assert_int_equal(errno, EINVAL);
}

static void valloc_pvalloc_contract(void **state)
{
	(void)state;
	size_t ps = page();
	static const size_t n[] = { 0, 1, 100, 4095, 4096, 4097, 10000,
				    MiB + 1 };
	for (size_t k = 0; k < sizeof n / sizeof *n; k++) {
		struct ml_stats s = stats();
		void *p = f_valloc(n[k]);
		assert_non_null(p);
		assert_int_equal(counted_since(&s), acost(n[k], ps, p));
		assert_true(aligned_to(p, ps));
		assert_true(f_usable(p) >= n[k]);
		fill(p, n[k], 6);
		f_free(p);

		size_t rounded = (n[k] + ps - 1) / ps * ps;
		if (rounded == 0)
			rounded = ps; /* pvalloc(0) gives a page */
		s = stats();
		p = f_pvalloc(n[k]);
		assert_non_null(p);
		/* pvalloc's request is the rounded-up size: that much is
		 * the caller's to use. */
		assert_int_equal(counted_since(&s), acost(rounded, ps, p));
		assert_true(aligned_to(p, ps));
		if (f_usable(p) < rounded)
			fail_msg("pvalloc(%zu): usable %zu < %zu", n[k],
				 f_usable(p), rounded);
		fill(p, rounded, 7);
		f_free(p);
	}
}

static void large_alignments(void **state)
{
	(void)state;
	static const size_t al[] = { 4096, 65536, 2 * MiB };
	assert_int_equal(resolve_c23(), 0);
	static const size_t n[] = { 1, 100, 5000, 3 * MiB };
	for (size_t i = 0; i < 3; i++)
		for (size_t k = 0; k < 4; k++) {
			void *p = NULL;
			assert_int_equal(f_posix_memalign(&p, al[i], n[k]), 0);
			assert_true(aligned_to(p, al[i]));
			assert_true(f_usable(p) >= n[k]);
			fill(p, n[k], 8);
			void *q = f_aligned_alloc(al[i], n[k]);
			assert_non_null(q);
			assert_true(aligned_to(q, al[i]));
			fill(q, n[k], 9);
			void *r = f_memalign(al[i], n[k]);
			assert_non_null(r);
			assert_true(aligned_to(r, al[i]));
			assert_true(f_usable(r) >= n[k]);
			fill(r, n[k], 10);
			assert_true(check_fill(p, n[k], 8));
			assert_true(check_fill(q, n[k], 9));
			f_free(p);
			f_free_aligned_sized(q, al[i], n[k]);
			f_free(r);
		}
}

/* ---- C23 free_sized, free_aligned_sized --------------------------------- */

static void free_sized_forms(void **state)
{
	(void)state;
	assert_int_equal(resolve_c23(), 0);
	f_free_sized(NULL, 0);
	f_free_aligned_sized(NULL, 64, 0);
	static const size_t n[] = { 1, 100, 4096, 100000, 3 * MiB };
	for (size_t k = 0; k < sizeof n / sizeof *n; k++) {
		void *p = f_malloc(n[k]);
		assert_non_null(p);
		size_t u = f_usable(p);
		struct ml_stats a = stats();
		f_free_sized(p, n[k]);
		struct ml_stats b = stats();
		assert_int_equal(a.live_bytes - b.live_bytes, (int64_t)u);
		assert_int_equal(b.thread_allocated, a.thread_allocated);

		p = f_aligned_alloc(256, n[k]);
		assert_non_null(p);
		u = f_usable(p);
		a = stats();
		f_free_aligned_sized(p, 256, n[k]);
		b = stats();
		assert_int_equal(a.live_bytes - b.live_bytes, (int64_t)u);
		assert_int_equal(b.thread_allocated, a.thread_allocated);
	}
}

/* ---- Exact accounting --------------------------------------------------- */

static void accounting_exact(void **state)
{
	(void)state;
	for (size_t k = 0; k < nsizes; k++) {
		size_t n = sizes[k];
		struct ml_stats a = stats();
		void *p = f_malloc(n);
		struct ml_stats b = stats();
		assert_non_null(p);
		if (b.thread_allocated - a.thread_allocated != n)
			fail_msg("malloc(%zu) counted %llu", n,
				 (unsigned long long)(b.thread_allocated -
						      a.thread_allocated));
		assert_true(b.process_allocated - a.process_allocated >= n);
		/* The live heap grew by exactly the usable size. */
		assert_int_equal(b.live_bytes - a.live_bytes,
				 (int64_t)f_usable(p));
		a = stats();
		f_free(p);
		b = stats();
		assert_int_equal(b.thread_allocated, a.thread_allocated);
		assert_true(b.live_bytes < a.live_bytes);
	}
	/* calloc counts a * b. */
	static const size_t cal[][2] = { { 1, 1 }, { 3, 7 }, { 100, 100 },
					 { 4096, 300 }, { 0, 5 }, { 7, 0 } };
	for (size_t k = 0; k < sizeof cal / sizeof *cal; k++) {
		struct ml_stats s = stats();
		void *p = f_calloc(cal[k][0], cal[k][1]);
		assert_non_null(p);
		assert_int_equal(counted_since(&s), cal[k][0] * cal[k][1]);
		f_free(p);
	}
}

/* A resize's charge: what the usable size grew by, at most n. */
static size_t grew(size_t had, void *q, size_t n)
{
	size_t g = f_usable(q) > had ? f_usable(q) - had : 0;
	return g < n ? g : n;
}

static void accounting_realloc(void **state)
{
	(void)state;
	static const size_t from[] = { 1, 100, 1000, 5000, 70000, MiB + 3 };
	static const size_t to[] = { 100, 150, 4000, 20000, 300000, 5 * MiB };
	for (size_t k = 0; k < sizeof from / sizeof *from; k++) {
		void *p = f_malloc(from[k]);
		assert_non_null(p);
		size_t u = f_usable(p);
		/* Within the usable size: nothing to count. */
		struct ml_stats s = stats();
		p = f_realloc(p, u);
		assert_non_null(p);
		assert_int_equal(counted_since(&s), 0);
		u = f_usable(p);
		assert_true(to[k] > u);
		/* Growth beyond the usable size counts what the usable size
		 * grew by (the new block's size class included: growing by
		 * small steps must not get each class's rounding free), at
		 * most the size asked for (a malloc's charge). */
		s = stats();
		void *q = f_realloc(p, to[k]);
		assert_non_null(q);
		if (counted_since(&s) != grew(u, q, to[k]))
			fail_msg("realloc %zu (usable %zu) -> %zu (usable %zu) "
				 "counted %llu, want %zu", from[k], u, to[k],
				 f_usable(q), (unsigned long long)counted_since(&s),
				 grew(u, q, to[k]));
		/* Shrinking counts nothing. */
		s = stats();
		p = f_realloc(q, from[k]);
		assert_non_null(p);
		assert_int_equal(counted_since(&s), 0);
		/* reallocarray the same way. */
		u = f_usable(p);
		s = stats();
		q = f_reallocarray(p, to[k], 2);
		assert_non_null(q);
		assert_int_equal(counted_since(&s), grew(u, q, 2 * to[k]));
		s = stats();
		f_free(q);
		assert_int_equal(counted_since(&s), 0);
	}
}

static void accounting_aligned(void **state)
{
	(void)state;
	static const size_t n[] = { 0, 1, 100, 4096, 12345, 2 * MiB + 1 };
	for (size_t k = 0; k < sizeof n / sizeof *n; k++) {
		struct ml_stats s = stats();
		void *p = NULL;
		assert_int_equal(f_posix_memalign(&p, 128, n[k]), 0);
		assert_int_equal(counted_since(&s), acost(n[k], 128, p));
		f_free(p);
		s = stats();
		p = f_aligned_alloc(4096, n[k]);
		assert_non_null(p);
		assert_int_equal(counted_since(&s), acost(n[k], 4096, p));
		f_free(p);
		s = stats();
		p = f_memalign(100, n[k]);
		assert_non_null(p);
		assert_int_equal(counted_since(&s), acost(n[k], 128, p));
		f_free(p);
		s = stats();
		p = f_valloc(n[k]);
		assert_non_null(p);
		assert_int_equal(counted_since(&s), acost(n[k], page(), p));
		f_free(p);
	}
	/* Failed calls count nothing. */
	struct ml_stats s = stats();
	void *p;
	assert_int_equal(f_posix_memalign(&p, 24, 100), EINVAL);
	assert_null(f_aligned_alloc(SIZE_MAX, 100)); /* EINVAL under every glibc */
	assert_null(f_malloc(SIZE_MAX));
	assert_null(f_malloc((size_t)PTRDIFF_MAX));
	assert_null(f_calloc(SIZE_MAX, 3));
	assert_int_equal(counted_since(&s), 0);
}

/* ---- Threads: cross-thread frees, dead threads --------------------------- */

#define QCAP 1024
struct queue {
	pthread_mutex_t mu;
	pthread_cond_t not_empty, not_full;
	void *item[QCAP];
	size_t head, len;
	int producers_left;
};

static void q_push(struct queue *q, void *p)
{
	pthread_mutex_lock(&q->mu);
	while (q->len == QCAP)
		pthread_cond_wait(&q->not_full, &q->mu);
	q->item[(q->head + q->len++) % QCAP] = p;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->mu);
}

/* NULL once every producer finished and the queue is empty. */
static void *q_pop(struct queue *q)
{
	pthread_mutex_lock(&q->mu);
	while (q->len == 0 && q->producers_left > 0)
		pthread_cond_wait(&q->not_empty, &q->mu);
	void *p = NULL;
	if (q->len) {
		p = q->item[q->head];
		q->head = (q->head + 1) % QCAP;
		q->len--;
		pthread_cond_signal(&q->not_full);
	}
	pthread_mutex_unlock(&q->mu);
	return p;
}

struct producer {
	struct queue *q;
	unsigned seed;
	int n;
	uint64_t bytes; /* requested */
};

static unsigned xorshift(unsigned *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void *producer(void *arg)
{
	struct producer *pr = arg;
	for (int i = 0; i < pr->n; i++) {
		unsigned r = xorshift(&pr->seed);
		size_t n = r % 64 == 0 ? 16 * KiB + r % (64 * KiB) : r % 2048;
		unsigned char *p = f_malloc(n);
		if (!p)
			abort();
		if (n)
			p[0] = p[n - 1] = 0x5A;
		pr->bytes += n;
		q_push(pr->q, p);
	}
	pthread_mutex_lock(&pr->q->mu);
	pr->q->producers_left--;
	pthread_cond_broadcast(&pr->q->not_empty);
	pthread_mutex_unlock(&pr->q->mu);
	return NULL;
}

/* Never allocates: only frees what the producers made. */
static void *consumer(void *arg)
{
	struct queue *q = arg;
	void *p;
	while ((p = q_pop(q)))
		f_free(p);
	return NULL;
}

static void threads_cross_free(void **state)
{
	(void)state;
	enum { ROUNDS = 4, NPROD = 3, NCONS = 2, ITEMS = 15000 };
	static struct queue q;
	struct ml_stats s0 = stats();
	uint64_t produced = 0;
	for (int round = 0; round < ROUNDS; round++) {
		memset(&q, 0, sizeof q);
		pthread_mutex_init(&q.mu, NULL);
		pthread_cond_init(&q.not_empty, NULL);
		pthread_cond_init(&q.not_full, NULL);
		q.producers_left = NPROD;
		pthread_t pt[NPROD], ct[NCONS];
		struct producer pr[NPROD];
		for (int i = 0; i < NCONS; i++)
			assert_int_equal(pthread_create(&ct[i], NULL, consumer,
							&q), 0);
		for (int i = 0; i < NPROD; i++) {
			pr[i] = (struct producer){ &q,
						   (unsigned)(round * 100 + i + 1),
						   ITEMS, 0 };
			assert_int_equal(pthread_create(&pt[i], NULL, producer,
							&pr[i]), 0);
		}
		for (int i = 0; i < NPROD; i++) {
			pthread_join(pt[i], NULL);
			produced += pr[i].bytes;
		}
		for (int i = 0; i < NCONS; i++)
			pthread_join(ct[i], NULL);
		pthread_cond_destroy(&q.not_empty);
		pthread_cond_destroy(&q.not_full);
		pthread_mutex_destroy(&q.mu);
	}
	struct ml_stats s1 = stats();
	print_message("live before %lld after %lld, produced %llu bytes\n",
		      (long long)s0.live_bytes, (long long)s1.live_bytes,
		      (unsigned long long)produced);
	/* Every byte the dead producers allocated is in the process count. */
	assert_true(s1.process_allocated - s0.process_allocated >= produced);
	assert_true(produced > 50 * MiB);
	/* The consumers' frees were seen, the producers' counts not lost. */
	int64_t d = s1.live_bytes - s0.live_bytes;
	if (d > (int64_t)MiB || d < -(int64_t)MiB)
		fail_msg("live heap moved by %lld bytes", (long long)d);
}

enum { NBLK = 128, BLK = 64 * KiB };
static void *blocks[NBLK];

static void *alloc_blocks(void *arg)
{
	(void)arg;
	for (int i = 0; i < NBLK; i++) {
		blocks[i] = f_malloc(BLK);
		if (!blocks[i])
			abort();
		memset(blocks[i], 1, BLK);
	}
	return NULL;
}

static void *free_blocks(void *arg)
{
	(void)arg;
	for (int i = 0; i < NBLK; i++)
		f_free(blocks[i]);
	return NULL;
}

static void dead_thread_counts_kept(void **state)
{
	(void)state;
	const int64_t total = (int64_t)NBLK * BLK;
	pthread_t t;
	/* A thread allocates and exits; main frees later. */
	struct ml_stats s0 = stats();
	assert_int_equal(pthread_create(&t, NULL, alloc_blocks, NULL), 0);
	pthread_join(t, NULL);
	struct ml_stats s1 = stats();
	int64_t d = s1.live_bytes - s0.live_bytes;
	if (d < total || d > total + (int64_t)MiB)
		fail_msg("after the allocating thread died, live moved by %lld, "
			 "want %lld", (long long)d, (long long)total);
	assert_true(s1.process_allocated - s0.process_allocated >=
		    (uint64_t)total);
	free_blocks(NULL);
	struct ml_stats s2 = stats();
	d = s2.live_bytes - s0.live_bytes;
	if (d > (int64_t)MiB || d < -(int64_t)MiB)
		fail_msg("after main freed: live moved by %lld", (long long)d);

	/* The other way round: main allocates, a thread that never
	 * allocates frees and exits. */
	s0 = stats();
	alloc_blocks(NULL);
	s1 = stats();
	d = s1.live_bytes - s0.live_bytes;
	assert_true(d >= total);
	assert_int_equal(pthread_create(&t, NULL, free_blocks, NULL), 0);
	pthread_join(t, NULL);
	s2 = stats();
	d = s2.live_bytes - s0.live_bytes;
	if (d > (int64_t)MiB || d < -(int64_t)MiB)
		fail_msg("after the freeing thread died: live moved by %lld",
			 (long long)d);
	/* Several generations of short-lived threads. */
	s0 = stats();
	for (int i = 0; i < 20; i++) {
		assert_int_equal(pthread_create(&t, NULL, alloc_blocks, NULL), 0);
		pthread_join(t, NULL);
		assert_int_equal(pthread_create(&t, NULL, free_blocks, NULL), 0);
		pthread_join(t, NULL);
	}
	s2 = stats();
	d = s2.live_bytes - s0.live_bytes;
	if (d > (int64_t)MiB || d < -(int64_t)MiB)
		fail_msg("after 20 generations: live moved by %lld",
			 (long long)d);
	assert_true(s2.process_allocated - s0.process_allocated >=
		    20 * (uint64_t)total);
}

/* ---- fork from a threaded process ---------------------------------------- */

static volatile int busy_stop;

static void *busy(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	enum { RING = 64 };
	void *ring[RING] = { 0 };
	unsigned i = 0;
	while (!__atomic_load_n(&busy_stop, __ATOMIC_RELAXED)) {
		unsigned r = xorshift(&seed);
		size_t n = r % 16 == 0 ? 100 * KiB : r % 4000;
		f_free(ring[i % RING]);
		ring[i % RING] = f_malloc(n);
		if (!ring[i % RING])
			abort();
		if (r % 8 == 0) {
			void *c = f_calloc(r % 100 + 1, 8);
			void *q = f_realloc(c, r % 3000 + 1);
			f_free(q);
		}
		i++;
	}
	for (int k = 0; k < RING; k++)
		f_free(ring[k]);
	return NULL;
}

static void *child_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 1000; i++)
		f_free(f_malloc((size_t)i * 13 + 1));
	return NULL;
}

/* The child's work; returns its exit status. */
static int fork_child_work(void)
{
	alarm(15); /* a deadlock shows as SIGALRM, not a hang */
	struct ml_stats s;
	if (ml_stats(&s) != ML_OK)
		return 10;
	if (s.live_bytes <= 0 || s.live_bytes > (int64_t)(1u << 30))
		return 11;
	static void *keep[5000];
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < 5000; i++) {
			keep[i] = f_malloc((size_t)(i * 31 % 5000) + 1);
			if (!keep[i])
				return 12;
		}
		for (int i = 0; i < 5000; i++)
			f_free(keep[i]);
	}
	void *big = f_malloc(8 * MiB);
	if (!big)
		return 13;
	memset(big, 3, 8 * MiB);
	f_free(big);
	struct ml_stats a, b;
	ml_stats(&a);
	void *p = f_malloc(12345);
	ml_stats(&b);
	if (!p || b.thread_allocated - a.thread_allocated != 12345)
		return 14;
	f_free(p);
	pthread_t t;
	if (pthread_create(&t, NULL, child_thread, NULL) != 0)
		return 15;
	pthread_join(t, NULL);
	if (ml_stats(&s) != ML_OK)
		return 16;
	if (s.live_bytes <= 0 || s.live_bytes > (int64_t)(1u << 30))
		return 17;
	return 0;
}

static int wait_status(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void fork_from_threads(void **state)
{
	(void)state;
	enum { NBUSY = 3, FORKS = 20 };
	struct ml_stats s0 = stats();
	busy_stop = 0;
	pthread_t t[NBUSY];
	for (int i = 0; i < NBUSY; i++)
		assert_int_equal(pthread_create(&t[i], NULL, busy,
						(void *)(uintptr_t)(i + 7)), 0);
	for (int k = 0; k < FORKS; k++) {
		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			exit(fork_child_work());
		/* The parent keeps allocating meanwhile. */
		for (int i = 0; i < 2000; i++)
			f_free(f_malloc((size_t)i + 1));
		int st = wait_status(pid);
		if (st != 0)
			fail_msg("fork %d: child status %d", k, st);
	}
	/* fork + exec. */
	for (int k = 0; k < 5; k++) {
		fflush(stdout);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			char *argv[] = { "/bin/true", NULL };
			execv(argv[0], argv);
			_exit(127);
		}
		assert_int_equal(wait_status(pid), 0);
	}
	__atomic_store_n(&busy_stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < NBUSY; i++)
		pthread_join(t[i], NULL);
	struct ml_stats s1 = stats();
	int64_t d = s1.live_bytes - s0.live_bytes;
	if (d > (int64_t)MiB || d < -(int64_t)MiB)
		fail_msg("parent's live heap moved by %lld", (long long)d);
	struct ml_stats a = stats();
	void *p = f_malloc(4321);
	assert_int_equal(counted_since(&a), 4321);
	f_free(p);
}

/* ---- dlopen -------------------------------------------------------------- */

typedef int (*sqlite_open_fn)(const char *, void **);
typedef int (*sqlite_exec_fn)(void *, const char *, void *, void *, char **);
typedef int (*sqlite_close_fn)(void *);

static void dlopen_libraries(void **state)
{
	(void)state;
	static const char *libs[] = { "libz.so.1", "libsqlite3.so.0",
				      "libbz2.so.1.0", "libexpat.so.1",
				      "libm.so.6" };
	int opened = 0;
	for (int round = 0; round < 10; round++)
		for (size_t i = 0; i < sizeof libs / sizeof *libs; i++) {
			void *h = dlopen(libs[i], RTLD_NOW | RTLD_LOCAL);
			if (!h)
				continue;
			opened++;
			void *p = f_malloc(1000);
			assert_non_null(p);
			f_free(p);
			assert_int_equal(dlclose(h), 0);
		}
	assert_true(opened >= 10);
	/* A dlopened library's own allocations go through the preload. */
	void *h = dlopen("libsqlite3.so.0", RTLD_NOW | RTLD_LOCAL);
	if (h) {
		sqlite_open_fn op = (sqlite_open_fn)dlsym(h, "sqlite3_open");
		sqlite_exec_fn ex = (sqlite_exec_fn)dlsym(h, "sqlite3_exec");
		sqlite_close_fn cl = (sqlite_close_fn)dlsym(h, "sqlite3_close");
		assert_non_null(op);
		assert_non_null(ex);
		assert_non_null(cl);
		struct ml_stats s = stats();
		void *db = NULL;
		assert_int_equal(op(":memory:", &db), 0);
		assert_int_equal(ex(db,
				    "create table t(x); "
				    "with recursive c(i) as (select 1 union all "
				    "select i+1 from c where i < 20000) "
				    "insert into t select randomblob(50) from c;",
				    NULL, NULL, NULL), 0);
		uint64_t used = counted_since(&s);
		print_message("sqlite3 allocated %llu bytes\n",
			      (unsigned long long)used);
		assert_true(used > MiB);
		assert_int_equal(cl(db), 0);
		dlclose(h);
	}
	/* Keep allocating afterwards. */
	for (int i = 0; i < 10000; i++) {
		void *p = f_malloc((size_t)i % 3000);
		assert_non_null(p);
		f_free(p);
	}
	struct ml_stats a = stats();
	void *p = f_calloc(3, 333);
	assert_int_equal(counted_since(&a), 999);
	f_free(p);
}

/* ---- Helper programs: C++ new/delete, allocation before constructors ---- */

static void run_prog(const char *name)
{
	const char *dir = getenv("MLT_PROGS");
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir ? dir : "build/tests/progs",
		 name);
	char *argv[] = { path, NULL };
	struct mlt_run r;
	if (mlt_run_cmd(argv, NULL, 1, NULL, &r) != 0)
		fail_msg("cannot run %s", path);
	print_message("%s: status %d\n%s%s", name, r.status, r.out, r.err);
	int st = r.status;
	mlt_run_free(&r);
	assert_int_equal(st, 0);
}

static void cxx_new_delete(void **state)
{
	(void)state;
	run_prog("alloc_cxx");
}

static void alloc_before_constructors(void **state)
{
	(void)state;
	run_prog("alloc_early");
}


/* realloc beyond the thread's grant (1 MiB without limits, 64 KiB under a
 * heap limit): the growth is still counted exactly, whether the engine
 * learns it before (an allocation limit near) or after (no limit near). */
struct big_realloc { uint64_t want, got; int ok; };

static void *grow_big(void *arg)
{
	struct big_realloc *r = arg;
	struct ml_stats before = stats();
	char *p = f_malloc(1000);
	r->want = 1000;
	for (size_t n = 3000; n < (8u << 20) && p; n = n * 3 / 2) {
		size_t have = malloc_usable_size(p);
		char *q = f_realloc(p, n);
		if (!q)
			break;
		q[n - 1] = 1;
		size_t now = malloc_usable_size(q);
		r->want += now > have ? now - have : 0;
		p = q;
	}
	r->got = counted_since(&before);
	r->ok = p != NULL;
	free(p);
	return NULL;
}

static void realloc_beyond_grant_counts_exactly(void **state)
{
	struct big_realloc r;
	memset(&r, 0, sizeof r);
	grow_big(&r);
	assert_true(r.ok);
	assert_int_equal(r.got, r.want);
	/* Inside a task with a limit far away and one that the loop crosses. */
	ml_status st = ml_start();
	assert_true(st == ML_OK || st == ML_INVALID);
	uint64_t used = 0;
	memset(&r, 0, sizeof r);
	assert_int_equal(ml_limit_allocations(1ull << 40, grow_big, &r, NULL, &used), ML_OK);
	assert_int_equal(r.got, r.want);
	assert_int_equal(used, r.want);
	memset(&r, 0, sizeof r);
	assert_int_equal(ml_limit_allocations(3u << 20, grow_big, &r, NULL, &used),
			 ML_ALLOCATION_LIMIT);
	assert_true(used <= 3u << 20);
	assert_int_equal(used, r.want);
}

/* A buffer grown 4 KiB at a time costs its size: each realloc that moves
 * it to the next size class is charged what the block grew by, not the 4
 * KiB asked for beyond the old usable size (which let a buffer grow to 24
 * MiB under a 10 MiB budget, charged 190 KB). */
struct steps { size_t reached; };

static void *grow_by_steps(void *arg)
{
	struct steps *g = arg;
	char *p = NULL;
	for (size_t n = 4096; n <= 24 * MiB; n += 4096) {
		char *q = f_realloc(p, n);
		if (!q)
			break;
		memset(q + n - 4096, 1, 4096);
		p = q;
		g->reached = n;
	}
	free(p);
	return NULL;
}

static void realloc_by_small_steps_costs_its_size(void **state)
{
	(void)state;
	assert_true(ml_start() == ML_OK || ml_start() == ML_INVALID);
	struct steps g = { 0 };
	uint64_t used = 0;
	ml_status st = ml_limit_allocations(10 * MiB, grow_by_steps, &g, NULL, &used);
	print_message("grown to %zu KiB under a 10 MiB budget, %llu KiB charged\n",
		      g.reached >> 10, (unsigned long long)(used >> 10));
	assert_int_equal(st, ML_ALLOCATION_LIMIT);
	assert_true(used <= 10 * MiB);
	assert_true(g.reached <= 10 * MiB);
	assert_true(g.reached >= 7 * MiB); /* a size class below the budget */
	/* No budget: charged at least the size it reached. */
	struct ml_stats s = stats();
	g.reached = 0;
	grow_by_steps(&g);
	assert_int_equal(g.reached, 24 * MiB);
	assert_true(counted_since(&s) >= 24 * MiB);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(engine_loaded),
		cmocka_unit_test(exported_symbols_exact),
		cmocka_unit_test(libc_by_handle_is_ours),
		cmocka_unit_test(libc_names_are_ours),
		cmocka_unit_test(c23_forms_exported),
		cmocka_unit_test(malloc_zero_unique),
		cmocka_unit_test_setup(malloc_usable, setup_sizes),
		cmocka_unit_test_setup(alignment_16_everywhere, setup_sizes),
		cmocka_unit_test(malloc_blocks_disjoint),
		cmocka_unit_test(calloc_zeroes),
		cmocka_unit_test(calloc_overflow),
		cmocka_unit_test(realloc_null_is_malloc),
		cmocka_unit_test(realloc_zero_frees),
		cmocka_unit_test(realloc_preserves),
		cmocka_unit_test(reallocarray_overflow_keeps_old),
		cmocka_unit_test(huge_sizes_fail_cleanly),
		cmocka_unit_test(posix_memalign_contract),
		cmocka_unit_test(aligned_alloc_contract),
		cmocka_unit_test(memalign_contract),
		cmocka_unit_test(valloc_pvalloc_contract),
		cmocka_unit_test(large_alignments),
		cmocka_unit_test(free_sized_forms),
		cmocka_unit_test_setup(accounting_exact, setup_sizes),
		cmocka_unit_test(accounting_realloc),
		cmocka_unit_test(accounting_aligned),
		cmocka_unit_test(threads_cross_free),
		cmocka_unit_test(dead_thread_counts_kept),
		cmocka_unit_test(fork_from_threads),
		cmocka_unit_test(dlopen_libraries),
		cmocka_unit_test(cxx_new_delete),
		cmocka_unit_test(alloc_before_constructors),
		cmocka_unit_test(realloc_beyond_grant_counts_exactly),
		cmocka_unit_test(realloc_by_small_steps_costs_its_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
