/* cxx_local LIB: a C program that loads a C++ library (libcxxlocal.so)
 * with RTLD_LOCAL, so that libstdc++ is in none of the global scope: the
 * library's operator new finds the runtime in its caller's dependencies
 * (preload/cxx.c). Prints what the library checked and "N failures". */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		printf("FAIL: dlopen: %s\n1 failures\n", dlerror());
		return 1;
	}
	/* the runtime is not in the global scope: the fallback is what runs */
	int global = dlsym(RTLD_DEFAULT, "_ZSt15get_new_handlerv") != NULL;
	printf("%s: libstdc++ is not in the global scope\n", global ? "FAIL" : "ok");
	int (*run)(void) = (int (*)(void))dlsym(h, "cxxlocal_run");
	int failures = (run ? run() : 1) + global;
	printf("%d failures\n", failures);
	return failures ? 1 : 0;
}
