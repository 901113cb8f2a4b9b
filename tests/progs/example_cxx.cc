// example_cxx.cc: a C++ service that runs untrusted work under limits, with
// memlimits.hpp.
//
// The service answers two kinds of requests:
//
//   - "expand": macro expansion of a text with the request's own macro
//     definitions. Definitions can nest, so a small request can ask for an
//     enormous result (the "billion laughs" of XML entities). Each expansion
//     runs under an allocation budget (ml::limit_allocations).
//   - "search": the shortest way to build a word from another with a few
//     moves, by breadth-first search. An unreachable word makes the search
//     run forever, so a watchdog thread sets a token when the deadline
//     passes (ml::token, ml::token_limit).
//
// In C++ an interrupt is std::bad_alloc, thrown by the interrupted
// allocation and by every later allocation of the interrupted work until its
// limit is left. So a catch handler *inside* the limit must not allocate, or
// it throws again, out of the handler (and with nothing to catch that, the
// program aborts). The example shows the three right ways:
//
//   1. the function form, ml::limit_allocations: the bad_alloc that the
//      interrupt raised becomes the returned status, outside the limit, where
//      the reply can be built freely (handle_expand);
//   2. a scoped limit whose catch handler calls leave() before allocating
//      (handle_search);
//   3. a handler deep inside the limited work that must allocate (it logs
//      the search's progress): it masks first, with ml::masked, then
//      rethrows (search).
//
// After each interrupted request the service carries on with the next one.
//
// Build and run (the headers are installed as <memlimits.hpp> and
// <memlimits.h>; in this tree they are in shim/):
//
//     c++ -O2 -pthread example_cxx.cc -o example_cxx -ldl
//     LD_PRELOAD=/path/to/libmemlimits.so ./example_cxx
//
// Exit status: 0 if exactly the billion laughs were stopped by the budget
// and exactly the unreachable search by the deadline, and everything else
// was served.
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "shim/memlimits.h"
#include "shim/memlimits.hpp"

static const std::uint64_t EXPAND_BUDGET = 1 << 20; // bytes per expansion
static const std::chrono::milliseconds DEADLINE(100); // per search

// ---- Macro expansion (the definitions are the client's) --------------------

using macros = std::map<std::string, std::string>;

// Replaces every $NAME in text by the expansion of NAME's definition.
// Throws std::runtime_error on a malformed request, std::bad_alloc when out
// of memory (or interrupted).
static std::string expand(const std::string &text, const macros &defs, int depth = 0)
{
	if (depth > 16)
		throw std::runtime_error("macros nested too deep");
	std::string out;
	for (std::size_t i = 0; i < text.size();) {
		if (text[i] != '$') {
			out += text[i++];
			continue;
		}
		std::size_t j = i + 1;
		while (j < text.size() && std::isalnum(static_cast<unsigned char>(text[j])))
			j++;
		macros::const_iterator d = defs.find(text.substr(i + 1, j - i - 1));
		if (d == defs.end())
			throw std::runtime_error("unknown macro " + text.substr(i, j - i));
		out += expand(d->second, defs, depth + 1);
		i = j;
	}
	return out;
}

// ---- Word search --------------------------------------------------------------

struct search_log {
	std::vector<std::string> lines;
};

// Breadth-first from `from` to `to`; a move appends 'a', appends 'b', or
// reverses the word. Returns the number of words visited. If `to` cannot be
// built (it has another letter), the search never ends by itself.
static unsigned long search(const std::string &from, const std::string &to, search_log &log)
{
	std::deque<std::string> queue(1, from);
	std::unordered_set<std::string> seen{from};
	unsigned long visited = 0;
	try {
		while (!queue.empty()) {
			std::string w = queue.front();
			queue.pop_front();
			visited++;
			if (w == to)
				return visited;
			std::string next[3] = { w + 'a', w + 'b', std::string(w.rbegin(), w.rend()) };
			for (const std::string &n : next)
				if (seen.insert(n).second)
					queue.push_back(n);
		}
	} catch (const std::bad_alloc &) {
		// Pattern 3. This handler runs inside the limit, which was
		// interrupted: unmasked, the log line's allocation would throw
		// std::bad_alloc again, out of this handler. Masked, no limit
		// refuses it (it is still counted). Then rethrow: the caller
		// leaves the limit.
		ml::masked m;
		log.lines.push_back("search stopped after " + std::to_string(visited) +
				    " words, " + std::to_string(seen.size()) + " seen");
		throw;
	}
	throw std::runtime_error("no such word");
}

// Sets a token unless disarmed before its deadline.
class watchdog {
public:
	watchdog(ml::token &t, std::chrono::milliseconds deadline)
		: thread_([this, &t, deadline] {
			  std::unique_lock<std::mutex> lock(mutex_);
			  if (!wake_.wait_for(lock, deadline, [this] { return done_; }))
				  t.set();
		  })
	{
	}
	~watchdog()
	{
		{
			std::lock_guard<std::mutex> lock(mutex_);
			done_ = true;
		}
		wake_.notify_one();
		thread_.join();
	}

private:
	std::mutex mutex_;
	std::condition_variable wake_;
	bool done_ = false;
	std::thread thread_; // last: starts once the members above exist
};

// ---- The service --------------------------------------------------------------

enum class outcome { served, malformed, budget, deadline };

static outcome handle_expand(const std::string &text, const macros &defs)
{
	std::string result;
	std::uint64_t used = 0;
	ml_status st;
	try {
		// Pattern 1: expand's std::bad_alloc, when the budget raised it,
		// comes back as the status.
		st = ml::limit_allocations(EXPAND_BUDGET, [&] { result = expand(text, defs); },
					   &used);
	} catch (const std::runtime_error &e) {
		std::printf("  malformed: %s\n", e.what());
		return outcome::malformed;
	}
	// Outside the limit: building the reply may allocate.
	if (st != ML_OK) {
		std::printf("  rejected (%s) after %llu bytes\n", ml_status_string(st),
			    static_cast<unsigned long long>(used));
		return outcome::budget;
	}
	std::string shown = result.size() > 40 ? result.substr(0, 37) + "..." : result;
	std::printf("  \"%s\" (%zu bytes; %llu allocated)\n", shown.c_str(), result.size(),
		    static_cast<unsigned long long>(used));
	return outcome::served;
}

static outcome handle_search(const std::string &from, const std::string &to)
{
	search_log log;
	log.lines.reserve(4);
	ml::token cancel;
	watchdog w(cancel, DEADLINE);
	ml::token_limit lim(cancel);
	outcome o = outcome::served;
	try {
		unsigned long visited = search(from, to, log);
		lim.leave();
		std::printf("  found after %lu words\n", visited);
	} catch (const std::bad_alloc &) {
		// Pattern 2: leave the limit before anything allocates. Then
		// the reply can be built (without the leave(), this string
		// would throw std::bad_alloc out of the handler).
		ml_status st = lim.leave();
		std::string reply = "cancelled (" + std::string(ml_status_string(st)) + ")";
		std::printf("  %s\n", reply.c_str());
		o = st == ML_TOKEN_LIMIT ? outcome::deadline : outcome::budget;
	} catch (const std::runtime_error &e) {
		lim.leave();
		std::printf("  malformed: %s\n", e.what());
		o = outcome::malformed;
	}
	for (const std::string &line : log.lines)
		std::printf("  log: %s\n", line.c_str());
	return o;
}

struct request {
	std::string what;
	std::string a, b; // expand: the text, ""; search: from, to
	macros defs;
	outcome expected;
};

int main()
{
	ml_status st = ml_start();
	if (st != ML_OK && st != ML_INVALID) { // ML_INVALID: already started
		std::printf("memlimits: %s\n", ml_status_string(st));
		return 1;
	}
	macros laughs{ { "lol0", "lol" } }; // $lol9: 10^9 times "lol"
	for (int n = 1; n <= 9; n++) {
		std::string def;
		for (int k = 0; k < 10; k++)
			def += "$lol" + std::to_string(n - 1);
		laughs["lol" + std::to_string(n)] = def;
	}
	const request requests[] = {
		{ "expand", "Dear $who, $hi", "", { { "who", "Alice" }, { "hi", "hello!" } }, outcome::served },
		{ "search", "a", "abba", {}, outcome::served },
		{ "expand", "<doc>$lol9</doc>", "", laughs, outcome::budget },
		{ "expand", "$nope", "", {}, outcome::malformed },
		{ "search", "ab", "abc", {}, outcome::deadline },
		{ "expand", "$x$x$x", "", { { "x", "$y-" }, { "y", "ok" } }, outcome::served },
		{ "search", "b", "babba", {}, outcome::served },
	};
	unsigned served = 0, stopped = 0, unexpected = 0, i = 0;
	for (const request &r : requests) {
		bool is_search = r.what == "search";
		std::printf("request %u: %s %s%s%s\n", ++i, r.what.c_str(), r.a.c_str(),
			    is_search ? " -> " : "", r.b.c_str());
		outcome o = is_search ? handle_search(r.a, r.b) : handle_expand(r.a, r.defs);
		served += o == outcome::served;
		stopped += o == outcome::budget || o == outcome::deadline;
		unexpected += o != r.expected;
	}
	std::printf("%u requests: %u served, %u stopped by a limit\n", i, served, stopped);
	if (unexpected) {
		std::printf("%u requests were not handled as expected\n", unexpected);
		return 1;
	}
	return 0;
}
