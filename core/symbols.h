/* symbols.h: names of code addresses from the loaded objects' ELF symbol
 * tables (core/symbols.c), for the profile's folded stacks. */
#ifndef MLI_SYMBOLS_H
#define MLI_SYMBOLS_H
#include <link.h>
#include <stdbool.h>
#include <stdint.h>

struct mli_symbols;

/* An empty set of tables: the loaded objects are listed, and their tables
 * read, at the first lookups that need them. NULL if there is no memory.
 * Calls the loader, reads files and allocates (the profile's own blocks):
 * never under a lock of the library. */
struct mli_symbols *mli_symbols_new(void);
void mli_symbols_free(struct mli_symbols *s);

struct mli_frame_name {
	const char *sym;    /* the function, or NULL */
	const char *object; /* its object's base name; NULL if in no object */
	uintptr_t off;      /* pc in the object's file, as addr2line -e takes it */
};
/* The name of code address pc (a return address less one). The strings
 * live until mli_symbols_free. */
void mli_symbols_name(struct mli_symbols *s, uintptr_t pc,
		      struct mli_frame_name *out);

/* unwind.c: dl_iterate_phdr behind the unwinder's fork gate; false (and
 * nothing called) while a fork is being prepared. */
bool mli_dl_iterate_fenced(int (*cb)(struct dl_phdr_info *, size_t, void *),
			   void *arg);

#endif
