/* stk.h: the body of libstk_small.so and libstk_big.so, two libraries
 * with the same code but for their frame size, so that one loaded where
 * the other was has its return addresses at the same places with other
 * unwind rules (prof_stacks checks that stacks stay right). */
#include <stddef.h>

void *stk_call(void *(*cb)(size_t), size_t n)
{
	volatile char buf[FRAME];
	buf[0] = (char)n;
	void *p = cb(n);
	buf[FRAME - 1] = buf[0];
	return p;
}
