// task_unwind: a C++ exception that escapes a task unwinds through the
// engine (destructors run), leaves the task's scope, and the thread is no
// longer interrupted afterwards. Prints what happened; exit 0 iff all held.
#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>

#include "shim/memlimits.h"

static int destructors;
struct Guard {
	~Guard() { destructors++; }
};

static void *runaway(void *) {
	Guard g;
	std::vector<char *> blocks;
	for (;;)
		blocks.push_back(new char[4096]); // leaks on purpose: the budget stops it
	return nullptr;
}

static void *nested(void *) {
	Guard g;
	ml_limit_allocations(1 << 30, runaway, nullptr, nullptr, nullptr);
	return nullptr;
}

int main() {
	if (ml_start() != ML_OK)
		return 10;
	int caught = 0;
	try {
		ml_limit_allocations(1 << 20, runaway, nullptr, nullptr, nullptr);
	} catch (std::bad_alloc &) {
		caught++;
	}
	try { // two scopes unwound at once
		ml_limit_allocations(2 << 20, nested, nullptr, nullptr, nullptr);
	} catch (std::bad_alloc &) {
		caught++;
	}
	void *p = std::malloc(1 << 20);
	uint64_t used = 0;
	ml_status st = ml_limit_allocations(1000, [](void *) -> void * {
		return std::malloc(100);
	}, nullptr, &p, &used);
	std::printf("caught=%d destructors=%d interrupted=%d malloc_after=%s "
		    "next_task=%s used=%llu\n",
		    caught, destructors, (int)ml_is_interrupted(), p ? "ok" : "NULL",
		    ml_status_string(st), (unsigned long long)used);
	return caught == 2 && destructors == 3 && !ml_is_interrupted() && p &&
			       st == ML_OK && used == 100
		       ? 0
		       : 1;
}
