/* budget_grace: run with MEMLIMITS_ALLOCATIONS=1M or
 * MEMLIMITS_THREAD_ALLOCATIONS=1M. After a budget's refusal the thread may
 * allocate 100 KiB more (README: so that the program can report its error),
 * and after the next refusal 100 KiB again. Allocates 1000-byte blocks until
 * refused, then 1 KiB blocks until refused, twice; each "after" must be
 * within 100 KiB and more than 90 KiB; ten times at most, then nothing
 * more (8 x 100 KiB in the next 28 rounds). (The process budget gave 200 KiB:
 * its grace bytes were also added to what the thread held.) Exit 0 iff. */
#include <stdio.h>
#include <stdlib.h>

static unsigned long long until_refused(size_t n)
{
	unsigned long long total = 0;
	for (;;) {
		void *p = malloc(n);
		if (!p)
			return total;
		total += n;
		free(p);
	}
}

int main(void)
{
	unsigned long long before = until_refused(1000);
	unsigned long long after1 = until_refused(1024);
	unsigned long long after2 = until_refused(1024);
	printf("refused after %llu bytes; then %llu and %llu more\n", before,
	       after1, after2);
	/* Ten allowances in all: then every allocation is refused (a program
	 * that went on after each refusal got 100 KiB each time, without
	 * end). */
	unsigned long long rest = 0;
	for (int i = 2; i < 30; i++)
		rest += until_refused(1024);
	printf("after 30 refusals: %llu more in all\n", rest);
	int ok = before <= (1 << 20) && before > (1 << 20) - 2000 &&
		 after1 <= 100 * 1024 && after1 > 90 * 1024 &&
		 after2 <= 100 * 1024 && after2 > 90 * 1024 &&
		 rest <= 8 * 100 * 1024 && rest > 8 * 90 * 1024;
	if (!ok)
		printf("FAILED\n");
	return !ok;
}
