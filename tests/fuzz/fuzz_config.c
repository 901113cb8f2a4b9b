/* fuzz_config: libFuzzer target for the MEMLIMITS_* parser. The input is a
 * list of environment entries separated by newlines; the parser must never
 * crash, overflow its error buffer or accept a size it cannot print back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

static void check_size(const char *s)
{
	uint64_t v;
	if (mli_parse_size(s, &v) != 0)
		return;
	if (v > MLI_SIZE_MAX)
		abort();
	/* Whatever parses must print as plain bytes and parse back. */
	char buf[32];
	struct mli_buf b = { buf, 0, sizeof buf };
	mli_buf_u64(&b, v);
	uint64_t w;
	if (mli_parse_size(buf, &w) != 0 || w != v)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	check_size(text);
	char *env[64];
	size_t n = 0;
	for (char *p = text, *nl; p && n < 63; p = nl ? nl + 1 : NULL) {
		nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		env[n++] = p;
		const char *eq = strchr(p, '=');
		if (eq)
			check_size(eq + 1);
	}
	env[n] = NULL;
	static const size_t lens[] = { 1, 7, 64, 512 };
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		char err[512 + 16];
		memset(err, 'G', sizeof err);
		struct mli_config c;
		int r = mli_config_read(env, &c, err, lens[i]);
		if (r != 0 && r != -1)
			abort();
		if (r == -1 && !memchr(err, '\0', lens[i]))
			abort(); /* the message must be terminated inside the buffer */
		for (size_t k = lens[i]; k < sizeof err; k++)
			if (err[k] != 'G')
				abort(); /* written past errlen */
		if (r == 0 && (c.global_memory < -1 || c.allocations < -1 ||
			       c.thread_allocations < -1))
			abort();
	}
	free(text);
	return 0;
}
