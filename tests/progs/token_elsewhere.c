/* token_elsewhere.c: a token set by code that made no other ml_* call (the
 * header's table is per translation unit): from another file of the
 * program (tu_token_set.c), from its signal handler, and from a shared
 * library (libtokset.so). Each must interrupt the task at its next
 * allocation. Prints one "ok NAME" or "FAIL NAME: why" line per case. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "shim/memlimits.h"

void tu_token_set(ml_token *t);
void lib_token_set(ml_token *t);

static ml_token *tok;
static void (*setter)(ml_token *);
static int via_signal;

static void on_signal(int sig)
{
	(void)sig;
	tu_token_set(tok);
}

struct outcome {
	int before;   /* allocations that succeeded before the set */
	int after_ok; /* allocations that succeeded after it */
};

static void *task(void *arg)
{
	struct outcome *o = arg;
	for (int i = 0; i < 100; i++) {
		void *p = malloc(64);
		if (!p)
			return NULL;
		free(p);
		o->before++;
	}
	if (via_signal)
		raise(SIGUSR1);
	else
		setter(tok);
	for (int i = 0; i < 100; i++) {
		void *p = malloc(64);
		if (!p)
			break;
		free(p);
		o->after_ok++;
	}
	return NULL;
}

static int run(const char *name, void (*set)(ml_token *), int sig)
{
	tok = ml_token_create();
	if (!tok) {
		printf("FAIL %s: no token\n", name);
		return 1;
	}
	setter = set;
	via_signal = sig;
	struct outcome o = { 0, 0 };
	ml_status st = ml_limit_with_token(tok, task, &o, NULL);
	ml_token_destroy(tok);
	if (st != ML_TOKEN_LIMIT || o.before != 100 || o.after_ok != 0) {
		printf("FAIL %s: status \"%s\", %d allocations before the set, "
		       "%d after it\n", name, ml_status_string(st), o.before,
		       o.after_ok);
		return 1;
	}
	printf("ok %s\n", name);
	return 0;
}

int main(void)
{
	if (ml_start() != ML_OK) {
		printf("FAIL start: engine not loaded\n");
		return 1;
	}
	signal(SIGUSR1, on_signal);
	int bad = run("other-file", tu_token_set, 0);
	bad += run("other-file-signal-handler", NULL, 1);
	bad += run("shared-library", lib_token_set, 0);
	return bad;
}
