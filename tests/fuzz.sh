#!/bin/bash
# fuzz.sh: a short libFuzzer run of the MEMLIMITS_* parser (FUZZ_SECONDS,
# default 10; `make fuzz` runs longer). Prints "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
out=$B/fuzz
mkdir -p "$out/corpus"
if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -DMEMLIMITS_ENGINE -I. \
	-o "$out/fuzz_config" tests/fuzz/fuzz_config.c core/config.c core/fmt.c core/sysmem.c; then
	echo "0 passed, 1 failed"
	exit 1
fi
printf 'MEMLIMITS_GLOBAL_MEMORY=64M\nMEMLIMITS_ALLOCATIONS=1GiB' >"$out/corpus/seed1"
printf 'MEMLIMITS_ON_LIMIT=abort\nMEMLIMITS_REPORT=stderr' >"$out/corpus/seed2"
printf '9223372036854775807' >"$out/corpus/seed3"
printf 'MEMLIMITS_THREAD_ALLOCATIONS=8388607T\nMEMLIMITS_X=1' >"$out/corpus/seed4"
if "$out/fuzz_config" -max_total_time="${FUZZ_SECONDS:-10}" -max_len=256 \
	"$out/corpus" >"$out/log" 2>&1; then
	tail -2 "$out/log"
	echo "1 passed, 0 failed"
else
	tail -40 "$out/log"
	echo "0 passed, 1 failed"
	exit 1
fi
