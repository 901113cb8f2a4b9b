/* zero_token_signal: a task making only malloc(0), whose token a SIGALRM
 * handler (which itself allocates 0 bytes) sets after 200 signals; 20
 * rounds. The handler's allocation could land inside the engine's cut of
 * the grant (mli_poke, from the activity callback) and leave `left` above
 * `grant`, after which the task ran on past its token for ever (3 runs of
 * 4 hung). Prints "rounds=N" of rounds that ended with the token's status;
 * a hang is the caller's timeout. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

#include "shim/memlimits.h"

static ml_token *tok;
static volatile sig_atomic_t nsig;

static void on_alarm(int sig)
{
	(void)sig;
	free(malloc(0));
	if (++nsig == 200)
		ml_token_set(tok);
}

static void *task(void *arg)
{
	(void)arg;
	for (;;) {
		void *p = malloc(0);
		if (!p)
			break;
		free(p);
	}
	return NULL;
}

int main(void)
{
	ml_start();
	struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = SA_RESTART };
	sigaction(SIGALRM, &sa, NULL);
	int ok = 0;
	for (int round = 0; round < 20; round++) {
		tok = ml_token_create();
		nsig = 0;
		struct itimerval it = { { 0, 100 }, { 0, 100 } };
		setitimer(ITIMER_REAL, &it, NULL);
		ml_status st = ml_limit_with_token(tok, task, NULL, NULL);
		struct itimerval off = { { 0, 0 }, { 0, 0 } };
		setitimer(ITIMER_REAL, &off, NULL);
		ok += st == ML_TOKEN_LIMIT;
		ml_token_destroy(tok);
	}
	printf("rounds=%d\n", ok);
	return 0;
}
