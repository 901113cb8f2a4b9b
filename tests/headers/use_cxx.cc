// use_cxx.cc: uses every class and function of memlimits.hpp (and so
// memlimits.h in C++), so that tests/headers.sh can compile both headers as
// strict C++11 and C++17, included before and after <dlfcn.h>
// (ML_DLFCN_FIRST). Run, it checks the neutral behaviour without the preload
// and the working engine with it, and prints "loaded: ok" or
// "not loaded: ok"; exit 0 iff every check held. The behaviour itself is
// tested in tests/progs/hpp_raii.cc.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <utility>
#ifdef ML_DLFCN_FIRST
#include <dlfcn.h>
#include "shim/memlimits.h"
#include "shim/memlimits.hpp"
#else
#include "shim/memlimits.h"
#include "shim/memlimits.hpp"
#include <dlfcn.h>
#endif

static int failures;
#define CHECK(c)                                                                \
	do {                                                                    \
		if (!(c)) {                                                     \
			std::printf("%s:%d: check failed: %s\n", __FILE__, __LINE__, \
				    #c);                                        \
			failures++;                                             \
		}                                                               \
	} while (0)

static void *task(void *arg)
{
	std::free(std::malloc(16));
	return arg;
}

int main()
{
	bool loaded = ml_loaded();
	ml_status want = loaded ? ML_OK : ML_NOT_LOADED;
	ml_status st = ml_start();
	CHECK(loaded ? (st == ML_OK || st == ML_INVALID) : st == ML_NOT_LOADED);
	static_assert(ml::is_interrupt(ML_TOKEN_LIMIT) && !ml::is_interrupt(ML_OK),
		      "is_interrupt is constexpr");
	int x = 0;
	void *result = nullptr;
	CHECK(ml_limit_allocations(1000, task, &x, &result, nullptr) == want);

	ml::token t;
	CHECK(static_cast<bool>(t) == loaded);
	CHECK(!t.is_set());
	ml::token u(std::move(t));
	CHECK(!t && static_cast<bool>(u) == loaded);
	t = std::move(u);
	ml::token adopted(ml_token_create());
	ml_token *raw = adopted.release();
	ml_token_destroy(raw);
	adopted.reset();

	std::uint64_t used = 1;
	st = ml::limit_allocations(1 << 20, [] { delete new int(1); }, &used);
	CHECK(st == want && used == (loaded ? sizeof(int) : 0));
	CHECK(ml::limit_global_memory([] {}) == want);
	CHECK(ml::limit_with_token(t, [] {}) == want);
	CHECK(ml::limit_with_token(t.get(), [] {}) == want);
	{
		ml::global_memory_limit g;
		ml::allocation_limit a(1 << 20);
		ml::token_limit k(t);
		ml::token_limit k2(t.get());
		CHECK(k2.active() == loaded && k2.status() == want);
		t.set();
		CHECK(t.is_set() == loaded);
		{
			ml::masked m;
			CHECK(ml_is_blocked() == loaded);
			delete new int(2);
		}
		CHECK(k2.leave() == (loaded ? ML_TOKEN_LIMIT : ML_NOT_LOADED));
		CHECK(k.leave() == (loaded ? ML_TOKEN_LIMIT : ML_NOT_LOADED));
		CHECK(a.leave() == want && a.allocated() == (loaded ? sizeof(int) : 0));
		CHECK(g.active() == loaded && g.leave() == want && !g.active());
	}
	CHECK(!ml_is_blocked() && !ml_is_interrupted());
	std::printf("%s: %s\n", loaded ? "loaded" : "not loaded", failures ? "FAILED" : "ok");
	return failures != 0;
}
