// grow_new [MIB]: allocates with new, 4 KiB objects and 1 MiB arrays in
// turn (touched), up to MIB (default 500) MiB or std::bad_alloc, which it
// catches and reports: "std::bad_alloc after N MiB" (exit 1), or "all N MiB"
// (exit 0).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

struct Page {
	char bytes[4096];
};

int main(int argc, char **argv)
{
	long want = argc > 1 ? std::atol(argv[1]) : 500;
	std::vector<std::unique_ptr<Page>> pages;
	std::vector<std::unique_ptr<char[]>> arrays;
	pages.reserve(size_t(want) * 256);
	arrays.reserve(size_t(want));
	long mib = 0;
	try {
		for (; mib < want; mib++) {
			if (mib % 2) {
				arrays.emplace_back(new char[1 << 20]);
				std::memset(arrays.back().get(), 1, 1 << 20);
			} else {
				for (int i = 0; i < 256; i++) {
					pages.emplace_back(new Page);
					pages.back()->bytes[0] = 1;
				}
			}
		}
	} catch (const std::bad_alloc &) {
		std::printf("std::bad_alloc after %ld MiB\n", mib);
		return 1;
	}
	std::printf("all %ld MiB\n", mib);
	return 0;
}
