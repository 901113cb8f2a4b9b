#define FRAME 3000
#include "stk.h"
