// cxx_new_loop: new char[1 MiB] (touched) in a loop, kept, never caught:
// under a memory limit the program ends by an uncaught std::bad_alloc, that
// is abort(). Without one it stops after 1024 blocks and exits 4.
#include <cstring>
#include <vector>

int main()
{
	std::vector<char *> v;
	for (int i = 0; i < 1024; i++) {
		char *p = new char[1 << 20];
		std::memset(p, 1, 1 << 20);
		v.push_back(p);
	}
	return 4;
}
