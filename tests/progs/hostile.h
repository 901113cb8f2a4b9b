/* hostile.h: what the hostile-conditions helpers share: a failure counter
 * and a report that uses write(2) only (it may run in a signal handler or
 * after the exit report). */
#ifndef MLT_HOSTILE_H
#define MLT_HOSTILE_H
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static atomic_int failures;

static void fail(const char *fmt, ...)
{
	char b[512];
	int n = snprintf(b, sizeof b, "FAIL ");
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(b + n, sizeof b - (size_t)n, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof b - 2)
		n = (int)sizeof b - 2;
	b[n++] = '\n';
	if (write(2, b, (size_t)n) < 0)
		_exit(99);
	atomic_fetch_add(&failures, 1);
}
#define CHECK(c, ...) do { if (!(c)) fail(__VA_ARGS__); } while (0)

#endif
