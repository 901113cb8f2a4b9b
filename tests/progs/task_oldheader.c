/* task_oldheader: a program built against the first version of the header
 * keeps working with today's library. It declares the engine's table as
 * version 1 had it (up to stats; the library has since appended the
 * profiler's members) and uses it the way that header did. Exit 0 iff the
 * calls behave. */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*task_fn)(void *);
struct api_v1 {
	uint32_t version;
	uint32_t size;
	int (*start)(void);
	void (*set_global_memory_limit)(int64_t);
	int64_t (*global_memory_limit)(void);
	int (*limit_global_memory)(void *(*)(void *), void *, void **);
	int (*limit_allocations)(uint64_t, void *(*)(void *), void *, void **,
				 uint64_t *);
	/* ... the rest of version 1, unused here */
};

static void *work(void *arg)
{
	return malloc((size_t)(uintptr_t)arg);
}

int main(void)
{
	const struct api_v1 *(*engine)(uint32_t) =
		(const struct api_v1 *(*)(uint32_t))dlsym(RTLD_DEFAULT, "ml_engine");
	if (!engine) {
		puts("not loaded");
		return 1;
	}
	const struct api_v1 *a = engine(1);
	if (!a || a->version < 1 || a->size < sizeof *a) {
		puts("no version-1 table");
		return 2;
	}
	int st = a->start();
	void *r = NULL;
	uint64_t used = 0;
	int ok = a->limit_allocations(1000, work, (void *)(uintptr_t)300, &r, &used);
	free(r);
	int over = a->limit_allocations(1000, work, (void *)(uintptr_t)3000, &r, &used);
	free(r);
	printf("start=%d ok=%d used=%llu over=%d\n", st, ok, (unsigned long long)used, over);
	/* 0 = ML_OK, 2 = ML_ALLOCATION_LIMIT, as in version 1 */
	return st == 0 && ok == 0 && over == 2 ? 0 : 3;
}
