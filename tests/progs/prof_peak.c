/* prof_peak: an ordinary C program (it knows nothing of memlimits) whose
 * memory peaks in the middle of the run, for the peak profile and the
 * folded stacks' frame names (test_prof):
 *   peak_hold    64 MiB in 256 KiB blocks, all held at once, then all
 *                freed: the peak, and nothing of it left at exit;
 *   peak_after   1 MiB in 64 KiB blocks, kept to the end: the exit
 *                profile's site;
 *   lib_exported_churn (libpeaksym.so) and its static lib_static_alloc:
 *                8 MiB in 32 KiB blocks, each freed at once, 32 KiB kept.
 * peak_hold and peak_after are static functions (peak_after with aliases):
 * only the program's .symtab names them (tests/tests.mk also builds a stripped copy,
 * prof_peak_stripped). Prints the memory before the peak (the global
 * measure: heap and mapped), "base_memory=BYTES", from ml_stats when the
 * library is loaded. "fork": after peak_release, a forked child runs
 * peak_after and exits (its own peak is after the parent's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim/memlimits.h"

#define NOINLINE __attribute__((noinline, noclone))

void lib_exported_churn(size_t n, int count, void **keep);

static void *held[256];
static void *kept[16];
static void *lib_kept;

NOINLINE static void peak_hold(void)
{
	for (int i = 0; i < 256; i++) {
		held[i] = malloc(256 << 10);
		if (!held[i])
			exit(3);
		memset(held[i], i, 256 << 10);
	}
	__asm__ volatile("" ::: "memory");
}

NOINLINE static void peak_release(void)
{
	for (int i = 0; i < 256; i++)
		free(held[i]);
	__asm__ volatile("" ::: "memory");
}

NOINLINE static void peak_after(void)
{
	for (int i = 0; i < 16; i++) {
		kept[i] = malloc(64 << 10);
		if (!kept[i])
			exit(3);
		memset(kept[i], i, 64 << 10);
	}
	__asm__ volatile("" ::: "memory");
}

/* Two more names for peak_after, as libraries have them (glibc's
 * __strdup and strdup): a global one that sorts first and a weak one that
 * sorts last. google-pprof (nm) keeps the last of the code symbols that
 * are not weak, by name: peak_after. */
void a_peak_after_alias(void) __attribute__((alias("peak_after")));
void z_peak_after_weak(void) __attribute__((weak, alias("peak_after")));

int main(int argc, char **argv)
{
	struct ml_stats st;
	if (ml_stats(&st) == ML_OK)
		printf("base_memory=%lld\n",
		       (long long)(st.live_bytes + st.mapped_bytes));
	lib_exported_churn(32 << 10, 256, &lib_kept);
	peak_hold();
	peak_release();
	if (argc > 1 && strcmp(argv[1], "fork") == 0) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0)
			exit(4);
		if (pid == 0) {
			peak_after();
			exit(0);
		}
		int status;
		if (waitpid(pid, &status, 0) != pid || status != 0)
			exit(5);
	}
	peak_after();
	printf("done %p %p\n", kept[15], lib_kept);
	return 0;
}
