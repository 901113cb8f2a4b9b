/* libhostile_exit.so: preloaded after libmemlimits.so
 * (LD_PRELOAD="libmemlimits.so libhostile_exit.so"), so that its constructor
 * runs before the engine's and the exit handler it registers runs after
 * every handler registered later: after the engine's exit report. The
 * constructor allocates before the engine's constructor ran; the handler
 * allocates after the report was written, uses the task API, and says so on
 * stderr ("libhostile_exit: after-report ok" or "... FAILED: why"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim/memlimits.h"

static void *early;

static void say(const char *s)
{
	if (write(2, s, strlen(s)) < 0)
		_exit(98);
}

static __attribute__((noinline)) void *xmalloc(size_t n)
{
	void *p = malloc(n);
	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}

static void *ten_blocks(void *arg)
{
	unsigned *ok = arg;
	for (int i = 0; i < 10; i++) {
		void *p = xmalloc(1000);
		if (!p)
			break;
		++*ok;
		free(p);
	}
	return NULL;
}

static void after_report(void)
{
	char why[256] = "";
	void *blocks[64];
	int n = 0;
	for (; n < 64; n++) {
		blocks[n] = xmalloc((size_t)1 << (n % 21)); /* up to 1 MiB */
		if (!blocks[n]) {
			snprintf(why, sizeof why, "malloc of %zu bytes failed",
				 (size_t)1 << (n % 21));
			break;
		}
		memset(blocks[n], 1, (size_t)1 << (n % 21));
	}
	while (n)
		free(blocks[--n]);
	char *s = xmalloc(10);
	s = realloc(s, 100000); /* grows */
	if (!s && !why[0])
		snprintf(why, sizeof why, "realloc failed");
	free(s);
	free(early);
	struct ml_stats st;
	if (!why[0] && ml_stats(&st) != ML_OK)
		snprintf(why, sizeof why, "ml_stats failed");
	unsigned ok = 0;
	uint64_t used = 0;
	ml_status r = ml_limit_allocations(5500, ten_blocks, &ok, NULL, &used);
	if (!why[0] && (r != ML_ALLOCATION_LIMIT || used != 5000 || ok != 5))
		snprintf(why, sizeof why, "task: status %d, used %llu, ok %u", r,
			 (unsigned long long)used, ok);
	char line[320];
	snprintf(line, sizeof line, "libhostile_exit: after-report %s%s\n",
		 why[0] ? "FAILED: " : "ok", why);
	say(line);
}

__attribute__((constructor)) static void lib_ctor(void)
{
	early = xmalloc(4096); /* before the engine's constructor */
	if (!early)
		say("libhostile_exit: ctor FAILED: malloc\n");
	atexit(after_report);
}
