#define FRAME 2000
#include "stk.h"
