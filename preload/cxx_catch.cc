// cxx_catch.cc: the one thing the C++ operators (cxx.c) cannot do in C:
// catch the exception a new_handler throws, for the nothrow forms.
//
// No header and no libstdc++ at link time: the build renames this object's
// references to the runtime (__gxx_personality_v0, __cxa_begin_catch,
// __cxa_end_catch; see the Makefile) to cxx.c's trampolines, which call the
// program's own runtime, found when a nothrow new first calls a handler.
// catch (...) as libstdc++'s nothrow forms do: they are noexcept, so any
// exception ends in a null pointer.
extern "C" __attribute__((visibility("hidden"))) int
mli_cxx_catch(void (*fn)(void *), void *arg) noexcept
{
	try {
		fn(arg);
		return 0;
	} catch (...) {
		return -1;
	}
}
