/* libtokset.c: a shared library that is given a token and sets it, making
 * no other ml_* call (token_elsewhere links it). */
#include "shim/memlimits.h"

void lib_token_set(ml_token *t);
void lib_token_set(ml_token *t)
{
	ml_token_set(t);
}
