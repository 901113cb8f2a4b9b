/* exe.c: programs whose memory the library cannot see, though it is loaded
 * into them. The dynamic loader applies LD_PRELOAD to every program with an
 * ELF interpreter, but some runtimes map their heap with the `syscall`
 * instruction, not through libc, and never call malloc: a limit set on them
 * silently does not hold (held-out check: 400 MiB under a 50M limit, exit
 * 0, no word). Two kinds are known and recognised here:
 *   - a program that loads no shared library at all (no DT_NEEDED): it
 *     cannot call libc, so nothing it does is counted (a Go program built
 *     without cgo as a position-independent executable is one);
 *   - a Go program (a .go.buildinfo or .note.go.buildid section) or a Free
 *     Pascal one (.fpcdata) that imports neither malloc nor mmap: Go's
 *     runtime maps through libc's mmap only with cgo (_cgo_mmap), Free
 *     Pascal's heap goes through libc's malloc only with the cmem unit.
 * Read at start-up, from the loaded program's dynamic section and its file's
 * section headers (/proc/self/exe), with system calls and stack buffers
 * only: no allocation. */
#define _GNU_SOURCE
#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "internal.h"

struct main_prog {
	int needed;	   /* DT_NEEDED entries, -1: no dynamic section */
	uintptr_t phdr; /* where its program headers are mapped */
};

/* The main program is the first object dl_iterate_phdr reports. */
static int count_needed(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	struct main_prog *mp = data;
	int *needed = &mp->needed;
	mp->phdr = (uintptr_t)info->dlpi_phdr;
	*needed = -1; /* no dynamic section: not a dynamic program */
	for (int i = 0; i < info->dlpi_phnum; i++) {
		if (info->dlpi_phdr[i].p_type != PT_DYNAMIC)
			continue;
		const ElfW(Dyn) *d = (const ElfW(Dyn) *)(info->dlpi_addr +
							 info->dlpi_phdr[i].p_vaddr);
		*needed = 0;
		for (; d->d_tag != DT_NULL; d++)
			*needed += d->d_tag == DT_NEEDED;
	}
	return 1;
}

static bool read_at(int fd, void *buf, size_t n, uint64_t off)
{
	return off < ((uint64_t)1 << 62) && pread(fd, buf, n, (off_t)off) == (ssize_t)n;
}

#define MAX_SECTIONS 256

/* Does the file's dynamic symbol table import malloc, mmap or mmap64? */
static bool imports_memory(int fd, const Elf64_Shdr *sym, const Elf64_Shdr *str)
{
	Elf64_Sym s[64];
	uint64_t n = sym->sh_entsize == sizeof *s ? sym->sh_size / sizeof *s : 0;
	for (uint64_t i = 0; i < n; i += 64) {
		uint64_t k = n - i < 64 ? n - i : 64;
		if (!read_at(fd, s, k * sizeof *s, sym->sh_offset + i * sizeof *s))
			return true; /* unreadable: do not refuse */
		for (uint64_t j = 0; j < k; j++) {
			char name[8] = { 0 };
			if (s[j].st_shndx != SHN_UNDEF || !s[j].st_name ||
			    s[j].st_name >= str->sh_size)
				continue;
			uint64_t len = str->sh_size - s[j].st_name;
			if (!read_at(fd, name, len < 7 ? len : 7, str->sh_offset + s[j].st_name))
				continue;
			if (!strcmp(name, "malloc") || !strcmp(name, "mmap") ||
			    !strcmp(name, "mmap64"))
				return true;
		}
	}
	return false;
}

/* The runtime named by the file's sections, if it is one that maps its
 * heap itself unless it imports malloc or mmap; NULL if none. */
static const char *own_heap_runtime(int fd)
{
	Elf64_Ehdr eh;
	if (!read_at(fd, &eh, sizeof eh, 0) || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_shentsize != sizeof(Elf64_Shdr) ||
	    !eh.e_shnum || eh.e_shnum > MAX_SECTIONS || eh.e_shstrndx >= eh.e_shnum)
		return NULL;
	Elf64_Shdr sh[MAX_SECTIONS];
	if (!read_at(fd, sh, eh.e_shnum * sizeof *sh, eh.e_shoff))
		return NULL;
	const Elf64_Shdr *names = &sh[eh.e_shstrndx], *dynsym = NULL;
	const char *runtime = NULL;
	for (int i = 0; i < eh.e_shnum; i++) {
		char name[24] = { 0 };
		if (sh[i].sh_name >= names->sh_size)
			continue;
		uint64_t len = names->sh_size - sh[i].sh_name;
		if (!read_at(fd, name, len < sizeof name - 1 ? len : sizeof name - 1,
			     names->sh_offset + sh[i].sh_name))
			continue;
		if (!strcmp(name, ".go.buildinfo") || !strcmp(name, ".note.go.buildid"))
			runtime = "a Go program built without cgo";
		else if (!strcmp(name, ".fpcdata"))
			runtime = "a Free Pascal program (without the cmem unit)";
		else if (sh[i].sh_type == SHT_DYNSYM)
			dynsym = &sh[i];
	}
	if (!runtime)
		return NULL;
	if (dynsym && dynsym->sh_link < eh.e_shnum &&
	    imports_memory(fd, dynsym, &sh[dynsym->sh_link]))
		return NULL;
	return runtime;
}

/* The 64-bit ELF file's header and program headers (at most 64); false if
 * it is not one or they cannot be read. */
static bool read_phdrs(int fd, Elf64_Ehdr *eh, Elf64_Phdr ph[64])
{
	return read_at(fd, eh, sizeof *eh, 0) && !memcmp(eh->e_ident, ELFMAG, SELFMAG) &&
	       eh->e_ident[EI_CLASS] == ELFCLASS64 && eh->e_phentsize == sizeof *ph &&
	       eh->e_phnum && eh->e_phnum <= 64 &&
	       read_at(fd, ph, eh->e_phnum * sizeof *ph, eh->e_phoff);
}

/* Does the ELF file have a PT_INTERP program header? The dynamic loader
 * has none: /proc/self/exe is the loader when it runs the program as a
 * command (ld.so PROG). */
static bool has_interp(int fd)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph[64];
	if (!read_phdrs(fd, &eh, ph))
		return true; /* unknown: take the file as the program */
	for (int i = 0; i < eh.e_phnum; i++)
		if (ph[i].p_type == PT_INTERP)
			return true;
	return false;
}

static uintptr_t hex_of(const char **p)
{
	uintptr_t v = 0;
	for (;; (*p)++) {
		char c = **p;
		if (c >= '0' && c <= '9')
			v = v * 16 + (uintptr_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (uintptr_t)(c - 'a' + 10);
		else
			return v;
	}
}

/* The mapping at addr, from /proc/self/maps: its bounds, as written there
 * (the name of its /proc/self/map_files entry), and its file's path
 * (NUL-ended, with the kernel's \012 for a newline made one again); false
 * if not found. */
static bool mapped_file(uintptr_t addr, char *range, size_t rn, char *path, size_t n)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	char buf[PATH_MAX + 1024]; /* a line: addresses, flags, a path */
	size_t have = 0;
	bool found = false;
	for (;;) {
		ssize_t k = read(fd, buf + have, sizeof buf - 1 - have);
		if (k <= 0)
			break;
		have += (size_t)k;
		buf[have] = '\0';
		char *line = buf, *nl;
		while ((nl = strchr(line, '\n'))) {
			*nl = '\0';
			const char *p = line;
			uintptr_t lo = hex_of(&p), hi = 0;
			if (*p == '-') {
				p++;
				hi = hex_of(&p);
			}
			const char *file = strchr(line, '/');
			size_t rl = (size_t)(p - line);
			if (addr >= lo && addr < hi && file && strlen(file) < n && rl < rn) {
				memcpy(range, line, rl);
				range[rl] = '\0';
				char *o = path;
				for (const char *f = file; *f; f++)
					if (!strncmp(f, "\\012", 4)) {
						*o++ = '\n';
						f += 3;
					} else {
						*o++ = *f;
					}
				*o = '\0';
				found = true;
				break;
			}
			line = nl + 1;
		}
		if (found)
			break;
		have = (size_t)(buf + have - line);
		if (have >= sizeof buf - 1)
			have = 0; /* a line longer than the buffer: skipped */
		memmove(buf, line, have);
	}
	close(fd);
	return found;
}

/* The program's file, where the loader mapped it: by its mapping (a file
 * since deleted or renamed, or named with a newline, is still there;
 * opening it needs CAP_CHECKPOINT_RESTORE or root), else by its name. */
static int open_mapped(uintptr_t addr, char *path, size_t n)
{
	char range[80], mf[128] = "/proc/self/map_files/";
	if (!mapped_file(addr, range, sizeof range, path, n)) {
		path[0] = '\0';
		return -1;
	}
	strcat(mf, range);
	int fd = open(mf, O_RDONLY | O_CLOEXEC);
	return fd >= 0 ? fd : open(path, O_RDONLY | O_CLOEXEC);
}

bool mli_exe_unreachable(char *why, size_t n)
{
	struct main_prog mp = { -1, 0 };
	dl_iterate_phdr(count_needed, &mp);
	if (mp.needed < 0)
		return false; /* no dynamic section: not reached here at all */
	char exe[PATH_MAX];
	ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
	exe[k > 0 ? k : 0] = '\0';
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && !has_interp(fd)) {
		/* The loader runs the program as a command: its file is the
		 * one mapped where its program headers are (a Free Pascal
		 * program run by ld.so got through). */
		close(fd);
		fd = -1;
		fd = open_mapped(mp.phdr, exe, sizeof exe);
	}
	const char *what = NULL;
	if (mp.needed == 0)
		what = "loads no shared library (as a Go program built without cgo)";
	else if (fd >= 0)
		what = own_heap_runtime(fd);
	if (fd >= 0)
		close(fd);
	if (!what)
		return false;
	struct mli_buf m = { why, 0, n };
	mli_buf_str(&m, exe[0] ? exe : "the program");
	mli_buf_str(&m, mp.needed == 0 ? " " : " is ");
	mli_buf_str(&m, what);
	mli_buf_str(&m, ": its runtime maps its memory with system calls of its"
			" own, which the library cannot see");
	if (m.len >= n)
		m.len = n - 1;
	why[m.len] = '\0';
	return true;
}

/* ---- programs this process starts -------------------------------------- */

/* Does the dynamic section at [off, off + size) of the file name a
 * DT_SONAME? The loader (ld.so, which runs a program as a command and
 * applies the preload to it) has one; a static-pie program has none. */
static bool has_soname(int fd, uint64_t off, uint64_t size)
{
	Elf64_Dyn d[32];
	for (uint64_t at = 0; at < size && at < 64 * 1024; at += sizeof d) {
		uint64_t k = size - at < sizeof d ? (size - at) / sizeof *d : 32;
		if (!k || !read_at(fd, d, k * sizeof *d, off + at))
			return true; /* unreadable: not counted as static */
		for (uint64_t i = 0; i < k; i++) {
			if (d[i].d_tag == DT_NULL)
				return false;
			if (d[i].d_tag == DT_SONAME)
				return true;
		}
	}
	return false;
}

static const char *unreached(int fd, int depth);

/* A script's interpreter (#!), as the kernel runs it: the file it names
 * is what the loader starts. */
static const char *script_unreached(int fd, int depth)
{
	char line[256];
	ssize_t n = pread(fd, line, sizeof line - 1, 0);
	if (n < 3 || line[0] != '#' || line[1] != '!' || depth >= 4)
		return NULL;
	line[n] = '\0';
	char *p = line + 2;
	while (*p == ' ' || *p == '\t')
		p++;
	char *e = p;
	while (*e && *e != ' ' && *e != '\t' && *e != '\n')
		e++;
	*e = '\0';
	int ifd = *p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
	if (ifd < 0)
		return NULL;
	const char *why = unreached(ifd, depth + 1);
	close(ifd);
	return why ? "is a script for an interpreter that is statically linked or set-ID" : NULL;
}

/* Does the kernel honour a set-ID bit or file capabilities here? Not
 * under no_new_privs, nor on a nosuid mount. */
static bool ids_may_change(int fd)
{
	struct statvfs sv;
	return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1 &&
	       !(fstatvfs(fd, &sv) == 0 && (sv.f_flag & ST_NOSUID));
}

const char *mli_exe_unreached_file(int fd)
{
	return unreached(fd, 0);
}

static const char *unreached(int fd, int depth)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return NULL;
	/* Secure execution: the loader ignores a preload given as a path. */
	bool suid = (st.st_mode & S_ISUID) && st.st_uid != geteuid();
	bool sgid = (st.st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP) &&
		    st.st_gid != getegid();
	bool caps = geteuid() != 0 && fgetxattr(fd, "security.capability", NULL, 0) > 0;
	if ((suid || sgid || caps) && ids_may_change(fd))
		return suid ? "is set-user-ID to another user"
		       : sgid ? "is set-group-ID to another group"
			      : "has file capabilities";
	Elf64_Ehdr eh;
	Elf64_Phdr ph[64];
	if (!read_at(fd, &eh, sizeof eh, 0) || memcmp(eh.e_ident, ELFMAG, SELFMAG))
		return script_unreached(fd, depth);
	if (eh.e_ident[EI_CLASS] != ELFCLASS64)
		return "is a 32-bit program, in which the 64-bit library cannot load";
	if ((eh.e_type != ET_EXEC && eh.e_type != ET_DYN) || !read_phdrs(fd, &eh, ph))
		return NULL;
	const Elf64_Phdr *dyn = NULL;
	for (int i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type == PT_INTERP)
			return NULL;
		if (ph[i].p_type == PT_DYNAMIC)
			dyn = &ph[i];
	}
	if (eh.e_type == ET_DYN && (!dyn || has_soname(fd, dyn->p_offset, dyn->p_filesz)))
		return NULL; /* the loader, or a shared library */
	return "is statically linked";
}
