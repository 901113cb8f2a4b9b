/* libmapctor.so: a library whose constructor maps memory (a plugin that
 * sets up its arena at load). dlopen runs it holding the loader's lock, and
 * its mmap takes the mapped-memory account's lock: a fork's prepare handler
 * that held the account's lock and then looked a symbol up (the loader's
 * lock) deadlocked with it (tests/test_prof.c). */
#include <sys/mman.h>

static void *area;

__attribute__((constructor)) static void map_at_load(void)
{
	area = mmap(0, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

__attribute__((destructor)) static void unmap_at_unload(void)
{
	if (area != MAP_FAILED)
		munmap(area, 1 << 16);
}
