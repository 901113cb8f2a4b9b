/* symbols.c: names of code addresses, for the profile's folded stacks
 * (profile.c), from the ELF symbol tables of the loaded objects' files.
 *
 * dladdr knows only the dynamic symbols (exported functions): a static
 * function was `prog+0x11c0` where google-pprof, which reads the files'
 * tables (nm, addr2line), says `grow`. So each object's table is read
 * from its file: .symtab where the file has one (static functions too),
 * else the .symtab of its separate debug file,
 * /usr/lib/debug/.build-id/XX/YYYY.debug (Debian's -dbg and -dbgsym
 * packages), when one is installed, else the file's .dynsym. A file whose
 * build ID differs from the loaded object's (replaced on disk since) is
 * not used; an object with no readable file (the vDSO, a deleted library)
 * is named by dladdr, as before. A name that no symbol covers is
 * `object+0xOFFSET`, OFFSET the address in the file's own numbering (what
 * `addr2line -e object` takes).
 *
 * Among symbols at one address, the one google-pprof's reading of nm
 * keeps: the last, by name, of those nm marks T or t (global or local
 * code, not weak, not an IFUNC), else the first by name. A symbol covers
 * its size; one of size 0 reaches the next symbol.
 *
 * Files are mapped read-only (file-backed: never counted; the call goes
 * straight to the kernel, past the library's mmap interposers) once per
 * object per write of the profile, and the tables live in the profile's
 * own blocks. Nothing here runs under a lock of the library: it calls the
 * loader (dl_iterate_phdr, fenced off around fork; dladdr) and reads
 * files, from the profile's writer, with cancellation disabled. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "output.h"
#include "symbols.h"

#if __SIZEOF_POINTER__ == 8
#define NATIVE_CLASS ELFCLASS64
#define ST_TYPE ELF64_ST_TYPE
#define ST_BIND ELF64_ST_BIND
#else
#define NATIVE_CLASS ELFCLASS32
#define ST_TYPE ELF32_ST_TYPE
#define ST_BIND ELF32_ST_BIND
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define NATIVE_DATA ELFDATA2LSB
#else
#define NATIVE_DATA ELFDATA2MSB
#endif

#define ID_MAX 64 /* build IDs are 20 bytes (SHA-1) in practice */

struct sym {
	uintptr_t value, size;
	const char *name;
	unsigned char info;
};

struct obj {
	uintptr_t lo, hi;   /* its loaded segments */
	uintptr_t bias;     /* memory address - file address */
	const char *path;   /* in the names pool; "" for the program */
	const char *base;   /* the name shown with an offset */
	unsigned char id[ID_MAX];
	size_t idlen;       /* 0: no build ID in memory */
	int state;          /* 0 not read yet, 1 table, 2 none: dladdr */
	struct sym *syms;
	size_t nsyms;
	void *map[2];       /* the file and its debug file, mapped */
	size_t maplen[2];
};

struct mli_symbols {
	int listed;         /* 0 not yet, 1 listed, 2 could not */
	struct obj *objs;
	size_t nobjs, cap;
	char *names;
	size_t names_len, names_cap;
	char exe[4096];     /* the program's file, for its base name */
	char dbg[128];      /* a debug file's name */
};

/* ---- the loaded objects ---------------------------------------------------- */

static size_t note_align(size_t a)
{
	return a == 8 ? 8 : 4;
}

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* The GNU build ID in n bytes of notes at p; its length, 0 if none. */
static size_t build_id(const unsigned char *p, size_t n, size_t align,
		       unsigned char *id)
{
	size_t a = note_align(align), i = 0;
	while (n >= 12 && i <= n - 12) {
		ElfW(Nhdr) h;
		memcpy(&h, p + i, sizeof h);
		size_t name = i + 12;
		if (h.n_namesz > n - name)
			return 0;
		size_t desc = align_up(name + h.n_namesz, a);
		if (desc > n || h.n_descsz > n - desc)
			return 0;
		if (h.n_type == NT_GNU_BUILD_ID && h.n_namesz == 4 &&
		    memcmp(p + name, "GNU", 4) == 0 && h.n_descsz &&
		    h.n_descsz <= ID_MAX) {
			memcpy(id, p + desc, h.n_descsz);
			return h.n_descsz;
		}
		i = align_up(desc + h.n_descsz, a);
	}
	return 0;
}

struct listing {
	struct mli_symbols *s;
	size_t count, names; /* the counting pass */
	bool fill;
};

/* Called by dl_iterate_phdr, under the loader's lock: copies, allocates
 * nothing. */
static int list_one(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct listing *l = arg;
	const char *name = info->dlpi_name ? info->dlpi_name : "";
	size_t len = strlen(name) + 1;
	if (!l->fill) {
		l->count++;
		l->names += len;
		return 0;
	}
	struct mli_symbols *s = l->s;
	if (s->nobjs == s->cap || len > s->names_cap - s->names_len)
		return 0; /* loaded since the count */
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || !ph->p_memsz)
			continue;
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		if (a < lo)
			lo = a;
		if (a + ph->p_memsz > hi)
			hi = a + ph->p_memsz;
	}
	if (lo >= hi)
		return 0;
	struct obj *o = &s->objs[s->nobjs];
	memset(o, 0, sizeof *o);
	o->lo = lo;
	o->hi = hi;
	o->bias = info->dlpi_addr;
	memcpy(s->names + s->names_len, name, len);
	o->path = s->names + s->names_len;
	s->names_len += len;
	/* The build ID, from a note inside a loaded segment (mapped). */
	for (int i = 0; i < info->dlpi_phnum && !o->idlen; i++) {
		const ElfW(Phdr) *nt = &info->dlpi_phdr[i];
		if (nt->p_type != PT_NOTE)
			continue;
		for (int j = 0; j < info->dlpi_phnum; j++) {
			const ElfW(Phdr) *ld = &info->dlpi_phdr[j];
			if (ld->p_type == PT_LOAD && nt->p_vaddr >= ld->p_vaddr &&
			    nt->p_vaddr + nt->p_memsz <= ld->p_vaddr + ld->p_filesz) {
				o->idlen = build_id((const unsigned char *)(info->dlpi_addr +
									   nt->p_vaddr),
						    nt->p_memsz, nt->p_align, o->id);
				break;
			}
		}
	}
	s->nobjs++;
	return 0;
}

static bool list_objects(struct mli_symbols *s)
{
	struct listing l = { .s = s };
	/* The gate is closed only while a fork is prepared: wait it out. */
	for (int tries = 0; !mli_dl_iterate_fenced(list_one, &l); tries++) {
		if (tries == 100000)
			return false;
		sched_yield();
	}
	s->cap = l.count + 8;
	s->names_cap = l.names + 512;
	s->objs = mli_profile_malloc(s->cap * sizeof *s->objs);
	s->names = mli_profile_malloc(s->names_cap);
	if (!s->objs || !s->names)
		return false;
	l.fill = true;
	for (int tries = 0; !mli_dl_iterate_fenced(list_one, &l); tries++) {
		if (tries == 100000)
			return false;
		sched_yield();
	}
	/* By address, for the lookups (few objects: insertion). */
	for (size_t i = 1; i < s->nobjs; i++) {
		struct obj t = s->objs[i];
		size_t j = i;
		for (; j && s->objs[j - 1].lo > t.lo; j--)
			s->objs[j] = s->objs[j - 1];
		s->objs[j] = t;
	}
	return true;
}

static struct obj *find_object(struct mli_symbols *s, uintptr_t pc)
{
	size_t lo = 0, hi = s->nobjs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->objs[mid].lo <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo || pc >= s->objs[lo - 1].hi)
		return NULL;
	return &s->objs[lo - 1];
}

/* ---- a file's tables ------------------------------------------------------- */

static void *map_file(const char *path, size_t *len)
{
	/* O_NONBLOCK: a FIFO put at a library's name does not hang us. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return NULL;
	struct stat st;
	void *m = NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_size >= sizeof(ElfW(Ehdr)) &&
	    (uint64_t)st.st_size <= SIZE_MAX / 2) {
		m = (void *)syscall(SYS_mmap, NULL, (size_t)st.st_size, PROT_READ,
				    MAP_PRIVATE, fd, (off_t)0);
		if (m == MAP_FAILED)
			m = NULL;
		else
			*len = (size_t)st.st_size;
	}
	close(fd);
	return m;
}

/* The file's ELF header if it is an ELF file of this machine's kind with
 * section headers inside it. */
static const ElfW(Ehdr) *elf_header(const void *m, size_t len)
{
	const ElfW(Ehdr) *e = m;
	if (memcmp(e->e_ident, ELFMAG, SELFMAG) != 0 ||
	    e->e_ident[EI_CLASS] != NATIVE_CLASS ||
	    e->e_ident[EI_DATA] != NATIVE_DATA ||
	    e->e_shentsize != sizeof(ElfW(Shdr)) || !e->e_shoff ||
	    e->e_shoff > len || e->e_shnum == 0 ||
	    e->e_shnum > (len - e->e_shoff) / sizeof(ElfW(Shdr)))
		return NULL;
	return e;
}

static const ElfW(Shdr) *sections(const ElfW(Ehdr) *e)
{
	return (const ElfW(Shdr) *)((const char *)e + e->e_shoff);
}

static bool in_file(const ElfW(Shdr) *sh, size_t len)
{
	return sh->sh_type != SHT_NOBITS && sh->sh_offset <= len &&
	       sh->sh_size <= len - sh->sh_offset;
}

static const ElfW(Shdr) *find_section(const ElfW(Ehdr) *e, size_t len,
				      ElfW(Word) type)
{
	const ElfW(Shdr) *sh = sections(e);
	for (size_t i = 0; i < e->e_shnum; i++)
		if (sh[i].sh_type == type && in_file(&sh[i], len))
			return &sh[i];
	return NULL;
}

/* Does the file's build ID agree with the loaded object's? Yes when
 * either has none. */
static bool same_build(const struct obj *o, const ElfW(Ehdr) *e, size_t len)
{
	if (!o->idlen)
		return true;
	const ElfW(Shdr) *sh = sections(e);
	for (size_t i = 0; i < e->e_shnum; i++) {
		if (sh[i].sh_type != SHT_NOTE || !in_file(&sh[i], len))
			continue;
		unsigned char id[ID_MAX];
		size_t n = build_id((const unsigned char *)e + sh[i].sh_offset,
				    sh[i].sh_size, sh[i].sh_addralign, id);
		if (n)
			return n == o->idlen && memcmp(id, o->id, n) == 0;
	}
	return true;
}

/* nm's T or t: code that is not weak and not an IFUNC. */
static bool strong(const struct sym *y)
{
	int b = ST_BIND(y->info);
	return (b == STB_GLOBAL || b == STB_LOCAL) && ST_TYPE(y->info) != STT_GNU_IFUNC;
}

static int cmp_sym(const struct sym *a, const struct sym *b)
{
	if (a->value != b->value)
		return a->value < b->value ? -1 : 1;
	return strcmp(a->name, b->name);
}

/* Heapsort: qsort may allocate through the public malloc. */
static void sift(struct sym *a, size_t i, size_t n)
{
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			return;
		if (c + 1 < n && cmp_sym(&a[c], &a[c + 1]) < 0)
			c++;
		if (cmp_sym(&a[i], &a[c]) >= 0)
			return;
		struct sym t = a[i];
		a[i] = a[c];
		a[c] = t;
		i = c;
	}
}

static void sort_syms(struct sym *a, size_t n)
{
	for (size_t i = n / 2; i-- > 0;)
		sift(a, i, n);
	for (size_t k = n; k-- > 1;) {
		struct sym t = a[0];
		a[0] = a[k];
		a[k] = t;
		sift(a, 0, k);
	}
}

/* The function symbols of table `st` of the file e, sorted, one per
 * address; false if the table is malformed or there is no memory. */
static bool read_table(struct obj *o, const ElfW(Ehdr) *e, size_t len,
		       const ElfW(Shdr) *st)
{
	const ElfW(Shdr) *sh = sections(e);
	if (st->sh_entsize != sizeof(ElfW(Sym)) || st->sh_link >= e->e_shnum)
		return false;
	const ElfW(Shdr) *str = &sh[st->sh_link];
	if (str->sh_type != SHT_STRTAB || !in_file(str, len) || !str->sh_size)
		return false;
	const char *strs = (const char *)e + str->sh_offset;
	size_t strsz = str->sh_size;
	if (strs[strsz - 1] != '\0')
		return false;
	const ElfW(Sym) *y = (const ElfW(Sym) *)((const char *)e + st->sh_offset);
	size_t n = st->sh_size / sizeof *y, k = 0;
	struct sym *a = NULL;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			int type = ST_TYPE(y[i].st_info);
			size_t sec = y[i].st_shndx;
			if ((type != STT_FUNC && type != STT_GNU_IFUNC && type != STT_NOTYPE) ||
			    sec == SHN_UNDEF || sec >= SHN_LORESERVE || sec >= e->e_shnum ||
			    !(sh[sec].sh_flags & SHF_EXECINSTR) || !y[i].st_name ||
			    y[i].st_name >= strsz)
				continue;
			const char *name = strs + y[i].st_name;
			if (name[0] == '$') /* ARM's mapping symbols */
				continue;
			if (pass == 1)
				a[k] = (struct sym){ y[i].st_value, y[i].st_size, name,
						     y[i].st_info };
			k++;
		}
		if (pass == 0) {
			if (!k)
				return false;
			a = mli_profile_malloc(k * sizeof *a);
			if (!a)
				return false;
			k = 0;
		}
	}
	sort_syms(a, k);
	size_t w = 0;
	for (size_t i = 0; i < k;) {
		struct sym pick = a[i];
		uintptr_t size = 0;
		size_t j = i;
		for (; j < k && a[j].value == a[i].value; j++) {
			if (strong(&a[j]))
				pick = a[j];
			if (a[j].size > size)
				size = a[j].size;
		}
		pick.size = size;
		a[w++] = pick;
		i = j;
	}
	o->syms = a;
	o->nsyms = w;
	return true;
}

static const char *base_name(const char *path)
{
	const char *b = strrchr(path, '/');
	return b ? b + 1 : path;
}

/* The separate debug file's name, from the build ID. */
static const char *debug_file(struct mli_symbols *s, const struct obj *o)
{
	static const char hex[] = "0123456789abcdef";
	if (o->idlen < 2)
		return NULL;
	struct mli_buf b = { s->dbg, 0, sizeof s->dbg };
	mli_buf_str(&b, "/usr/lib/debug/.build-id/");
	char t[4] = { hex[o->id[0] >> 4], hex[o->id[0] & 15], '/', 0 };
	mli_buf_str(&b, t);
	for (size_t i = 1; i < o->idlen; i++) {
		char h[3] = { hex[o->id[i] >> 4], hex[o->id[i] & 15], 0 };
		mli_buf_str(&b, h);
	}
	mli_buf_str(&b, ".debug");
	return b.len + 1 < b.cap ? s->dbg : NULL;
}

/* Maps the file at `path` as o's file number `which` (0 its own, 1 its
 * debug file): its header if it is the object's. */
static const ElfW(Ehdr) *open_elf(struct obj *o, int which, const char *path,
				  size_t *len)
{
	void *m = map_file(path, len);
	if (!m)
		return NULL;
	const ElfW(Ehdr) *e = elf_header(m, *len);
	if (!e || !same_build(o, e, *len)) {
		syscall(SYS_munmap, m, *len);
		return NULL;
	}
	o->map[which] = m;
	o->maplen[which] = *len;
	return e;
}

static void read_object(struct mli_symbols *s, struct obj *o)
{
	o->state = 2;
	const char *path = o->path;
	if (!path[0]) {
		/* The program: its file, wherever argv[0] points. */
		static char exe_link[64];
		mli_proc_path("exe", exe_link, sizeof exe_link);
		ssize_t n = readlink(exe_link, s->exe, sizeof s->exe - 1);
		s->exe[n > 0 ? n : 0] = '\0';
		static const char deleted[] = " (deleted)";
		size_t len = strlen(s->exe), dl = sizeof deleted - 1;
		if (len > dl && strcmp(s->exe + len - dl, deleted) == 0)
			s->exe[len - dl] = '\0';
		o->base = s->exe[0] ? base_name(s->exe) : "[program]";
		path = exe_link;
	} else {
		o->base = base_name(path);
		if (path[0] != '/')
			return; /* the vDSO, or a name relative to who knows where */
	}
	size_t len;
	const ElfW(Ehdr) *e = open_elf(o, 0, path, &len);
	if (!e)
		return;
	const ElfW(Shdr) *st = find_section(e, len, SHT_SYMTAB);
	if (st && read_table(o, e, len, st)) {
		o->state = 1;
		return;
	}
	const char *dbg = debug_file(s, o);
	size_t dlen;
	const ElfW(Ehdr) *d = dbg ? open_elf(o, 1, dbg, &dlen) : NULL;
	if (d && (st = find_section(d, dlen, SHT_SYMTAB)) && read_table(o, d, dlen, st)) {
		o->state = 1;
		return;
	}
	st = find_section(e, len, SHT_DYNSYM);
	if (st && read_table(o, e, len, st))
		o->state = 1;
}

static const char *lookup(const struct obj *o, uintptr_t v)
{
	size_t lo = 0, hi = o->nsyms;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (o->syms[mid].value <= v)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* The nearest symbol, or one a little before that contains v (a
	 * label of size 0 inside a function). */
	for (size_t i = lo, seen = 0; i > 0 && seen < 8; i--, seen++) {
		const struct sym *y = &o->syms[i - 1];
		if (y->size ? v - y->value < y->size : i == lo)
			return y->name;
	}
	return NULL;
}

/* ---- the interface ----------------------------------------------------------- */

struct mli_symbols *mli_symbols_new(void)
{
	struct mli_symbols *s = mli_profile_malloc(sizeof *s);
	if (s)
		memset(s, 0, sizeof *s);
	return s;
}

void mli_symbols_free(struct mli_symbols *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nobjs; i++) {
		struct obj *o = &s->objs[i];
		mli_profile_free(o->syms);
		for (int k = 0; k < 2; k++)
			if (o->map[k])
				syscall(SYS_munmap, o->map[k], o->maplen[k]);
	}
	mli_profile_free(s->objs);
	mli_profile_free(s->names);
	mli_profile_free(s);
}

void mli_symbols_name(struct mli_symbols *s, uintptr_t pc,
		      struct mli_frame_name *out)
{
	*out = (struct mli_frame_name){ NULL, NULL, 0 };
	if (s && !s->listed)
		s->listed = list_objects(s) ? 1 : 2;
	struct obj *o = s && s->listed == 1 ? find_object(s, pc) : NULL;
	if (o) {
		if (!o->state)
			read_object(s, o);
		out->object = o->base;
		out->off = pc - o->bias;
		if (o->state == 1) {
			out->sym = lookup(o, pc - o->bias);
			return;
		}
	}
	/* No table: the dynamic symbols the loader has in memory. */
	Dl_info info;
	memset(&info, 0, sizeof info);
	struct link_map *lm = NULL;
	if (!dladdr1((void *)pc, &info, (void **)&lm, RTLD_DL_LINKMAP))
		return;
	out->sym = info.dli_sname;
	if (!out->object && info.dli_fname) {
		out->object = base_name(info.dli_fname);
		out->off = pc - (lm ? lm->l_addr : (uintptr_t)info.dli_fbase);
	}
}
