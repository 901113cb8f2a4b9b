/* gen.c: writes the input of the sort workload to stdout: MIB mebibytes of
 * text lines (fixed seed, so the file is the same on every machine): a
 * random word of 4..40 letters, a tab, a number, a tab, and 0..60 more
 * characters. Some words repeat, as keys in real data do.
 *
 *     gen MIB > file */
#include <string.h>

#include "bench.h"

int main(int argc, char **argv)
{
	long mib = arg_long(argc, argv, 1, 256);
	struct rng r;
	rng_seed(&r, 42);
	static const char alpha[] =
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	static char buf[1 << 16];
	static char keys[4096][41];
	for (int i = 0; i < 4096; i++) {
		int n = (int)rng_range(&r, 4, 40);
		for (int j = 0; j < n; j++)
			keys[i][j] = alpha[rng_next(&r) % 52];
		keys[i][n] = '\0';
	}
	long long want = (long long)mib << 20, done = 0;
	size_t len = 0;
	while (done < want) {
		char line[160];
		int n = 0;
		uint64_t x = rng_next(&r);
		if (x & 3) { /* a fresh word */
			int w = (int)rng_range(&r, 4, 40);
			for (int j = 0; j < w; j++)
				line[n++] = alpha[rng_next(&r) % 52];
		} else { /* a repeated key */
			const char *k = keys[(x >> 2) % 4096];
			size_t kl = strlen(k);
			memcpy(line + n, k, kl);
			n += (int)kl;
		}
		n += snprintf(line + n, 40, "\t%llu\t",
			      (unsigned long long)(rng_next(&r) % 1000000007));
		int tail = (int)rng_range(&r, 0, 60);
		for (int j = 0; j < tail; j++)
			line[n++] = alpha[rng_next(&r) % 62];
		line[n++] = '\n';
		if (len + (size_t)n > sizeof buf) {
			if (fwrite(buf, 1, len, stdout) != len)
				return 1;
			len = 0;
		}
		memcpy(buf + len, line, (size_t)n);
		len += (size_t)n;
		done += n;
	}
	if (fwrite(buf, 1, len, stdout) != len)
		return 1;
	return 0;
}
