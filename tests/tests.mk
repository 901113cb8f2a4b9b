# Tests. Every tests/test_*.c is a cmocka program:
#  - tests/unit_*.c link the engine's core objects directly (no preload);
#  - tests/test_*.c are ordinary programs that include shim/memlimits.h and
#    run under LD_PRELOAD=build/libmemlimits.so (tests/run does that);
#  - tests/*.sh are shell tests that print "N passed, M failed".
# tests/run runs them all and prints the total.

TEST_CFLAGS := -O1 -g $(WARN) -std=gnu11 -pthread -I. -MMD -MP
UNIT_SRC    := $(wildcard tests/unit_*.c)
TEST_SRC    := $(wildcard tests/test_*.c)
HELPER_SRC  := $(filter-out tests/progs/lib%.c tests/progs/tu_%.c,$(wildcard tests/progs/*.c))
HELPERLIB_SRC := $(wildcard tests/progs/lib*.c)
HELPERXXLIB_SRC := $(wildcard tests/progs/lib*.cc)
HELPERXX_SRC:= $(filter-out tests/progs/lib%.cc,$(wildcard tests/progs/*.cc))
UNIT_BIN    := $(UNIT_SRC:tests/%.c=$(B)/tests/%)
TEST_BIN    := $(TEST_SRC:tests/%.c=$(B)/tests/%)
HELPER_BIN  := $(HELPER_SRC:tests/progs/%.c=$(B)/tests/progs/%) \
	       $(HELPERXX_SRC:tests/progs/%.cc=$(B)/tests/progs/%) \
	       $(HELPERLIB_SRC:tests/progs/%.c=$(B)/tests/progs/%.so) \
	       $(HELPERXXLIB_SRC:tests/progs/%.cc=$(B)/tests/progs/%.so)
# The unit tests link the engine's files directly; unit_engine brings a fake
# backend and links all of core/, the others only what needs no backend.
UNIT_OBJ    := $(B)/core/config.o $(B)/core/fmt.o $(B)/core/sysmem.o
$(B)/tests/unit_engine: UNIT_OBJ := $(CORE_OBJ)
$(B)/tests/unit_maps: UNIT_OBJ := $(B)/core/maps.o $(B)/core/rawsys.o
$(B)/tests/unit_marks: UNIT_OBJ := $(B)/core/marks.o

$(B)/tests/unit_%: tests/unit_%.c $(CORE_OBJ) | $(B)/.setup-test
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) $(SAN_FLAGS) -DMEMLIMITS_ENGINE -o $@ $< $(UNIT_OBJ) -lcmocka -lm

$(B)/tests/test_%: tests/test_%.c tests/harness.h shim/memlimits.h | $(B)/.setup-test
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< -lcmocka -ldl -lm $(PROG_LDFLAGS)

# Linked with Debian's libjemalloc.so.2, as redis-server is.
$(B)/tests/test_jeapi: PROG_LDFLAGS = -ljemalloc

# At -O2, where gcc moves the header's inline calls around a setjmp (a mask
# told by its return address was undone: task_longjmp's same-frame case).
$(B)/tests/progs/task_longjmp: TEST_CFLAGS += -O2

$(B)/tests/progs/%: tests/progs/%.c shim/memlimits.h | $(B)/.setup-test
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< -ldl -lm $(PROG_LDFLAGS)

# deepbind finds libdeep.so by its RUNPATH, as the caller of dlopen.
$(B)/tests/progs/deepbind: PROG_LDFLAGS = -Wl,--enable-new-dtags,-rpath,'$$ORIGIN'
$(B)/tests/progs/deepbind: $(B)/tests/progs/libdeep.so
$(B)/tests/progs/prof_jeapi: PROG_LDFLAGS = -ljemalloc
# prof_peak calls into libpeaksym.so (found by its RUNPATH); its stripped
# copy has no .symtab, for the profile's frame names.
$(B)/tests/progs/prof_peak: PROG_LDFLAGS = -L$(B)/tests/progs -lpeaksym \
	-Wl,--enable-new-dtags,-rpath,'$$ORIGIN'
$(B)/tests/progs/prof_peak: $(B)/tests/progs/libpeaksym.so
$(B)/tests/progs/prof_peak_stripped: $(B)/tests/progs/prof_peak
	strip -o $@ $<
HELPER_BIN += $(B)/tests/progs/prof_peak_stripped
# token_elsewhere: a second translation unit (tests/progs/tu_*.c are never
# programs of their own) and a shared library found by its RUNPATH.
$(B)/tests/progs/token_elsewhere: tests/progs/tu_token_set.c $(B)/tests/progs/libtokset.so
$(B)/tests/progs/token_elsewhere: PROG_LDFLAGS = tests/progs/tu_token_set.c \
	-L$(B)/tests/progs -ltokset -Wl,--enable-new-dtags,-rpath,'$$ORIGIN'

# Shared libraries for the tests (tests/progs/libNAME.c -> libNAME.so).
$(B)/tests/progs/lib%.so: tests/progs/lib%.c | $(B)/.setup-test
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -shared -fPIC -o $@ $<

$(B)/tests/progs/lib%.so: tests/progs/lib%.cc shim/memlimits.h | $(B)/.setup-test
	@mkdir -p $(dir $@)
	$(CXX) -O1 -g -Wall -Wextra -I. -shared -fPIC -o $@ $< -ldl

$(B)/tests/progs/%: tests/progs/%.cc shim/memlimits.h shim/memlimits.hpp | $(B)/.setup-test
	@mkdir -p $(dir $@)
	$(CXX) -O1 -g -Wall -Wextra -pthread -I. -o $@ $< -ldl

test-build: $(LIB) $(PROF_LIB) $(PORT_LIB) $(MAN) $(UNIT_BIN) $(TEST_BIN) $(HELPER_BIN)

test: test-build
	tests/run

.PHONY: test test-build
-include $(UNIT_BIN:=.d) $(TEST_BIN:=.d)

# The engine's unit tests under ThreadSanitizer and UndefinedBehaviorSanitizer
# (the preload itself cannot run under them: they replace malloc too), then
# under valgrind's helgrind and drd, built with MLI_HELGRIND so that they
# know the engine's spin lock and atomic flags (they do not model C11
# atomics).
SAN_TSAN  := -fsanitize=thread
SAN_UBSAN := -fsanitize=undefined -fno-sanitize-recover=all
test-sanitize: | $(B)/.setup-test
	$(MAKE) B=build/tsan CFLAGS="-O1 -g $(SAN_TSAN)" SAN_FLAGS="$(SAN_TSAN)" unit-build
	B=build/tsan TSAN_OPTIONS=halt_on_error=1 tests/run --unit
	$(MAKE) B=build/ubsan CFLAGS="-O1 -g $(SAN_UBSAN)" SAN_FLAGS="$(SAN_UBSAN)" unit-build
	B=build/ubsan UBSAN_OPTIONS=print_stacktrace=1 tests/run --unit
	$(MAKE) B=build/helgrind CFLAGS="-O1 -g -DMLI_HELGRIND" SAN_FLAGS="-DMLI_HELGRIND" unit-build
	CMOCKA_MESSAGE_OUTPUT=stdout valgrind -q --tool=helgrind --error-exitcode=1 \
		build/helgrind/tests/unit_engine
	CMOCKA_MESSAGE_OUTPUT=stdout valgrind -q --tool=drd --error-exitcode=1 \
		build/helgrind/tests/unit_engine

unit-build: $(UNIT_BIN)

.PHONY: test-sanitize unit-build
