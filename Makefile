# memlimits. `make` builds build/libmemlimits.so (and the profiling build and
# the memlimit wrapper's man page); `make test` runs every
# test; `make demo` shows a limit firing on python3; `make bench` measures.
# Missing Debian packages are installed by scripts/setup.

CC      ?= cc
PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
MANDIR  ?= $(PREFIX)/share/man
# The one place the version is written: the wrapper reads it in the source
# tree, and `make install` writes it into the installed wrapper.
VERSION := $(shell cat VERSION)
B       := build
ARCH    := $(shell $(CC) -print-multiarch 2>/dev/null)
JE_PIC  ?= /usr/lib/$(ARCH)/libjemalloc_pic.a

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS  ?= -O2 -g
ENGINE_CFLAGS := $(CFLAGS) $(WARN) -std=gnu11 -fPIC -fvisibility=hidden \
	-fno-plt -ftls-model=initial-exec -DMEMLIMITS_ENGINE -MMD -MP \
	-Dsyscall=mli_syscall

CORE_SRC    := $(wildcard core/*.c)
PRELOAD_SRC := $(wildcard preload/*.c)
PRELOAD_CXX := $(wildcard preload/*.cc)
CORE_OBJ    := $(CORE_SRC:%.c=$(B)/%.o)
PRELOAD_OBJ := $(PRELOAD_SRC:%.c=$(B)/%.o) $(PRELOAD_CXX:%.cc=$(B)/%.o)
PROF_OBJ    := $(PRELOAD_SRC:%.c=$(B)/prof/%.o) $(PRELOAD_CXX:%.cc=$(B)/%.o)
LIB         := $(B)/libmemlimits.so
PROF_LIB    := $(B)/libmemlimits-prof.so
# The portable build: C instead of the x86-64 assembly of the fast path
# (what other architectures get); built and tested by make test.
PORT_OBJ    := $(CORE_SRC:%.c=$(B)/portable/%.o) $(PRELOAD_SRC:%.c=$(B)/portable/%.o) \
	       $(PRELOAD_CXX:%.cc=$(B)/%.o)
PORT_LIB    := $(B)/libmemlimits-portable.so

MAN         := $(B)/memlimit.1

all: $(LIB) $(PROF_LIB) $(MAN)

$(B)/.setup-build: scripts/setup
	@mkdir -p $(B)
	scripts/setup build
	@touch $@

$(B)/.setup-test: scripts/setup
	@mkdir -p $(B)
	scripts/setup test
	@touch $@

$(B)/.setup-bench: scripts/setup
	@mkdir -p $(B)
	scripts/setup bench
	@touch $@

$(B)/%.o: %.c | $(B)/.setup-build
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -c -o $@ $<

# The profiling build: the same engine, and a free() that notices the
# profiler's blocks (preload/region.c).
$(B)/prof/%.o: %.c | $(B)/.setup-build
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -DMLI_PROF_BUILD -c -o $@ $<

# Exceptions and cancellations may unwind through a task (see task.c), and
# std::bad_alloc and new_handlers' exceptions through operator new.
$(B)/core/task.o: ENGINE_CFLAGS += -fexceptions
$(B)/preload/cxx.o $(B)/prof/preload/cxx.o: ENGINE_CFLAGS += -fexceptions

# The one C++ object (preload/cxx_catch.cc, a catch for cxx.c): no header,
# no libstdc++ at link time; its references to the C++ runtime are renamed to
# cxx.c's trampolines, which call the program's runtime (found at run time).
CXX_RUNTIME_REFS := __gxx_personality_v0=mli_cxx_personality \
	__cxa_begin_catch=mli_cxx_begin_catch __cxa_end_catch=mli_cxx_end_catch
$(B)/preload/%.o: preload/%.cc | $(B)/.setup-build
	@mkdir -p $(dir $@)
	$(CXX) $(CFLAGS) -Wall -Wextra -fPIC -fvisibility=hidden -fno-rtti \
		-nostdinc++ -c -o $@.tmp $<
	objcopy $(CXX_RUNTIME_REFS:%=--redefine-sym %) $@.tmp $@
	rm -f $@.tmp

# operator delete(void *) and operator delete(void *, std::align_val_t) are
# free itself (jemalloc's in the default library, region.c's in the
# profiling one): the same address, no extra call. So are glibc's
# __libc_malloc ... __libc_free, which some tools call (a free of such a
# block crashed when they were glibc's).
CXX_ALIASES := -Wl,--defsym=_ZdlPv=free -Wl,--defsym=_ZdlPvSt11align_val_t=free \
	-Wl,--defsym=__libc_malloc=malloc -Wl,--defsym=__libc_calloc=calloc \
	-Wl,--defsym=__libc_realloc=realloc -Wl,--defsym=__libc_memalign=memalign \
	-Wl,--defsym=__libc_valloc=valloc -Wl,--defsym=__libc_pvalloc=pvalloc \
	-Wl,--defsym=__libc_free=free

# jemalloc's PIC archive with its public names renamed (preload/jemalloc.syms):
# linked into the library, called directly, never exported. Two of its
# internals are replaced: the zeroing of recycled extents (preload/jezero.c:
# the archive's definition made weak) and the thread-exit purge of tcache.o
# (preload/jedecay.c: tcache.o's calls of je_arena_decay renamed).
je_tcache_decay = rm -rf $(1).d && mkdir $(1).d && \
	(cd $(1).d && ar x ../$(notdir $(1)) tcache.pic.o && \
	 objcopy --redefine-sym je_arena_decay=mli_je_tcache_decay tcache.pic.o && \
	 ar r ../$(notdir $(1)) tcache.pic.o) && rm -rf $(1).d
$(B)/jemalloc.a: preload/jemalloc.syms Makefile | $(B)/.setup-build
	objcopy --redefine-syms=preload/jemalloc.syms \
		--weaken-symbol=je_ehooks_default_zero_impl $(JE_PIC) $@
	$(call je_tcache_decay,$@)

$(B)/jemalloc-prof.a: preload/jemalloc-prof.syms Makefile | $(B)/.setup-build
	objcopy --redefine-syms=preload/jemalloc-prof.syms \
		--weaken-symbol=je_ehooks_default_zero_impl $(JE_PIC) $@
	$(call je_tcache_decay,$@)

# exports.map is a prerequisite (a change relinks), not an input file.
LINK_LIB = $(CC) -shared -o $@ $(filter-out %.map,$^) \
	-Wl,--version-script=preload/exports.map $(CXX_ALIASES) $(JE_FREE) \
	-Wl,-z,relro,-z,now,-z,nodelete -Wl,--no-undefined -lpthread -ldl -lm

# The library's frees of the program's blocks (operator delete's other
# forms, free_sized, realloc(p, 0)) tail-call free by a local name
# (preload/alloc.h: mli_user_free).
JE_FREE := -Wl,--defsym=mli_free_exported=free

$(LIB): $(CORE_OBJ) $(PRELOAD_OBJ) $(B)/jemalloc.a preload/exports.map
	$(LINK_LIB)

$(PROF_LIB): $(CORE_OBJ) $(PROF_OBJ) $(B)/jemalloc-prof.a preload/exports.map
	$(LINK_LIB)

$(B)/portable/%.o: %.c | $(B)/.setup-build
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -DMLI_PORTABLE_MALLOC -c -o $@ $<
$(B)/portable/core/task.o $(B)/portable/preload/cxx.o: ENGINE_CFLAGS += -fexceptions

$(PORT_LIB): $(PORT_OBJ) $(B)/jemalloc.a preload/exports.map
	$(LINK_LIB)

# The man page is made from `memlimit --help` (scripts/mkman): one source.
$(MAN): scripts/memlimit scripts/mkman VERSION
	@mkdir -p $(B)
	scripts/mkman scripts/memlimit > $@.tmp
	mv $@.tmp $@

include tests/tests.mk

install: $(LIB) $(PROF_LIB) $(MAN)
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PREFIX)/include \
		$(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(LIBDIR)/pkgconfig \
		$(DESTDIR)$(MANDIR)/man1
	install -m 755 $(LIB) $(DESTDIR)$(LIBDIR)/libmemlimits.so
	install -m 755 $(PROF_LIB) $(DESTDIR)$(LIBDIR)/libmemlimits-prof.so
	install -m 644 shim/memlimits.h shim/memlimits.hpp $(DESTDIR)$(PREFIX)/include/
	sed -e 's|^libdir_hint=""$$|libdir_hint="$(LIBDIR)"|' \
		-e 's|^version=""$$|version="$(VERSION)"|' scripts/memlimit \
		> $(DESTDIR)$(PREFIX)/bin/memlimit
	chmod 755 $(DESTDIR)$(PREFIX)/bin/memlimit
	install -m 644 $(MAN) $(DESTDIR)$(MANDIR)/man1/memlimit.1
	install -m 755 scripts/memlimit-report $(DESTDIR)$(PREFIX)/bin/memlimit-report
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' \
		scripts/memlimits.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/memlimits.pc

clean:
	rm -rf $(B)

.PHONY: all install clean
-include $(CORE_OBJ:.o=.d) $(PRELOAD_OBJ:.o=.d) $(PROF_OBJ:.o=.d) $(PORT_OBJ:.o=.d)

demo: $(LIB) $(PROF_LIB) | $(B)/.setup-test
	scripts/demo

bench-fastpath: $(LIB) $(PROF_LIB) | $(B)/.setup-bench
	scripts/bench-fastpath

include scripts/bench/bench.mk

.PHONY: demo bench-fastpath

# A longer fuzz run of the configuration parser than the one in make test.
fuzz: | $(B)/.setup-test
	FUZZ_SECONDS=$${FUZZ_SECONDS:-300} bash tests/fuzz.sh

.PHONY: fuzz
