/* mallopt_probe: mallopt's answer for each of glibc's parameters (and a few
 * unknown ones) and a range of values, one line per parameter. test_mallinfo
 * runs it without the preload (glibc's answers) and with it: the lines must
 * be the same. */
#include <malloc.h>
#include <stdio.h>

int main(void)
{
	static const int params[] = {
		M_MXFAST, M_NLBLKS, M_GRAIN, M_KEEP, M_TRIM_THRESHOLD, M_TOP_PAD,
		M_MMAP_THRESHOLD, M_MMAP_MAX, M_CHECK_ACTION, M_PERTURB,
		M_ARENA_TEST, M_ARENA_MAX, 0, 5, 99, -9, -100, 12345,
	};
	static const int values[] = {
		-1000, -1, 0, 1, 8, 64, 160, 161, 1 << 16, 1 << 20, 1 << 25,
		(1 << 25) + 1, 1 << 30,
	};
	for (unsigned i = 0; i < sizeof params / sizeof *params; i++) {
		printf("%d:", params[i]);
		for (unsigned j = 0; j < sizeof values / sizeof *values; j++)
			printf(" %d", mallopt(params[i], values[j]));
		printf("\n");
	}
	return 0;
}
