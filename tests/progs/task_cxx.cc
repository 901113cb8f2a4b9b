// task_cxx: a C++ task under ml_limit_allocations (run by test_tasks with the
// preload). In C++ a task's interrupted allocation is std::bad_alloc: it
// unwinds through destructors (RAII), the task catches it and returns, and
// the task's status names the limit. Prints what happened; exit 0 iff it
// all went as the header says.
#include <cstdint>
#include <cstdio>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "shim/memlimits.h"

// Runs any callable as a task. A captureless lambda converts to the
// ml_task_fn function pointer; the callable travels through `arg`. Exceptions
// must not cross the engine (C code): the task catches what it expects, and
// anything else ends the program (noexcept).
template <class F>
static ml_status limit_allocations(uint64_t limit, F &&f, uint64_t *used)
{
	using Fn = typename std::remove_reference<F>::type;
	ml_task_fn adapter = [](void *arg) noexcept -> void * {
		(*static_cast<Fn *>(arg))();
		return nullptr;
	};
	return ml_limit_allocations(limit, adapter, &f, nullptr, used);
}

static int destroyed;
static bool dtor_saw_interrupt, dtor_alloc_ok;

// An RAII object whose destructor runs during the unwinding. Its cleanup
// allocates, so it masks: a masked allocation cannot fail because of a limit.
struct Guard {
	~Guard()
	{
		destroyed++;
		dtor_saw_interrupt = ml_is_interrupted();
		ml_mask();
		try {
			std::string note(200, 'n');
			dtor_alloc_ok = note.size() == 200;
		} catch (...) {
			dtor_alloc_ok = false;
		}
		ml_unmask();
	}
};

static std::vector<std::string> *volatile sink;

int main()
{
	ml_status st = ml_start();
	if (st != ML_OK) {
		std::printf("ml_start: %s\n", ml_status_string(st));
		return 1;
	}

	bool caught = false, destroyed_before_catch = false, interrupted_in_catch = false;
	size_t strings = 0;
	uint64_t used = 0;
	st = limit_allocations(1 << 20, [&] {
		try {
			Guard g;
			std::vector<std::string> v;
			sink = &v;
			for (int i = 0; i < 1000000; i++) { // ~1 GB if never interrupted
				v.emplace_back(1000, 'x');
				strings = v.size();
			}
			sink = nullptr;
		} catch (const std::bad_alloc &) {
			sink = nullptr;
			caught = true;
			destroyed_before_catch = destroyed == 1;
			interrupted_in_catch = ml_is_interrupted();
		}
	}, &used);

	std::printf("strings built: %zu\n", strings);
	std::printf("bytes allocated: %llu\n", (unsigned long long)used);
	std::printf("bad_alloc caught: %s\n", caught ? "yes" : "no");
	std::printf("destructor ran: %s\n", destroyed_before_catch ? "yes" : "no");
	std::printf("destructor saw the interrupt: %s\n", dtor_saw_interrupt ? "yes" : "no");
	std::printf("masked allocation in destructor: %s\n", dtor_alloc_ok ? "ok" : "failed");
	std::printf("interrupted in catch: %s\n", interrupted_in_catch ? "yes" : "no");
	std::printf("status: %s\n", ml_status_string(st));
	bool ok = caught && destroyed_before_catch && dtor_saw_interrupt && dtor_alloc_ok &&
		  interrupted_in_catch && st == ML_ALLOCATION_LIMIT &&
		  // Unmasked allocations stay within the limit; the destructor's
		  // masked 201 bytes are counted on top.
		  used <= (1 << 20) + 201 &&
		  strings > 100 && !ml_is_interrupted();

	// The same work under a budget it fits in: no exception, ML_OK.
	bool small_ok = false;
	ml_status st2 = limit_allocations(64 << 20, [&] {
		try {
			std::vector<std::string> v;
			for (int i = 0; i < 100; i++)
				v.emplace_back(1000, 'y');
			small_ok = v.size() == 100;
		} catch (...) {
			small_ok = false;
		}
	}, nullptr);
	std::printf("second task: %s, %s\n", ml_status_string(st2), small_ok ? "completed" : "failed");
	ok = ok && st2 == ML_OK && small_ok;
	std::printf("%s\n", ok ? "PASS" : "FAIL");
	return ok ? 0 : 1;
}
