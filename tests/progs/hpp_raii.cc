// hpp_raii: the behaviour of shim/memlimits.hpp under the preload, one
// group of checks per command-line argument (run by tests/test_hpp.c):
//
//   scoped     scoped limits: status and exact counts after leave(), leave()
//              by the destructor, idempotent leave, out-of-order leave,
//              entering refused, the global memory limit
//   masked     ml::masked inside an interrupted limit
//   token      ml::token ownership and move semantics, token limits
//   unwind     exceptions unwinding through scoped limits leave them
//   functions  the function forms: statuses, counts, which exceptions
//              become a status and which propagate, nesting
//   catch-unmasked  a catch handler inside an interrupted limit that
//              allocates: std::terminate (the reason for the pattern in
//              memlimits.hpp); prints "handler entered" first
//   catch-masked    the same handler under ml::masked: exits 0
//
// Prints a line per failed check and "PASS <group>" or "FAIL <group>";
// exit 0 iff every check held. Allocations go through noinline helpers so
// that the compiler cannot elide a new/delete pair.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "shim/memlimits.h"
#include "shim/memlimits.hpp"

static int failures;
#define CHECK(c)                                                                    \
	do {                                                                        \
		if (!(c)) {                                                         \
			std::printf("%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
			failures++;                                                 \
		}                                                                   \
	} while (0)

static char *volatile held[4096];
static int nheld;

// new char[n], kept until drop_all(); throws std::bad_alloc when refused.
__attribute__((noinline)) static void grab(std::size_t n)
{
	held[nheld] = new char[n];
	nheld++;
}

__attribute__((noinline)) static void drop_all()
{
	while (nheld > 0)
		delete[] held[--nheld];
}

// Does an allocation of n bytes succeed here? (malloc: no exception.)
__attribute__((noinline)) static bool can_malloc(std::size_t n)
{
	void *volatile p = std::malloc(n);
	bool ok = p != nullptr;
	std::free(p);
	return ok;
}

static std::int64_t live_bytes()
{
	struct ml_stats s;
	return ml_stats(&s) == ML_OK ? s.live_bytes : -1;
}

// ---- scoped ----------------------------------------------------------------

static void scoped()
{
	{ // Within the limit: ML_OK and the exact count of requested bytes.
		ml::allocation_limit lim(1 << 20);
		CHECK(lim.active() && lim.status() == ML_OK && lim.allocated() == 0);
		for (int i = 0; i < 10; i++)
			grab(1000);
		CHECK(lim.leave() == ML_OK);
		CHECK(!lim.active() && lim.status() == ML_OK && lim.allocated() == 10000);
		drop_all();
	}
	{ // Over it: the crossing allocation throws, the refused one is not
	  // counted, and the status names the limit.
		ml::allocation_limit lim(4096);
		int got = 0;
		bool threw = false;
		try {
			for (int i = 0; i < 10; i++) {
				grab(1000);
				got++;
			}
		} catch (const std::bad_alloc &) {
			threw = true;
		}
		CHECK(threw && got == 4);
		CHECK(ml_is_interrupted() && lim.status() == ML_OK); // not left yet
		CHECK(lim.leave() == ML_ALLOCATION_LIMIT);
		CHECK(lim.status() == ML_ALLOCATION_LIMIT && lim.allocated() == 4000);
		CHECK(!ml_is_interrupted());
		// A second leave() changes nothing and leaves nothing.
		ml::allocation_limit next(100);
		CHECK(lim.leave() == ML_ALLOCATION_LIMIT && lim.allocated() == 4000);
		CHECK(next.active() && !can_malloc(1000));
		CHECK(next.leave() == ML_ALLOCATION_LIMIT);
		drop_all();
	}
	{ // The destructor leaves: outside, the limit no longer applies.
		{
			ml::allocation_limit lim(100);
			CHECK(!can_malloc(1000));
		}
		CHECK(!ml_is_interrupted() && can_malloc(1 << 20));
	}
	{ // Out of order: ML_INVALID, nothing left, both still active; the
	  // destructors then leave them in order.
		ml::allocation_limit outer(1 << 20);
		{
			ml::allocation_limit inner(100);
			CHECK(outer.leave() == ML_INVALID);
			CHECK(outer.active() && outer.status() == ML_OK);
			CHECK(!can_malloc(1000)); // inner still applies
		}
		CHECK(can_malloc(1000)); // inner left by its destructor
		CHECK(outer.leave() == ML_OK && !outer.active());
	}
	CHECK(!ml_is_interrupted() && can_malloc(1 << 20));
	{ // An inner scope an error path forgot to leave: the destructor drops
	  // it and leaves the limit (it stayed linked to the dead frame: later
	  // allocations outside any limit failed, then crashed: a held-out
	  // check). So does the function form, which returns ML_INVALID.
		static ml_scope forgotten;
		{
			ml::allocation_limit lim(1 << 20);
			CHECK(ml_enter_allocations(&forgotten, 100) == ML_OK);
		}
		CHECK(can_malloc(1 << 20) && !ml_is_interrupted());
		CHECK(ml_leave(&forgotten, nullptr) == ML_INVALID);
		ml_status st = ml::limit_allocations(1 << 20, [] {
			ml_enter_allocations(&forgotten, 100);
		});
		CHECK(st == ML_INVALID);
		CHECK(can_malloc(1 << 20) && !ml_is_interrupted());
		for (int i = 0; i < 1000; i++) // the slow path reads no dead frame
			CHECK(can_malloc((std::size_t)i * 997));
		ml::allocation_limit next(1000);
		CHECK(next.active() && !can_malloc(2000));
		CHECK(next.leave() == ML_ALLOCATION_LIMIT);
	}
	CHECK(!ml_is_interrupted() && can_malloc(1 << 20));
	{ // Entering refused: never active, the status says why, leave() and
	  // the destructor do nothing.
		ml::allocation_limit bad(ML_MAX_ALLOCATION_LIMIT + 1);
		CHECK(!bad.active() && bad.status() == ML_INVALID);
		CHECK(bad.leave() == ML_INVALID && bad.allocated() == 0);
		ml::token_limit none(static_cast<ml_token *>(nullptr));
		CHECK(!none.active() && none.status() == ML_INVALID);
	}
	{ // The global memory limit, as a scope.
		std::int64_t live = live_bytes();
		CHECK(live > 0);
		ml_set_global_memory_limit(live + (8 << 20));
		ml::global_memory_limit lim;
		bool threw = false;
		try {
			grab(4 << 20);
			grab(16 << 20); // over the limit
		} catch (const std::bad_alloc &) {
			threw = true;
		}
		CHECK(threw && nheld == 1);
		CHECK(lim.leave() == ML_GLOBAL_MEMORY_LIMIT);
		ml_set_global_memory_limit(-1);
		drop_all();
	}
}

// ---- masked ----------------------------------------------------------------

static void masked()
{
	ml::allocation_limit lim(1000);
	CHECK(!can_malloc(2000));
	CHECK(ml_is_interrupted());
	{
		ml::masked m;
		CHECK(ml_is_blocked());
		bool ok = true;
		try {
			grab(3000); // over the limit, interrupted: masked, it succeeds
			{
				ml::masked nested;
				grab(500);
			}
			CHECK(ml_is_blocked()); // the outer mask is still on
			grab(500);
		} catch (const std::bad_alloc &) {
			ok = false;
		}
		CHECK(ok && nheld == 3);
	}
	CHECK(!ml_is_blocked());
	CHECK(!can_malloc(1)); // the interrupt was pending: it hits again
	CHECK(lim.leave() == ML_ALLOCATION_LIMIT);
	CHECK(lim.allocated() == 4000); // masked allocations are counted
	drop_all();
}

// ---- token -----------------------------------------------------------------

// Counts the engine's token_destroy calls: this program's copy of the
// header's private table pointer is pointed at a copy of the engine's table
// whose token_destroy counts, then forwards. (The engine keeps tokens out of
// every heap figure, so a leaked token cannot be seen otherwise.)
static int destroys;
static void (*engine_token_destroy)(ml_token *);
static struct ml_api counting_table;

static void counting_destroy(ml_token *t)
{
	destroys++;
	engine_token_destroy(t);
}

static void count_token_destroys()
{
	const struct ml_api *a = ml__api();
	counting_table = *a;
	counting_table.size = sizeof counting_table;
	engine_token_destroy = a->token_destroy;
	counting_table.token_destroy = counting_destroy;
	__atomic_store_n(&ml__table, &counting_table, __ATOMIC_RELEASE);
}

static void token()
{
	count_token_destroys();
	ml::token a;
	CHECK(static_cast<bool>(a) && !a.is_set());
	ml_token *raw = a.get();
	ml::token b(std::move(a));
	CHECK(!a && a.get() == nullptr && b.get() == raw);
	a.set(); // empty: no effect, no crash
	CHECK(!a.is_set() && !b.is_set());

	// Move assignment hands over the token and destroys the target's old
	// one; a self-move keeps it; a moved-from wrapper destroys nothing.
	ml::token c;
	CHECK(c && c.get() != raw);
	c = std::move(b);
	CHECK(c.get() == raw && !b && destroys == 1);
	ml::token &alias = c;
	c = std::move(alias);
	CHECK(c.get() == raw && destroys == 1);
	destroys = 0;
	for (int i = 0; i < 1000; i++) {
		ml::token t;
		ml::token u;
		u = std::move(t);
		ml::token v(std::move(u));
	}
	CHECK(destroys == 2000); // each token once, none twice

	// release() gives the token up: it survives its wrapper.
	ml_token *r;
	destroys = 0;
	{
		ml::token t;
		r = t.release();
		CHECK(!t);
	}
	CHECK(destroys == 0);
	ml_token_set(r);
	CHECK(ml_token_is_set(r));
	ml::token adopted(r);
	CHECK(adopted.is_set());
	destroys = 0;
	adopted.reset();
	CHECK(!adopted && destroys == 1);
	adopted.reset();
	CHECK(destroys == 1);

	// The moved-to token is the one a limit sees.
	{
		ml::token_limit lim(c);
		CHECK(can_malloc(100));
		c.set();
		CHECK(c.is_set() && !can_malloc(100));
		CHECK(lim.leave() == ML_TOKEN_LIMIT);
	}
	// A token set before entering interrupts at once.
	{
		ml::token_limit lim(c.get());
		CHECK(ml_is_interrupted() && !can_malloc(1));
		CHECK(lim.leave() == ML_TOKEN_LIMIT);
	}
}

// ---- unwind ----------------------------------------------------------------

__attribute__((noinline)) static void throws_inside(std::uint64_t limit)
{
	ml::allocation_limit lim(limit);
	grab(100);
	throw std::runtime_error("not a memory error");
}

__attribute__((noinline)) static void interrupted_inside()
{
	ml::token t;
	ml::token_limit outer(t);
	ml::allocation_limit inner(1 << 20);
	t.set();
	grab(100); // throws std::bad_alloc out of both limits
}

static void unwind()
{
	bool caught = false;
	try {
		throws_inside(1000);
	} catch (const std::runtime_error &) {
		caught = true;
		// Outside the limit: more than it allowed succeeds.
		CHECK(can_malloc(1 << 20));
	}
	CHECK(caught && !ml_is_interrupted());

	caught = false;
	try {
		interrupted_inside();
	} catch (const std::bad_alloc &) {
		caught = true;
		// Both limits were left on the way: this handler is outside
		// them and may allocate.
		CHECK(!ml_is_interrupted());
		std::string msg = "caught outside the limits, ";
		msg += std::to_string(nheld) + " block";
		CHECK(msg.size() > 10);
	}
	CHECK(caught && !ml_is_interrupted() && can_malloc(1 << 20));
	// The thread's list of limits is clean: a new one nests and leaves.
	{
		ml::allocation_limit lim(1000);
		CHECK(lim.leave() == ML_OK);
	}
	drop_all();
}

// ---- functions -------------------------------------------------------------

static void functions()
{
	std::uint64_t used = 99;
	int got = 0;
	// The interrupt's bad_alloc escapes f and becomes the status.
	ml_status st = ml::limit_allocations(4096, [&] {
		for (;;) {
			grab(1000);
			got++;
		}
	}, &used);
	CHECK(st == ML_ALLOCATION_LIMIT && got == 4 && used == 4000);
	CHECK(!ml_is_interrupted());
	drop_all();

	// f caught it and returned: the status still names the limit.
	st = ml::limit_allocations(1000, [&] {
		try {
			grab(2000);
		} catch (const std::bad_alloc &) {
		}
	}, &used);
	CHECK(st == ML_ALLOCATION_LIMIT && used == 0);

	// Within the limit: ML_OK and the count.
	st = ml::limit_allocations(1 << 20, [] { grab(300); }, &used);
	CHECK(st == ML_OK && used == 300);
	drop_all();

	// A bad_alloc that no limit raised propagates, and the limit was left.
	bool propagated = false;
	try {
		ml::limit_allocations(1 << 20, [] { throw std::bad_alloc(); });
	} catch (const std::bad_alloc &) {
		propagated = true;
	}
	CHECK(propagated && can_malloc(2 << 20));

	// Other exceptions propagate too, the limit left.
	propagated = false;
	try {
		ml::limit_with_token(ml::token(), [] { throw std::runtime_error("x"); });
	} catch (const std::runtime_error &) {
		propagated = true;
	}
	CHECK(propagated && !ml_is_interrupted());

	// Entering refused: f does not run.
	bool ran = false;
	st = ml::limit_allocations(ML_MAX_ALLOCATION_LIMIT + 1, [&] { ran = true; }, &used);
	CHECK(st == ML_INVALID && !ran && used == 0);

	// A token set from inside f.
	ml::token t;
	st = ml::limit_with_token(t, [&] {
		t.set();
		grab(10);
	});
	CHECK(st == ML_TOKEN_LIMIT && nheld == 0);

	// Nesting: the outer limit fires inside the inner function form, which
	// reports it (never ML_OK); the outer one reports it as well.
	ml_status inner = ML_OK;
	std::uint64_t inner_used = 0;
	st = ml::limit_allocations(3000, [&] {
		inner = ml::limit_allocations(1 << 20, [] {
			for (;;)
				grab(1000);
		}, &inner_used);
		// Still interrupted here: the outer limit fired.
		CHECK(ml_is_interrupted());
	}, &used);
	CHECK(inner == ML_ALLOCATION_LIMIT && st == ML_ALLOCATION_LIMIT);
	CHECK(inner_used == 3000 && used == 3000);
	drop_all();

	// The global memory limit.
	ml_set_global_memory_limit(live_bytes() + (8 << 20));
	st = ml::limit_global_memory([] { grab(16 << 20); });
	ml_set_global_memory_limit(-1);
	CHECK(st == ML_GLOBAL_MEMORY_LIMIT && nheld == 0);
	CHECK(!ml_is_interrupted());
}

// ---- the catch handler -----------------------------------------------------

static void catch_handler(bool mask)
{
	std::vector<std::string> errors;
	errors.reserve(1); // not the handler's allocation below
	ml::allocation_limit lim(1 << 16);
	try {
		for (;;)
			grab(1000);
	} catch (const std::bad_alloc &) {
		std::printf("handler entered\n");
		std::fflush(stdout);
		if (mask) {
			ml::masked m;
			errors.push_back(std::string("out of budget after ") +
					 std::to_string(nheld) + " blocks");
		} else {
			// Throws std::bad_alloc out of the handler: nothing
			// catches it, so std::terminate.
			errors.push_back(std::string("out of budget after ") +
					 std::to_string(nheld) + " blocks");
		}
	}
	CHECK(lim.leave() == ML_ALLOCATION_LIMIT);
	CHECK(errors.size() == 1 && errors[0].find("blocks") != std::string::npos);
	std::printf("%s\n", errors.empty() ? "" : errors[0].c_str());
	drop_all();
}

int main(int argc, char **argv)
{
	std::printf("hpp_raii %s\n", argc > 1 ? argv[1] : "");
	std::fflush(stdout);
	ml_status st = ml_start();
	if (st != ML_OK && st != ML_INVALID) {
		std::printf("ml_start: %s\n", ml_status_string(st));
		return 2;
	}
	const char *what = argc > 1 ? argv[1] : "";
	if (!std::strcmp(what, "scoped"))
		scoped();
	else if (!std::strcmp(what, "masked"))
		masked();
	else if (!std::strcmp(what, "token"))
		token();
	else if (!std::strcmp(what, "unwind"))
		unwind();
	else if (!std::strcmp(what, "functions"))
		functions();
	else if (!std::strcmp(what, "catch-unmasked"))
		catch_handler(false);
	else if (!std::strcmp(what, "catch-masked"))
		catch_handler(true);
	else {
		std::printf("unknown group '%s'\n", what);
		return 2;
	}
	CHECK(!ml_is_interrupted() && !ml_is_blocked());
	std::printf("%s %s\n", failures ? "FAIL" : "PASS", what);
	return failures != 0;
}
