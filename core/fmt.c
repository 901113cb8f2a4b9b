/* fmt.c: a few formatters that use neither stdio nor malloc, for messages
 * written from the allocation path and at exit. Output is truncated, never
 * overflowed. */
#include <errno.h>
#include <unistd.h>

#include "internal.h"

void mli_buf_str(struct mli_buf *b, const char *s)
{
	while (*s && b->len + 1 < b->cap)
		b->p[b->len++] = *s++;
	if (b->cap)
		b->p[b->len] = '\0';
}

void mli_buf_u64(struct mli_buf *b, uint64_t v)
{
	char tmp[24];
	int i = sizeof tmp - 1;
	tmp[i] = '\0';
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	mli_buf_str(b, tmp + i);
}

void mli_buf_i64(struct mli_buf *b, int64_t v)
{
	if (v < 0) {
		mli_buf_str(b, "-");
		mli_buf_u64(b, (uint64_t)0 - (uint64_t)v);
	} else
		mli_buf_u64(b, (uint64_t)v);
}

void mli_buf_size(struct mli_buf *b, uint64_t v)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	int u = 0;
	while (u < 6 && v >> (10 * (u + 1)))
		u++;
	uint64_t whole = v >> (10 * u);
	/* Tenths from the remainder of the value itself (truncated), not from
	 * an already truncated quotient. */
	uint64_t tenths = u ? (v & ((1ull << (10 * u)) - 1)) * 10 >> (10 * u) : 0;
	mli_buf_u64(b, whole);
	if (u) {
		mli_buf_str(b, ".");
		mli_buf_u64(b, tenths);
	}
	mli_buf_str(b, " ");
	mli_buf_str(b, unit[u]);
}

void mli_write_all(int fd, const char *p, size_t n)
{
	int saved = errno;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		p += w;
		n -= (size_t)w;
	}
	errno = saved;
}
