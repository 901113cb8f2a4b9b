// out_uncaught: allocates 1 MiB std::vector<char> blocks (touched) until
// std::bad_alloc, which nothing catches: std::terminate calls abort(). Under
// a memory limit that is the program's end; the report must still be
// written (tests/test_outputs.c). Without a limit it gives up after 4 GiB.
#include <cstdio>
#include <vector>

int main()
{
	std::vector<std::vector<char>> blocks;
	for (int i = 0; i < 4096; i++)
		blocks.emplace_back(std::size_t(1) << 20);
	std::puts("no bad_alloc");
	return 4;
}
