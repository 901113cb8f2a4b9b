# bench.mk: `make bench`, the benchmark suite of issues 5, 10 and 13
# (scripts/bench/run): workloads and workload kinds under glibc, jemalloc and
# memlimits, the thread-count sweep, callgrind ratios, limit accuracy, count
# exactness and token latency; writes build/bench/results.md and
# build/bench/ratios.png. BENCH_QUICK=1 for a short run. `make bench-threads`
# runs the thread-count sweep alone (build/bench/threads/), `make bench-kinds`
# the workload kinds alone (build/bench/kinds/), `make
# bench-pressure` the soft limit's and the tree budget's figures alone
# (scripts/bench/pressure). Included from
# the Makefile after $(LIB) and $(B) are defined; never part of `make test`.
bench: $(LIB) $(PROF_LIB) | $(B)/.setup-bench
	scripts/bench/run

bench-threads: $(LIB) | $(B)/.setup-bench
	scripts/bench/run threads

bench-kinds: $(LIB) $(PROF_LIB) | $(B)/.setup-bench
	scripts/bench/run kinds

bench-pressure: $(LIB) | $(B)/.setup-bench
	scripts/bench/pressure

.PHONY: bench bench-threads bench-kinds bench-pressure
