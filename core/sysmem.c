/* sysmem.c: how much memory the process may have, for limits given as a
 * percentage (MEMLIMITS_GLOBAL_MEMORY=90%): its cgroup's limit (cgroup v2
 * memory.max, the smallest on the way up to the root of the mount; cgroup
 * v1 the memory controller's hierarchical_memory_limit), or physical
 * memory when no cgroup sets one. Read before main, so: no allocation, no
 * stdio, only open/read. */
#include <fcntl.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "internal.h"

/* Reads a small file into buf (NUL-terminated); length or -1. */
static ssize_t slurp(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	while (len + 1 < cap) {
		ssize_t got = read(fd, buf + len, cap - 1 - len);
		if (got <= 0)
			break;
		len += (size_t)got;
	}
	close(fd);
	buf[len] = '\0';
	return (ssize_t)len;
}

/* A decimal number at p (digits only), or -1. */
static int64_t number(const char *p)
{
	int64_t v = 0;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (INT64_MAX - 9) / 10)
			return INT64_MAX;
		v = v * 10 + (*p - '0');
	}
	return v;
}

/* Appends s to path[0..len) within cap. */
static bool join(char *path, size_t cap, const char *a, const char *b,
		 size_t blen, const char *c)
{
	size_t la = strlen(a), lc = strlen(c);
	if (la + blen + lc + 1 > cap)
		return false;
	memcpy(path, a, la);
	memcpy(path + la, b, blen);
	memcpy(path + la + blen, c, lc + 1);
	return true;
}

/* cgroup v2: the smallest memory.max from the process's cgroup up to the
 * root of the mount ("max" is no limit). */
static int64_t cgroup_v2(const char *root, const char *cg, size_t cglen)
{
	int64_t best = -1;
	char path[1024], buf[64];
	for (;;) {
		if (join(path, sizeof path, root, cg, cglen, "/memory.max") &&
		    slurp(path, buf, sizeof buf) > 0 && buf[0] != 'm') {
			int64_t v = number(buf);
			if (v >= 0 && (best < 0 || v < best))
				best = v;
		}
		while (cglen > 0 && cg[cglen - 1] != '/')
			cglen--;
		if (cglen == 0)
			break;
		cglen--; /* the parent */
	}
	return best;
}

/* cgroup v1: the memory controller's hierarchical limit; 8 EiB-ish values
 * (the kernel's "unlimited", page-rounded) are no limit. */
static int64_t cgroup_v1(const char *root, const char *cg, size_t cglen)
{
	char path[1024], root_mem[512], buf[4096];
	if (!join(root_mem, sizeof root_mem, root, "/memory", 7, "") ||
	    !join(path, sizeof path, root_mem, cg, cglen, "/memory.stat") ||
	    slurp(path, buf, sizeof buf) <= 0)
		return -1;
	const char *p = strstr(buf, "hierarchical_memory_limit ");
	if (!p)
		return -1;
	int64_t v = number(p + strlen("hierarchical_memory_limit "));
	return v < 0 || v >= ((int64_t)1 << 62) ? -1 : v;
}

int64_t mli_sysmem_at(const char *proc_cgroup, const char *root,
		      const char **source)
{
	char buf[4096];
	if (slurp(proc_cgroup, buf, sizeof buf) > 0) {
		int64_t v1 = -1, v2 = -1;
		for (char *line = buf; *line;) {
			char *end = strchr(line, '\n');
			size_t len = end ? (size_t)(end - line) : strlen(line);
			/* "0::/path" (v2) or "N:memory:/path" (v1; the controller
			 * list may name several). */
			char *c1 = memchr(line, ':', len);
			char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
			if (c2) {
				const char *cg = c2 + 1;
				size_t cglen = len - (size_t)(cg - line);
				if (cglen == 1 && cg[0] == '/')
					cglen = 0;
				size_t clen = (size_t)(c2 - c1 - 1);
				if (clen == 0)
					v2 = cgroup_v2(root, cg, cglen);
				else {
					const char *ctl = c1 + 1;
					for (size_t i = 0; i + 6 <= clen; i++)
						if (!memcmp(ctl + i, "memory", 6) &&
						    (i == 0 || ctl[i - 1] == ',') &&
						    (i + 6 == clen || ctl[i + 6] == ','))
							v1 = cgroup_v1(root, cg, cglen);
				}
			}
			line = end ? end + 1 : line + len;
		}
		if (v2 >= 0) {
			*source = "the cgroup's memory.max";
			return v2;
		}
		if (v1 >= 0) {
			*source = "the cgroup's memory limit";
			return v1;
		}
	}
	int64_t phys = mli_phys_mem();
	*source = phys >= 0 ? "physical memory" : "unknown";
	return phys;
}

int64_t mli_phys_mem(void)
{
	struct sysinfo si;
	if (sysinfo(&si) == 0 && si.totalram)
		return (int64_t)si.totalram * (int64_t)(si.mem_unit ? si.mem_unit : 1);
	return -1;
}

int64_t mli_sysmem(const char **source)
{
	return mli_sysmem_at("/proc/self/cgroup", "/sys/fs/cgroup", source);
}
