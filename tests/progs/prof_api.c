/* prof_api: the contract of ml_memprof_start / ml_memprof_stop. Prints one
 * "name=status" line per check (the ml_status number); test_prof.c compares
 * them with the expected statuses. Run under libmemlimits-prof.so for the
 * full set, under the default library or without preload for "start". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/memlimits.h"

static void *on_alloc(const ml_sample *s, void *data)
{
	(void)s;
	(void)data;
	return NULL;
}

static void show(const char *name, ml_status st)
{
	printf("%s=%d\n", name, (int)st);
}

int main(int argc, char **argv)
{
	ml_tracker tr = { on_alloc, NULL, NULL };
	if (argc > 1 && strcmp(argv[1], "start") == 0) {
		/* Only the status of a first start (default build / no preload). */
		show("start", ml_memprof_start(0.01, 8, &tr));
		return 0;
	}
	ml_tracker no_alloc = { NULL, NULL, NULL };
	show("stop_not_started", ml_memprof_stop());
	show("rate_negative", ml_memprof_start(-0.1, 8, &tr));
	show("rate_above_one", ml_memprof_start(1.5, 8, &tr));
	show("rate_nan", ml_memprof_start(nan(""), 8, &tr));
	show("rate_inf", ml_memprof_start(INFINITY, 8, &tr));
	show("null_tracker", ml_memprof_start(0.01, 8, NULL));
	show("null_alloc", ml_memprof_start(0.01, 8, &no_alloc));
	/* None of the refused starts left a profiler running. */
	show("stop_after_invalid", ml_memprof_stop());
	show("start_zero_rate", ml_memprof_start(0.0, 8, &tr));
	show("stop_zero_rate", ml_memprof_stop());
	show("start", ml_memprof_start(0.01, 8, &tr));
	show("start_twice", ml_memprof_start(0.01, 8, &tr));
	show("stop", ml_memprof_stop());
	show("stop_twice", ml_memprof_stop());
	show("restart", ml_memprof_start(1.0, ML_MAX_CALLSTACK + 100, &tr));
	free(malloc(100)); /* sampled at rate 1 with an oversized depth */
	show("restop", ml_memprof_stop());
	return 0;
}
