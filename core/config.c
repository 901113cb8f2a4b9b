/* config.c: reads the MEMLIMITS_* environment. Runs before main (and maybe
 * before any constructor, from the first malloc), so it must not allocate:
 * it walks envp itself and formats errors into a caller's buffer. A typo or a
 * malformed value is an error, never a silent default. */
#include <string.h>

#include "internal.h"

int mli_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;
	if (!s || *p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (MLI_SIZE_MAX - d) / 10) {
			while (*p >= '0' && *p <= '9')
				p++;
			goto range; /* still reject a malformed tail first */
		}
		v = v * 10 + d;
	}
	unsigned shift = 0;
	switch (*p) {
	case 'K': case 'k': shift = 10; break;
	case 'M': case 'm': shift = 20; break;
	case 'G': case 'g': shift = 30; break;
	case 'T': case 't': shift = 40; break;
	case '\0': break;
	default: return -1;
	}
	if (shift) {
		p++;
		if (p[0] == 'i' && p[1] == 'B')
			p += 2;
		if (*p)
			return -1;
		if (v > (MLI_SIZE_MAX >> shift))
			return -2;
		v <<= shift;
	}
	*out = v;
	return 0;
range:
	if (*p == 'K' || *p == 'k' || *p == 'M' || *p == 'm' || *p == 'G' ||
	    *p == 'g' || *p == 'T' || *p == 't') {
		p++;
		if (p[0] == 'i' && p[1] == 'B')
			p += 2;
	}
	return *p ? -1 : -2;
}

static void errmsg(char *err, size_t errlen, const char *a, const char *b,
		   const char *c)
{
	struct mli_buf m = { err, 0, errlen };
	mli_buf_str(&m, "memlimits: ");
	mli_buf_str(&m, a);
	mli_buf_str(&m, b);
	mli_buf_str(&m, c);
}

/* Variables the library knows. MEMLIMITS_LIBRARY belongs to the memlimit
 * wrapper and is accepted so that nested wrappers work. */
enum var { V_GLOBAL, V_ALLOC, V_THREAD, V_ON_LIMIT, V_REPORT, V_LIBRARY,
	   V_PROFILE, V_INTERVAL, V_SEED, V_N };
static const char *const var_names[V_N] = {
	"MEMLIMITS_GLOBAL_MEMORY", "MEMLIMITS_ALLOCATIONS",
	"MEMLIMITS_THREAD_ALLOCATIONS", "MEMLIMITS_ON_LIMIT",
	"MEMLIMITS_REPORT", "MEMLIMITS_LIBRARY", "MEMLIMITS_PROFILE",
	"MEMLIMITS_SAMPLE_INTERVAL", "MEMLIMITS_SEED",
};

static int size_var(const char *name, const char *val, int64_t *dst,
		    char *err, size_t errlen)
{
	uint64_t v;
	int r = mli_parse_size(val, &v);
	if (r == 0) {
		*dst = (int64_t)v;
		return 0;
	}
	struct mli_buf m = { err, 0, errlen };
	mli_buf_str(&m, "memlimits: ");
	mli_buf_str(&m, name);
	mli_buf_str(&m, "='");
	mli_buf_str(&m, val);
	mli_buf_str(&m, r == -2 ? "' is out of range (at most 8 EiB - 1 bytes)"
				: "' is not a size: expected bytes, or a number with"
				  " K, M, G or T (optionally followed by iB), e.g. 64M");
	return -1;
}

int mli_config_read(char *const *envp, struct mli_config *c, char *err,
		    size_t errlen)
{
	memset(c, 0, sizeof *c);
	c->global_memory = c->allocations = c->thread_allocations = -1;
	c->on_limit = MLI_ON_LIMIT_FAIL;
	static const char prefix[] = "MEMLIMITS_";
	for (char *const *e = envp; e && *e; e++) {
		const char *kv = *e;
		if (strncmp(kv, prefix, sizeof prefix - 1) != 0)
			continue;
		const char *eq = strchr(kv, '=');
		size_t nlen = eq ? (size_t)(eq - kv) : strlen(kv);
		const char *val = eq ? eq + 1 : "";
		int v;
		for (v = 0; v < V_N; v++)
			if (strlen(var_names[v]) == nlen &&
			    memcmp(var_names[v], kv, nlen) == 0)
				break;
		if (v == V_N) {
			char name[128];
			size_t k = nlen < sizeof name - 1 ? nlen : sizeof name - 1;
			memcpy(name, kv, k);
			name[k] = '\0';
			errmsg(err, errlen, "unknown variable ", name,
			       " (known: MEMLIMITS_GLOBAL_MEMORY, MEMLIMITS_ALLOCATIONS,"
			       " MEMLIMITS_THREAD_ALLOCATIONS, MEMLIMITS_ON_LIMIT,"
			       " MEMLIMITS_REPORT, MEMLIMITS_PROFILE,"
			       " MEMLIMITS_SAMPLE_INTERVAL, MEMLIMITS_SEED)");
			return -1;
		}
		int r = 0;
		switch ((enum var)v) {
		case V_GLOBAL:
			r = size_var(var_names[v], val, &c->global_memory, err, errlen);
			break;
		case V_ALLOC:
			r = size_var(var_names[v], val, &c->allocations, err, errlen);
			break;
		case V_THREAD:
			r = size_var(var_names[v], val, &c->thread_allocations, err,
				     errlen);
			break;
		case V_ON_LIMIT:
			if (strcmp(val, "fail") == 0)
				c->on_limit = MLI_ON_LIMIT_FAIL;
			else if (strcmp(val, "abort") == 0)
				c->on_limit = MLI_ON_LIMIT_ABORT;
			else {
				errmsg(err, errlen, "MEMLIMITS_ON_LIMIT='", val,
				       "' must be 'fail' or 'abort'");
				r = -1;
			}
			break;
		case V_REPORT:
			if (!*val || strlen(val) >= sizeof c->report) {
				errmsg(err, errlen, "MEMLIMITS_REPORT='", val,
				       "' must be 'stderr' or a file path (under 512 bytes)");
				r = -1;
			} else
				strcpy(c->report, val);
			break;
		case V_LIBRARY:
			break;
		case V_PROFILE:
			if (!*val || strlen(val) >= sizeof c->profile) {
				errmsg(err, errlen, "MEMLIMITS_PROFILE='", val,
				       "' must be a file path (under 512 bytes)");
				r = -1;
			} else
				strcpy(c->profile, val);
			break;
		case V_INTERVAL: {
			int64_t iv;
			r = size_var(var_names[v], val, &iv, err, errlen);
			if (r == 0 && iv == 0) {
				errmsg(err, errlen, "MEMLIMITS_SAMPLE_INTERVAL='", val,
				       "' must be at least 1 byte");
				r = -1;
			}
			c->sample_interval = (uint64_t)iv;
			break;
		}
		case V_SEED: {
			uint64_t s = 0;
			const char *p = val;
			for (; *p >= '0' && *p <= '9'; p++) {
				if (s > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
					break;
				s = s * 10 + (uint64_t)(*p - '0');
			}
			if (!*val || *p) {
				errmsg(err, errlen, "MEMLIMITS_SEED='", val,
				       "' must be a decimal number below 2^64");
				r = -1;
			}
			c->seed = s;
			c->seed_set = true;
			break;
		}
		case V_N:
			break;
		}
		if (r)
			return r;
	}
	return 0;
}
