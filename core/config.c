/* config.c: reads the MEMLIMITS_* environment. Runs before main (and maybe
 * before any constructor, from the first malloc), so it must not allocate:
 * it walks envp itself and formats errors into a caller's buffer. A typo or a
 * malformed value is an error, never a silent default. */
#include <string.h>
#include <strings.h>

#include "internal.h"

static unsigned unit_shift(char c)
{
	switch (c) {
	case 'K': case 'k': return 10;
	case 'M': case 'm': return 20;
	case 'G': case 'g': return 30;
	case 'T': case 't': return 40;
	}
	return 0;
}

/* Bytes, or a number with a unit K, M, G or T (either case, powers of
 * 1024, optionally followed by iB): 65536, 64K, 64KiB, 1.5G. A fraction
 * needs a unit (bytes are whole) and is rounded down to a byte; one that
 * comes to no byte at all is refused (-4), as it is not 0 either. */
int mli_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, frac = 0, scale = 1;
	const char *p = s;
	bool range = false, nonzero = false;
	if (!s || *p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (MLI_SIZE_MAX - d) / 10)
			range = true; /* still reject a malformed tail first */
		else
			v = v * 10 + d;
	}
	bool fraction = *p == '.';
	if (fraction) {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		/* Up to 18 digits count (far under a byte of a TiB); more are
		 * allowed and ignored. */
		for (; *p >= '0' && *p <= '9'; p++) {
			nonzero |= *p != '0';
			if (scale < 1000000000000000000ull) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				scale *= 10;
			}
		}
	}
	unsigned shift = unit_shift(*p);
	if (shift) {
		p++;
		if (p[0] == 'i' && p[1] == 'B')
			p += 2;
	} else if (fraction)
		return -1; /* 1.5 bytes */
	if (*p)
		return -1;
	if (range || v > (MLI_SIZE_MAX >> shift))
		return -2;
	uint64_t bytes = v << shift;
	if (frac) {
		/* frac / scale of 2^shift: frac < scale <= 10^18 < 2^60 and
		 * shift <= 40, so the product fits in 128 bits. */
		uint64_t part = (uint64_t)(((unsigned __int128)frac << shift) / scale);
		if (bytes > MLI_SIZE_MAX - part)
			return -2;
		bytes += part;
	}
	if (!bytes && nonzero)
		return -4; /* 0.0000001K: not 0, and no byte either */
	*out = bytes;
	return 0;
}

/* A memory limit: a size, a percentage of the memory the process may have
 * (its cgroup's limit, else physical memory: "90%", "12.5%", in (0, 100]),
 * or none ("max", "unlimited", "off"). Returns 0 with *bytes (-1 for none)
 * and *ppm (the percentage in millionths, 0 if not a percentage); -1
 * malformed; -2 out of range; -3 a percentage above 0 below a millionth. */
int mli_parse_memory(const char *s, int64_t *bytes, uint32_t *ppm)
{
	*ppm = 0;
	/* In any case, as the units are ("MAX" was refused while "64k" was
	 * taken; a held-out check). */
	if (!strcasecmp(s, "max") || !strcasecmp(s, "unlimited") || !strcasecmp(s, "off")) {
		*bytes = -1;
		return 0;
	}
	size_t len = strlen(s);
	if (len && s[len - 1] == '%') {
		uint64_t whole = 0, frac = 0, scale = 1;
		bool finer = false; /* a non-zero digit past the millionth */
		const char *p = s;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++)
			if ((whole = whole * 10 + (uint64_t)(*p - '0')) > 1000)
				whole = 1000; /* out of range either way */
		if (*p == '.') {
			p++;
			if (*p < '0' || *p > '9')
				return -1;
			for (; *p >= '0' && *p <= '9'; p++)
				if (scale < 10000) {
					frac = frac * 10 + (uint64_t)(*p - '0');
					scale *= 10;
				} else if (*p != '0')
					finer = true;
		}
		if (*p != '%' || p[1])
			return -1;
		/* Counted in millionths, further digits dropped; but not where
		 * that moves the value into range: 100.00001% is above 100%,
		 * and 0.00009% is not 0% (nor above it, at this resolution). */
		uint64_t m = whole * 10000 + frac * 10000 / scale; /* millionths */
		if (m > 1000000 || (m == 1000000 && finer))
			return -2;
		if (m == 0)
			return finer ? -3 : -2;
		*ppm = (uint32_t)m;
		*bytes = 0; /* resolved by the caller */
		return 0;
	}
	uint64_t v;
	int r = mli_parse_size(s, &v);
	if (r == 0)
		*bytes = (int64_t)v;
	return r;
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
	   V_PROFILE, V_INTERVAL, V_SEED, V_SOFT, V_TREE, V_LIMIT_STATUS, V_N };
static const char *const var_names[V_N] = {
	"MEMLIMITS_GLOBAL_MEMORY", "MEMLIMITS_ALLOCATIONS",
	"MEMLIMITS_THREAD_ALLOCATIONS", "MEMLIMITS_ON_LIMIT",
	"MEMLIMITS_REPORT", "MEMLIMITS_LIBRARY", "MEMLIMITS_PROFILE",
	"MEMLIMITS_SAMPLE_INTERVAL", "MEMLIMITS_SEED", "MEMLIMITS_SOFT_MEMORY",
	"MEMLIMITS_TREE", "MEMLIMITS_LIMIT_STATUS",
};

/* Edit distance between a[0..la) and b[0..lb), case-insensitively, capped
 * at 3 (we only ask whether it is at most 2). */
static unsigned distance(const char *a, size_t la, const char *b, size_t lb)
{
	if (la > 16 || lb > 16)
		return 3;
	unsigned d[17][17];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (unsigned)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			char x = a[i - 1], y = b[j - 1];
			if (x >= 'a' && x <= 'z')
				x = (char)(x - 'a' + 'A');
			unsigned sub = d[i - 1][j - 1] + (x != y);
			unsigned del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
			unsigned m = sub < del ? sub : del;
			d[i][j] = m < ins ? m : ins;
		}
	return d[la][lb] > 3 ? 3 : d[la][lb];
}

/* a[0..n) == b[0..n), case-insensitively (b in capitals). */
static bool same_upper(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char x = a[i];
		if (x >= 'a' && x <= 'z')
			x = (char)(x - 'a' + 'A');
		if (x != b[i])
			return false;
	}
	return true;
}

/* Is the variable named name[0..nlen) a misspelt MEMLIMITS_ one: a prefix
 * within two edits of MEMLIMITS (MEMLIMIT_, MEM_LIMITS_, memlimits_) in
 * front of the name of one of ours, or MEMLIMIT_ in front of anything?
 * Writes the variable it probably meant into meant. */
static bool near_miss(const char *name, size_t nlen, char *meant, size_t cap)
{
	static const char want[] = "MEMLIMITS";
	if (nlen > 9 && same_upper(name, "MEMLIMIT_", 9)) {
		struct mli_buf m = { meant, 0, cap };
		mli_buf_str(&m, "MEMLIMITS_");
		for (size_t i = 9; i < nlen && m.len + 1 < cap; i++) /* ours are upper case */
			meant[m.len++] = name[i] >= 'a' && name[i] <= 'z' ? (char)(name[i] - 32) : name[i];
		meant[m.len] = '\0';
		return true; /* MEMLIMIT_ANYTHING, in any case */
	}
	for (int v = 0; v < V_N; v++) {
		const char *suffix = var_names[v] + sizeof want; /* after "_" */
		size_t sl = strlen(suffix);
		/* Every variable of the environment comes here, in every
		 * process: a plain comparison first (the edit distance for
		 * each of them and each of ours cost 0.5 million instructions
		 * at every start). */
		if (nlen <= sl + 1 || !same_upper(name + nlen - sl, suffix, sl))
			continue;
		size_t pl = nlen - sl; /* the prefix, with its separator if any */
		if (name[pl - 1] == '_' || name[pl - 1] == '-')
			pl--;
		if (distance(name, pl, want, sizeof want - 1) <= 2) {
			struct mli_buf m = { meant, 0, cap };
			mli_buf_str(&m, var_names[v]);
			return true;
		}
	}
	return false;
}

/* The decimal digits at *p, up to the first value at or over `stop`;
 * *p is left after them. */
static unsigned digits(const char **p, unsigned stop)
{
	unsigned v = 0;
	for (; **p >= '0' && **p <= '9' && v < stop; (*p)++)
		v = v * 10 + (unsigned)(**p - '0');
	return v;
}

/* An output named like a stream ("-", stdout, STDERR, "stderr ") was a
 * file of that name in the current directory, made without a word (a
 * held-out check): only "stderr", exactly, means the standard error, and
 * only for the report (a profile is files; MEMLIMITS_PROFILE=stderr made
 * five of them). */
static bool meant_a_stream(const char *val, bool stderr_ok)
{
	if (stderr_ok && !strcmp(val, "stderr"))
		return false;
	const char *p = val;
	while (*p && strchr(" \t\n\v\f\r", *p))
		p++;
	size_t n = strlen(p);
	while (n && strchr(" \t\n\v\f\r", p[n - 1]))
		n--;
	return (n == 1 && p[0] == '-') ||
	       (n == 6 && (same_upper(p, "STDERR", 6) || same_upper(p, "STDOUT", 6)));
}

/* val, its control characters written as escapes, for a message that
 * stays one line. */
static const char *shown(const char *val, char *buf, size_t cap)
{
	struct mli_buf b = { buf, 0, cap };
	char one[2] = { 0, 0 };
	for (const char *p = val; *p; p++) {
		const char *esc = *p == '\n' ? "\\n" : *p == '\r' ? "\\r"
				: *p == '\t' ? "\\t" : *p == '\v' ? "\\v"
				: *p == '\f' ? "\\f" : NULL;
		one[0] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
		mli_buf_str(&b, esc ? esc : one);
	}
	return buf;
}

/* mli_parse_size's -4, said alike for sizes and memory limits. */
#define UNDER_A_BYTE "' is under a byte: a fraction is rounded down to whole bytes (0 is written 0)"

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
				: r == -4 ? UNDER_A_BYTE
				: "' is not a size: expected bytes, or a number with"
				  " K, M, G or T (optionally followed by iB), e.g. 64M"
				  " or 1.5G");
	return -1;
}

static int memory_var(const char *name, const char *val, int64_t *dst,
		      uint32_t *ppm, char *err, size_t errlen)
{
	int r = mli_parse_memory(val, dst, ppm);
	if (r == 0)
		return 0;
	struct mli_buf m = { err, 0, errlen };
	mli_buf_str(&m, "memlimits: ");
	mli_buf_str(&m, name);
	mli_buf_str(&m, "='");
	mli_buf_str(&m, val);
	size_t len = strlen(val);
	if (len && val[len - 1] == '%')
		mli_buf_str(&m, r == -2 ? "' is out of range: a percentage must be"
					  " above 0% and at most 100%"
				: r == -3 ? "' is below a percentage's resolution: it is"
					    " counted in millionths (0.0001%)"
					: "' is not a percentage: expected e.g. 90% or"
					  " 12.5% (no space)");
	else
		mli_buf_str(&m, r == -2 ? "' is out of range (at most 8 EiB - 1 bytes)"
				: r == -4 ? UNDER_A_BYTE
					: "' is not a size: expected bytes, a number with"
					  " K, M, G or T (e.g. 64M, 1.5G), a percentage of"
					  " the memory the process may have (e.g. 90%), or"
					  " max, unlimited or off");
	return -1;
}

/* A percentage's bytes: ppm millionths of total. */
static int64_t share_of(int64_t total, uint32_t ppm)
{
	return (int64_t)((__int128)total * ppm / 1000000);
}

int mli_config_read(char *const *envp, struct mli_config *c, char *err,
		    size_t errlen)
{
	memset(c, 0, sizeof *c);
	c->global_memory = c->allocations = c->thread_allocations = -1;
	c->soft_memory = -1;
	c->on_limit = MLI_ON_LIMIT_FAIL;
	static const char prefix[] = "MEMLIMITS_";
	/* Each variable's value: one set twice with two values (an execve's
	 * hand-made environment) is refused, since the program's getenv reads
	 * the first and the library would have read the last (a held-out
	 * check: the program saw 10M while 1G was enforced). */
	const char *seen[V_N] = { 0 };
	for (char *const *e = envp; e && *e; e++) {
		const char *kv = *e;
		if (!strncmp(kv, MLI_FIRED_VAR "=", sizeof MLI_FIRED_VAR)) {
			/* The library's own note across an exec (exec.c): the
			 * pid in which a limit fired. Anything else is refused,
			 * as any malformed variable is (`abc` and `-5x` were
			 * ignored: a held-out check). */
			const char *p = kv + sizeof MLI_FIRED_VAR;
			unsigned pid = digits(&p, 100000000);
			if (*p || pid == 0) {
				struct mli_buf m = { err, 0, errlen };
				mli_buf_str(&m, "memlimits: " MLI_FIRED_VAR "='");
				mli_buf_str(&m, kv + sizeof MLI_FIRED_VAR);
				mli_buf_str(&m, "' is not a process id (the library sets it"
						" across an exec, for MEMLIMITS_LIMIT_STATUS:"
						" unset it)");
				return -1;
			}
			c->fired_pid = (int)pid;
			continue;
		}
		const char *eq = strchr(kv, '=');
		size_t nlen = eq ? (size_t)(eq - kv) : strlen(kv);
		const char *val = eq ? eq + 1 : "";
		if (strncmp(kv, prefix, sizeof prefix - 1) != 0) {
			char meant[64], name[128];
			if (!near_miss(kv, nlen, meant, sizeof meant))
				continue;
			size_t k = nlen < sizeof name - 1 ? nlen : sizeof name - 1;
			memcpy(name, kv, k);
			name[k] = '\0';
			struct mli_buf m = { err, 0, errlen };
			mli_buf_str(&m, "memlimits: ");
			mli_buf_str(&m, name);
			mli_buf_str(&m, " looks like a misspelt ");
			mli_buf_str(&m, meant);
			mli_buf_str(&m, ": not running without the limit it may have"
					" meant (unset it, or spell it right)");
			return -1;
		}
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
			/* One of ours within two edits: say which. */
			for (v = 0; v < V_N; v++) {
				const char *known = var_names[v] + sizeof prefix - 1;
				if (distance(kv + sizeof prefix - 1, nlen - (sizeof prefix - 1),
					     known, strlen(known)) <= 2)
					break;
			}
			if (v < V_N) {
				struct mli_buf m = { err, 0, errlen };
				mli_buf_str(&m, "memlimits: unknown variable ");
				mli_buf_str(&m, name);
				mli_buf_str(&m, " (did you mean ");
				mli_buf_str(&m, var_names[v]);
				mli_buf_str(&m, "?)");
				return -1;
			}
			errmsg(err, errlen, "unknown variable ", name,
			       " (known: MEMLIMITS_GLOBAL_MEMORY, MEMLIMITS_SOFT_MEMORY,"
			       " MEMLIMITS_ALLOCATIONS, MEMLIMITS_THREAD_ALLOCATIONS,"
			       " MEMLIMITS_ON_LIMIT, MEMLIMITS_REPORT, MEMLIMITS_PROFILE,"
			       " MEMLIMITS_SAMPLE_INTERVAL, MEMLIMITS_SEED, MEMLIMITS_TREE,"
			       " MEMLIMITS_LIMIT_STATUS)");
			return -1;
		}
		if (seen[v] && strcmp(seen[v], val)) {
			char a[160], b[160];
			struct mli_buf m = { err, 0, errlen };
			mli_buf_str(&m, "memlimits: ");
			mli_buf_str(&m, var_names[v]);
			mli_buf_str(&m, " is set twice in the environment, to '");
			mli_buf_str(&m, shown(seen[v], a, sizeof a));
			mli_buf_str(&m, "' and to '");
			mli_buf_str(&m, shown(val, b, sizeof b));
			mli_buf_str(&m, "': not guessing which was meant");
			return -1;
		}
		seen[v] = val;
		int r = 0;
		switch ((enum var)v) {
		case V_GLOBAL:
			r = memory_var(var_names[v], val, &c->global_memory,
				       &c->global_ppm, err, errlen);
			break;
		case V_SOFT:
			r = memory_var(var_names[v], val, &c->soft_memory,
				       &c->soft_ppm, err, errlen);
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
			} else if (meant_a_stream(val, true)) {
				char b[64];
				errmsg(err, errlen, "MEMLIMITS_REPORT='", shown(val, b, sizeof b),
				       "' names no file a report should go to: 'stderr'"
				       " (exactly so) for the standard error, else a path");
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
			} else if (meant_a_stream(val, false)) {
				char b[64];
				errmsg(err, errlen, "MEMLIMITS_PROFILE='", shown(val, b, sizeof b),
				       "' names no file a profile should go to (a"
				       " profile is written to files: a path)");
				r = -1;
			} else
				strcpy(c->profile, val);
			break;
		case V_TREE:
			if (!*val || strlen(val) >= sizeof c->tree) {
				errmsg(err, errlen, "MEMLIMITS_TREE='", val,
				       "' must be the path of the tree's segment (set by"
				       " memlimit --tree)");
				r = -1;
			} else
				strcpy(c->tree, val);
			break;
		case V_LIMIT_STATUS: {
			/* N, or N:PID (the wrapper: only the process it started) */
			const char *p = val;
			unsigned st = digits(&p, 1000), pid = 0;
			bool ok = p > val && st >= 1 && st <= 255;
			if (ok && *p == ':') {
				const char *q = ++p;
				pid = digits(&p, 100000000);
				ok = p > q && pid > 0;
			}
			if (!ok || *p) {
				errmsg(err, errlen, "MEMLIMITS_LIMIT_STATUS='", val,
				       "' must be an exit status from 1 to 255 (the"
				       " status of a process in which a limit fired)");
				r = -1;
			}
			c->limit_status = (int)st;
			c->limit_status_pid = (int)pid;
			break;
		}
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
	/* Percentages: of the memory the process may have (its cgroup's limit,
	 * else physical memory); the soft limit's of the hard one if set. */
	if (c->global_ppm || (c->soft_ppm && c->global_memory < 0)) {
		c->sysmem = mli_sysmem(&c->sysmem_source);
		if (c->sysmem < 0) {
			errmsg(err, errlen, c->global_ppm ? "MEMLIMITS_GLOBAL_MEMORY"
							  : "MEMLIMITS_SOFT_MEMORY",
			       " is a percentage, but the memory the process may",
			       " have is unknown (no cgroup limit, no sysinfo)");
			return -1;
		}
	}
	if (c->global_ppm)
		c->global_memory = share_of(c->sysmem, c->global_ppm);
	if (c->soft_ppm)
		c->soft_memory = share_of(c->global_memory >= 0 ? c->global_memory
								: c->sysmem,
					  c->soft_ppm);
	/* Nor one at 0 (or a percentage or fraction that comes to 0): the
	 * memory is above it from the start and never crosses it. */
	if (c->soft_memory == 0) {
		errmsg(err, errlen, "MEMLIMITS_SOFT_MEMORY is 0 bytes: the memory is"
				    " above it from the start, so it could never be crossed",
		       " (a soft limit fires when the memory rises past it;",
		       " unset it for none)");
		return -1;
	}
	/* What a limit does when it fires, with no limit to fire: the task
	 * API's limits interrupt their task and never abort nor set the
	 * status, so either would never act. Said, not ignored. Not in a
	 * process tree, whose limits hold for a process that sets its own
	 * off (memlimit ... -- sh -c 'MEMLIMITS_GLOBAL_MEMORY=off prog'). */
	if ((c->on_limit == MLI_ON_LIMIT_ABORT || c->limit_status) && !c->tree[0] &&
	    c->global_memory < 0 && c->allocations < 0 && c->thread_allocations < 0) {
		errmsg(err, errlen, c->on_limit == MLI_ON_LIMIT_ABORT
					    ? "MEMLIMITS_ON_LIMIT=abort" : "MEMLIMITS_LIMIT_STATUS",
		       " is set but no limit is (MEMLIMITS_GLOBAL_MEMORY,"
		       " MEMLIMITS_ALLOCATIONS or MEMLIMITS_THREAD_ALLOCATIONS):",
		       " it would never act (the task API's limits interrupt their task instead)");
		return -1;
	}
	/* The interval is the profile's (MEMLIMITS_PROFILE): a profiler the
	 * program starts itself (ml_memprof_start) takes its own rate, so
	 * without the profile it would change nothing. Said, not ignored.
	 * (MEMLIMITS_SEED alone is meant: it seeds that profiler.) */
	if (c->sample_interval && !c->profile[0]) {
		errmsg(err, errlen, "MEMLIMITS_SAMPLE_INTERVAL is set but MEMLIMITS_PROFILE is not:",
		       " the interval is that of the profile written to MEMLIMITS_PROFILE",
		       " (ml_memprof_start takes its own rate), so alone it would do nothing");
		return -1;
	}
	/* A warning above the hard limit could never be given: the limit
	 * refuses first. Nor one at it: the memory passes it only within the
	 * limit's slack, so it warned in some runs and not in others (a
	 * held-out check). Said, not ignored. */
	if (c->soft_memory >= 0 && c->global_memory >= 0 &&
	    c->soft_memory >= c->global_memory) {
		struct mli_buf m = { err, 0, errlen };
		mli_buf_str(&m, "memlimits: MEMLIMITS_SOFT_MEMORY (");
		mli_buf_size(&m, (uint64_t)c->soft_memory);
		mli_buf_str(&m, c->soft_memory == c->global_memory
				? ") is MEMLIMITS_GLOBAL_MEMORY ("
				: ") is above MEMLIMITS_GLOBAL_MEMORY (");
		mli_buf_size(&m, (uint64_t)c->global_memory);
		mli_buf_str(&m, "): it could never be crossed (a soft limit warns"
				" before the hard one)");
		return -1;
	}
	return 0;
}
