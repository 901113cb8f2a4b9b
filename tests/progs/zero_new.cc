// zero_new: zero-byte operator new under MEMLIMITS_GLOBAL_MEMORY (the C
// forms are zero_blocks.c's). new char[0] takes a block like any other, and
// 3,000,000 of them went through an 8 MiB cap (the fast path's `left >= 0`
// always held). new[] and new in turn allocate until std::bad_alloc, or
// MAX_BLOCKS; prints "unrefused": the forms that never got bad_alloc.
#include <cstdio>
#include <new>

static const int MAX_BLOCKS = 1 << 20; // 16 MiB of blocks: twice the limit
static void *blocks[MAX_BLOCKS];

int main()
{
	int unrefused = 0;
	for (int form = 0; form < 2; form++) {
		int n = 0;
		try {
			for (; n < MAX_BLOCKS; n++)
				blocks[n] = form ? ::operator new(0) : new char[0];
		} catch (const std::bad_alloc &) {
		}
		unrefused += n == MAX_BLOCKS;
		for (int i = 0; i < n; i++) {
			if (form)
				::operator delete(blocks[i]);
			else
				delete[] static_cast<char *>(blocks[i]);
		}
	}
	std::printf("unrefused=%d\n", unrefused);
	return 0;
}
