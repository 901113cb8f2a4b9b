# print-tests.mk: `make -f Makefile -f print-tests.mk print-tests` in an
# automake tree prints its $(TESTS) (used by scripts/realsuites).
print-tests:
	@echo $(TESTS)
