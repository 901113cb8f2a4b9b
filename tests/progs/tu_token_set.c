/* tu_token_set.c: the second translation unit of token_elsewhere. It makes
 * no ml_* call but ml_token_set, as a watchdog's or a signal handler's file
 * would: its own copy of the header's static table was never filled. */
#include "shim/memlimits.h"

void tu_token_set(ml_token *t);
void tu_token_set(ml_token *t)
{
	ml_token_set(t);
}
