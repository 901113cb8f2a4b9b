# bench.mk: `make bench`, the benchmark suite of issue 5 (scripts/bench/run):
# workloads under glibc, jemalloc and memlimits, callgrind ratios, limit
# accuracy, count exactness and token latency; writes build/bench/results.md
# and build/bench/ratios.png. BENCH_QUICK=1 for a short run. Included from
# the Makefile after $(LIB) and $(B) are defined; never part of `make test`.
bench: $(LIB) | $(B)/.setup-bench
	scripts/bench/run

.PHONY: bench
