// cxxheavy.cc: C++ new/delete heavy, 2 threads (issue 13). Each thread runs
// ITERS iterations of a mix of what C++ programs allocate through operator
// new and (sized) operator delete: strings built by appending and kept in a
// table that replaces random entries, vectors grown by push_back and dropped,
// small objects of a class hierarchy behind unique_ptr, a std::map<int,
// std::string> and a std::unordered_map<uint64_t, uint32_t> kept near a fixed
// size by inserting and erasing random keys. Everything is seeded per
// thread. Prints a checksum (the same under every allocator); exits 3 if the
// two maps disagree with what was put into them.
//
//     cxxheavy ITERS [THREADS=2] [SEED=1]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench.h" // header-only, valid C++ too

namespace {

struct Shape {
	virtual ~Shape() = default;
	virtual uint64_t area() const = 0;
};
struct Dot final : Shape {
	uint32_t x;
	explicit Dot(uint32_t v) : x(v) {}
	uint64_t area() const override { return x & 1; }
};
struct Rect final : Shape {
	uint64_t w, h;
	Rect(uint64_t a, uint64_t b) : w(a), h(b) {}
	uint64_t area() const override { return w * h; }
};
struct Poly final : Shape {
	uint32_t pts[24];
	explicit Poly(uint32_t v)
	{
		for (uint32_t i = 0; i < 24; i++)
			pts[i] = v + i;
	}
	uint64_t area() const override { return pts[23] - pts[0]; }
};

struct Result {
	uint64_t sum = 0;
	bool bad = false;
};

void work(long iters, uint64_t seed, Result *res)
{
	struct rng r;
	rng_seed(&r, seed);
	std::vector<std::string> strs(512);
	std::vector<std::unique_ptr<Shape>> shapes(1024);
	std::map<int, std::string> ordered;
	std::unordered_map<uint64_t, uint32_t> hashed;
	uint64_t sum = 0;
	for (long it = 0; it < iters; it++) {
		// A string of 1-12 pieces (most leave the small-string buffer).
		std::string s;
		int pieces = (int)rng_range(&r, 1, 12);
		for (int k = 0; k < pieces; k++)
			s += std::to_string(rng_next(&r) % 100000000u);
		sum += s.size();
		strs[rng_next(&r) % strs.size()] = std::move(s);

		// A vector grown one element at a time, then dropped.
		std::vector<uint32_t> v;
		long n = (long)rng_range(&r, 1, 300);
		for (long k = 0; k < n; k++)
			v.push_back((uint32_t)k);
		sum += v.back();

		// Two small objects replaced.
		for (int k = 0; k < 2; k++) {
			uint64_t x = rng_next(&r);
			auto &slot = shapes[x % shapes.size()];
			if (slot)
				sum += slot->area();
			switch ((x >> 32) % 3) {
			case 0: slot.reset(new Dot((uint32_t)x)); break;
			case 1: slot.reset(new Rect(x & 0xff, (x >> 8) & 0xff)); break;
			default: slot = std::make_unique<Poly>((uint32_t)x); break;
			}
		}

		// The ordered map: insert one key, erase another (about 2000 live).
		int key = (int)(rng_next(&r) % 4000);
		ordered[key] = std::to_string(key) + "-value-" + std::to_string(it);
		auto e = ordered.find((int)(rng_next(&r) % 4000));
		if (e != ordered.end()) {
			if (std::atoi(e->second.c_str()) != e->first)
				res->bad = true;
			ordered.erase(e);
		}

		// The hash map: three inserts, three erases (about 8000 live).
		for (int k = 0; k < 3; k++) {
			uint64_t hk = rng_next(&r) % 16000;
			hashed[hk] = (uint32_t)(hk * 3);
			auto h = hashed.find(rng_next(&r) % 16000);
			if (h != hashed.end()) {
				if (h->second != (uint32_t)(h->first * 3))
					res->bad = true;
				hashed.erase(h);
			}
		}
		// Now and then the table is rebuilt from scratch.
		if (it % 20000 == 19999) {
			sum += hashed.size();
			std::unordered_map<uint64_t, uint32_t> copy(hashed.begin(), hashed.end());
			hashed.swap(copy);
		}
	}
	sum += ordered.size() + hashed.size();
	res->sum = sum;
}

} // namespace

int main(int argc, char **argv)
{
	long iters = arg_long(argc, argv, 1, 200000);
	long nthr = arg_long(argc, argv, 2, 2);
	uint64_t seed = (uint64_t)arg_long(argc, argv, 3, 1);
	std::vector<Result> res((size_t)nthr);
	std::vector<std::thread> t;
	for (long i = 0; i < nthr; i++)
		t.emplace_back(work, iters, seed * 1000003u + (uint64_t)i, &res[(size_t)i]);
	uint64_t sum = 0;
	bool bad = false;
	for (long i = 0; i < nthr; i++) {
		t[(size_t)i].join();
		sum += res[(size_t)i].sum;
		bad |= res[(size_t)i].bad;
	}
	if (bad) {
		std::fprintf(stderr, "cxxheavy: a map lost an entry's value\n");
		return 3;
	}
	std::printf("%llu\n", (unsigned long long)sum);
	return 0;
}
