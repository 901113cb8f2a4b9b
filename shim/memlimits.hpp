// memlimits.hpp: C++ RAII over memlimits.h (C++11 and later).
//
// Header-only, like memlimits.h, which it includes and which documents every
// rule (tasks, nesting, masking, tokens); this header only ties those calls
// to object lifetimes. It links nothing new (-ldl where the libc wants it).
//
//   ml::allocation_limit lim(bytes);  ml::global_memory_limit lim;
//   ml::token_limit lim(token);
//        A scoped limit: entered by the constructor, left by lim.leave() or
//        else by the destructor. lim.status() and lim.allocated() hold what
//        leaving returned.
//   ml::masked m;
//        Masked from here to the end of the block (ml_mask/ml_unmask).
//   ml::token t;
//        Owns an ml_token: non-copyable, movable, destroyed with the object.
//   ml::limit_allocations(bytes, f, &allocated), ml::limit_global_memory(f),
//   ml::limit_with_token(t, f)
//        Run f() under a limit and return the status; a std::bad_alloc that
//        the interrupt raised and f let escape becomes that status.
//
// INTERRUPTS IN C++
// An interrupted allocation throws std::bad_alloc (operator new; malloc
// returns NULL), and so does *every* later unmasked allocation of the
// interrupted task until its limit is left. A catch handler that runs inside
// the limit and allocates (builds a message, logs, pushes an error into a
// vector) therefore throws std::bad_alloc again, out of the handler; with no
// handler further out, or through a noexcept function, that is
// std::terminate, and the program aborts. Three patterns are right:
//
//  1. Catch outside the limit. The function forms do it for you:
//
//         ml_status st = ml::limit_allocations(16 << 20, [&] { doc = parse(req); });
//         if (st != ML_OK)
//                 log("rejected: " + std::string(ml_status_string(st)));
//
//     With a scoped limit, leave it first thing in the handler; leave()
//     allocates nothing, and from then on allocations are outside the limit:
//
//         ml::allocation_limit lim(16 << 20);
//         try {
//                 doc = parse(req);
//         } catch (const std::bad_alloc &) {
//                 lim.leave();
//                 log("rejected: " + std::string(ml_status_string(lim.status())));
//         }
//
//  2. Mask inside the handler before allocating, when the handler must run
//     inside the limit (deep in the task). Masked allocations cannot fail
//     because of a task limit (they are still counted); the interrupt stays
//     pending, so after the handler the task should return, not carry on:
//
//         } catch (const std::bad_alloc &) {
//                 ml::masked m;
//                 errors.push_back("parse: out of budget");
//         }
//
//  3. Allocate nothing in the handler: set a flag, return, and report
//     outside.
//
// Masking does not lift the environment's hard caps (MEMLIMITS_*), and a
// real out-of-memory still fails: a handler that must never throw still
// needs a catch of its own. tests/progs/example_cxx.cc is a complete program.
//
// RULES
// - Scoped limits and masked blocks are stack objects (operator new is
//   deleted): they must end in the reverse order of their start, in the
//   thread that started them, which automatic variables do. They can be
//   neither copied nor moved (the engine links the scope by its address).
// - A token must outlive the limits that use it; token_limit refuses a
//   temporary ml::token at compile time.
// - Nothing here throws, except what f throws in the function forms. The
//   function forms are not noexcept for that reason; everything else is.
// - Without the preload every scoped limit fails to enter (ML_NOT_LOADED),
//   the function forms return ML_NOT_LOADED without running f (as the C task
//   functions do), tokens are empty and masking does nothing.
#ifndef MEMLIMITS_HPP
#define MEMLIMITS_HPP

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include "memlimits.h"

namespace ml {

// True for the statuses of an interrupt (a limit fired); false for ML_OK
// and for the statuses of a call that did not run.
inline constexpr bool is_interrupt(ml_status s) noexcept
{
	return s == ML_GLOBAL_MEMORY_LIMIT || s == ML_ALLOCATION_LIMIT ||
	       s == ML_TOKEN_LIMIT;
}

// An owned ml_token: created by the constructor, destroyed by the
// destructor. Empty (false) if the engine is not loaded or out of memory;
// a token_limit on an empty token does not enter (ML_INVALID, or
// ML_NOT_LOADED). Move-only: a moved-from token is empty.
class token {
public:
	token() noexcept : t_(ml_token_create()) {}
	// Adopts a token from ml_token_create (may be null).
	explicit token(ml_token *adopt) noexcept : t_(adopt) {}
	~token() { reset(); }
	token(token &&o) noexcept : t_(o.t_) { o.t_ = nullptr; }
	token &operator=(token &&o) noexcept
	{
		if (this != &o) {
			reset();
			t_ = o.t_;
			o.t_ = nullptr;
		}
		return *this;
	}
	token(const token &) = delete;
	token &operator=(const token &) = delete;

	// Sets the token: a lock-free store, safe from any thread and from a
	// signal handler. No effect on an empty token.
	void set() noexcept { ml_token_set(t_); }
	bool is_set() const noexcept { return ml_token_is_set(t_); }
	explicit operator bool() const noexcept { return t_ != nullptr; }
	ml_token *get() const noexcept { return t_; }
	// Gives up ownership: the caller destroys the result.
	ml_token *release() noexcept
	{
		ml_token *t = t_;
		t_ = nullptr;
		return t;
	}
	// Destroys the token now (it must no longer be in use) and empties it.
	void reset() noexcept
	{
		if (t_)
			ml_token_destroy(t_);
		t_ = nullptr;
	}

private:
	ml_token *t_;
};

// The part the three scoped limits share.
class scoped_limit {
public:
	scoped_limit(const scoped_limit &) = delete;
	scoped_limit &operator=(const scoped_limit &) = delete;
	static void *operator new(std::size_t) = delete;
	static void *operator new[](std::size_t) = delete;

	// Entered, and not yet left.
	bool active() const noexcept { return active_; }

	// Leaves the limit and returns its status (ml_leave's). After that,
	// and if entering failed, returns status() and does nothing. While an
	// inner limit of this thread is still entered it returns ML_INVALID and
	// leaves nothing: the limit stays active and can be left later. The
	// destructor leaves it in any case: inner limits still entered then
	// (an error path that forgot ml_leave) are dropped (ml_leave_all).
	ml_status leave() noexcept
	{
		if (!active_)
			return status_;
		std::uint64_t used = 0;
		ml_status st = ml_leave(&scope_, &used);
		if (st == ML_INVALID)
			return st;
		active_ = false;
		status_ = st;
		allocated_ = used;
		return st;
	}

	// While active, ML_OK. Once left: the limit's status, ML_OK or the
	// limit that fired (see memlimits.h on nesting). If entering failed:
	// why (ML_NOT_LOADED, ML_NOT_STARTED, ML_INVALID).
	ml_status status() const noexcept { return status_; }

	// Once left: the bytes allocated inside the limit (as ml_leave counts
	// them). 0 before, and if entering failed.
	std::uint64_t allocated() const noexcept { return allocated_; }

protected:
	scoped_limit() noexcept : status_(ML_INVALID), allocated_(0), active_(false) {}
	// Not virtual: scoped limits are never destroyed through this class.
	~scoped_limit()
	{
		if (active_ && leave() == ML_INVALID)
			ml_leave_all(&scope_, nullptr);
	}
	void entered(ml_status st) noexcept
	{
		status_ = st;
		active_ = st == ML_OK;
	}
	ml_scope scope_;

private:
	ml_status status_;
	std::uint64_t allocated_;
	bool active_;
};

// Allocations inside may total at most `bytes` (ml_enter_allocations).
class allocation_limit : public scoped_limit {
public:
	explicit allocation_limit(std::uint64_t bytes) noexcept
	{
		entered(ml_enter_allocations(&scope_, bytes));
	}
};

// Interrupted while the process heap is over the global limit
// (ml_enter_global_memory; the limit is ml_set_global_memory_limit's).
class global_memory_limit : public scoped_limit {
public:
	global_memory_limit() noexcept { entered(ml_enter_global_memory(&scope_)); }
};

// Interrupted once the token is set (ml_enter_token). The token must outlive
// the limit.
class token_limit : public scoped_limit {
public:
	explicit token_limit(const token &t) noexcept { entered(ml_enter_token(&scope_, t.get())); }
	explicit token_limit(ml_token *t) noexcept { entered(ml_enter_token(&scope_, t)); }
	token_limit(const token &&) = delete; // a temporary would die first
};

// Masked from construction to destruction (ml_mask/ml_unmask): no
// allocation of this thread fails because of a task limit meanwhile.
class masked {
public:
	masked() noexcept { ml_mask(); }
	~masked() { ml_unmask(); }
	masked(const masked &) = delete;
	masked &operator=(const masked &) = delete;
	static void *operator new(std::size_t) = delete;
	static void *operator new[](std::size_t) = delete;
};

namespace detail {
// Runs f inside the entered limit s and returns s's status. A bad_alloc
// that escapes f while s reports an interrupt is that interrupt: it is
// caught here, outside f, and becomes the status. Any other exception
// leaves s (s's destructor) and propagates.
template <class F>
ml_status run_in(scoped_limit &s, F &&f)
{
	if (!s.active())
		return s.status();
	try {
		std::forward<F>(f)();
	} catch (const std::bad_alloc &) {
		// Allocates nothing: still inside the limit here.
		ml_status st = s.leave();
		if (!is_interrupt(st))
			throw;
		return st;
	}
	return s.leave();
}
} // namespace detail

// f() under an allocation limit of `bytes`. Returns ML_OK or the limit that
// fired (also when f caught the bad_alloc itself and returned); ML_NOT_LOADED,
// ML_NOT_STARTED or ML_INVALID (bytes > ML_MAX_ALLOCATION_LIMIT) without
// running f. *allocated (may be null) gets the bytes f allocated, also on an
// interrupt. f's return value is discarded: capture what it produces.
template <class F>
ml_status limit_allocations(std::uint64_t bytes, F &&f, std::uint64_t *allocated = nullptr)
{
	allocation_limit s(bytes);
	ml_status st = detail::run_in(s, std::forward<F>(f));
	if (allocated)
		*allocated = s.allocated();
	return st;
}

// f() under the global memory limit (ml_set_global_memory_limit).
template <class F>
ml_status limit_global_memory(F &&f)
{
	global_memory_limit s;
	return detail::run_in(s, std::forward<F>(f));
}

// f() under token t: interrupted at its next allocation after t.set().
template <class F>
ml_status limit_with_token(const token &t, F &&f)
{
	token_limit s(t);
	return detail::run_in(s, std::forward<F>(f));
}

template <class F>
ml_status limit_with_token(ml_token *t, F &&f)
{
	token_limit s(t);
	return detail::run_in(s, std::forward<F>(f));
}

} // namespace ml

#endif // MEMLIMITS_HPP
