// prog_badalloc: allocates 1 MiB std::vector<char> blocks (zero-filled, so
// touched) in a loop inside try/catch(std::bad_alloc&). An RAII guard in the
// try block prints "unwound" from its destructor; the handler prints
// "bad_alloc" and the program exits 0. Without a limit it gives up after
// 128 blocks (128 MiB): "no bad_alloc", exit 4.
#include <cstdio>
#include <new>
#include <vector>

struct Guard {
	~Guard() { std::puts("unwound"); }
};

int main()
{
	std::puts("start");
	std::fflush(stdout);
	try {
		Guard g;
		std::vector<std::vector<char>> blocks;
		blocks.reserve(128);
		for (int i = 0; i < 128; i++)
			blocks.emplace_back(std::size_t(1) << 20);
		std::puts("no bad_alloc");
		return 4;
	} catch (std::bad_alloc &) {
		std::puts("bad_alloc");
	}
	return 0;
}
