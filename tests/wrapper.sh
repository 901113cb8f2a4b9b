#!/usr/bin/env bash
# shellcheck disable=SC2016  # many $VARS are meant for the child shell
# Tests for scripts/memlimit. Does not need the real library: builds a fake
# tree with a tiny (empty) shared object in place of libmemlimits.so.
set -u

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
script="$here/../scripts/memlimit"

passed=0
failed=0

pass() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    printf 'FAIL: %s\n' "$1" >&2
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/memlimit-test.XXXXXX") || exit 1
trap 'rm -rf -- "$tmp"' EXIT

mkdir -p "$tmp/tree/bin" "$tmp/tree/build" "$tmp/inst/bin" "$tmp/inst/lib" \
    "$tmp/nolib/bin" "$tmp/alt" "$tmp/links"
cp -- "$script" "$tmp/tree/bin/memlimit"
cp -- "$script" "$tmp/inst/bin/memlimit"
cp -- "$script" "$tmp/nolib/bin/memlimit"
chmod +x "$tmp/tree/bin/memlimit" "$tmp/inst/bin/memlimit" "$tmp/nolib/bin/memlimit"

: > "$tmp/empty.c"
cc=${CC:-cc}
if ! "$cc" -shared -fPIC -o "$tmp/tree/build/libmemlimits.so" "$tmp/empty.c"; then
    echo "cannot build a test shared object with $cc" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
cp -- "$tmp/tree/build/libmemlimits.so" "$tmp/tree/build/libmemlimits-prof.so"
cp -- "$tmp/tree/build/libmemlimits.so" "$tmp/inst/lib/libmemlimits.so"
cp -- "$tmp/tree/build/libmemlimits.so" "$tmp/alt/other.so"
# A second tiny object to stand in for a pre-existing LD_PRELOAD entry.
"$cc" -shared -fPIC -o "$tmp/alt/pre.so" "$tmp/empty.c"

ml="$tmp/tree/bin/memlimit"
lib="$tmp/tree/build/libmemlimits.so"

out=""
err=""
rc=0
# run CMD...: captures stdout/stderr/status of CMD, run with a clean set of
# MEMLIMITS_* / LD_PRELOAD variables unless the caller adds them via env.
run() {
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
}
clean_env=(env -u LD_PRELOAD -u MEMLIMITS_GLOBAL_MEMORY -u MEMLIMITS_ALLOCATIONS
    -u MEMLIMITS_THREAD_ALLOCATIONS -u MEMLIMITS_ON_LIMIT -u MEMLIMITS_REPORT
    -u MEMLIMITS_PROFILE -u MEMLIMITS_SAMPLE_INTERVAL -u MEMLIMITS_SEED
    -u MEMLIMITS_LIBRARY)

expect_rc() { # name expected
    if [[ $rc -eq $2 ]]; then pass; else fail "$1: exit status $rc, expected $2 (stderr: $err)"; fi
}
expect_out() { # name expected
    if [[ $out == "$2" ]]; then pass; else fail "$1: stdout '$out', expected '$2'"; fi
}
expect_err_has() { # name substring
    if [[ $err == *"$2"* ]]; then pass; else fail "$1: stderr lacks '$2': $err"; fi
}
expect_usage_error() { # name
    expect_rc "$1" 125
    expect_err_has "$1" "memlimit: "
    expect_err_has "$1" "Try 'memlimit --help'."
}

show='printf "%s|" "${MEMLIMITS_GLOBAL_MEMORY-unset}" "${MEMLIMITS_ALLOCATIONS-unset}" "${MEMLIMITS_THREAD_ALLOCATIONS-unset}" "${MEMLIMITS_ON_LIMIT-unset}" "${MEMLIMITS_REPORT-unset}" "${MEMLIMITS_PROFILE-unset}" "${MEMLIMITS_SAMPLE_INTERVAL-unset}" "${MEMLIMITS_SEED-unset}"'

# --- static checks -----------------------------------------------------------
if bash -n "$script"; then pass; else fail "bash -n scripts/memlimit"; fi
if bash -n "${BASH_SOURCE[0]}"; then pass; else fail "bash -n tests/wrapper.sh"; fi
if command -v shellcheck >/dev/null 2>&1; then
    if shellcheck "$script" "${BASH_SOURCE[0]}"; then pass; else fail "shellcheck"; fi
else
    echo "shellcheck not installed; skipping" >&2
fi
if [[ -x $script ]]; then pass; else fail "scripts/memlimit is not executable"; fi
if grep -qx 'libdir_hint=""' "$script"; then pass; else fail "no 'libdir_hint=\"\"' line"; fi

# --- options become environment variables -----------------------------------
run "${clean_env[@]}" "$ml" --global-memory 1M --allocations 2G --thread-allocations 3KiB \
    --on-limit fail --report stderr --profile /tmp/p.out --sample-interval 512K --seed 42 \
    -- sh -c "$show"
expect_rc "all options" 0
expect_out "all options" "1M|2G|3KiB|fail|stderr|/tmp/p.out|512K|42|"

run "${clean_env[@]}" "$ml" --global-memory=1M --allocations=2G --thread-allocations=3KiB \
    --on-limit=abort --report=/tmp/r.json --profile=/tmp/p.out --sample-interval=512K --seed=42 \
    sh -c "$show"
expect_rc "--opt=value form" 0
expect_out "--opt=value form" "1M|2G|3KiB|abort|/tmp/r.json|/tmp/p.out|512K|42|"

run "${clean_env[@]}" "$ml" sh -c "$show"
expect_rc "no options" 0
expect_out "no options" "unset|unset|unset|unset|unset|unset|unset|unset|"

# Values are passed verbatim (the library validates them), incl. odd ones.
run "${clean_env[@]}" "$ml" --global-memory 'not a size' --report='a b=c' -- sh -c "$show"
expect_rc "verbatim values" 0
expect_out "verbatim values" "not a size|unset|unset|unset|a b=c|unset|unset|unset|"

run "${clean_env[@]}" "$ml" --global-memory=1M --global-memory=2M -- sh -c "$show"
expect_out "last option wins" "2M|unset|unset|unset|unset|unset|unset|unset|"

# Existing MEMLIMITS_* are kept; an option overrides the same variable.
run "${clean_env[@]}" MEMLIMITS_GLOBAL_MEMORY=9G MEMLIMITS_SEED=7 "$ml" --global-memory 1M -- sh -c "$show"
expect_out "existing env kept / overridden" "1M|unset|unset|unset|unset|unset|unset|7|"

# Arguments with spaces and glob characters reach CMD intact.
run "${clean_env[@]}" "$ml" printf '<%s>' 'a b' '*' '' '--seed'
expect_rc "argument quoting" 0
expect_out "argument quoting" "<a b><*><><--seed>"

# `--` is needed (and works) for a command starting with '-'.
run "${clean_env[@]}" "$ml" -- -nonexistent-cmd
if [[ $rc -ne 0 && $rc -ne 125 ]]; then pass; else fail "'--' then dash command: status $rc"; fi

# --- LD_PRELOAD --------------------------------------------------------------
run "${clean_env[@]}" "$ml" -- sh -c 'printf %s "$LD_PRELOAD"'
expect_rc "LD_PRELOAD set" 0
expect_out "LD_PRELOAD set" "$lib"

run "${clean_env[@]}" LD_PRELOAD="$tmp/alt/pre.so" "$ml" -- sh -c 'printf %s "$LD_PRELOAD"'
expect_rc "LD_PRELOAD prepended" 0
expect_out "LD_PRELOAD prepended" "$lib:$tmp/alt/pre.so"

run "${clean_env[@]}" LD_PRELOAD= "$ml" -- sh -c 'printf %s "$LD_PRELOAD"'
expect_out "empty LD_PRELOAD" "$lib"

# --- exit status --------------------------------------------------------------
run "${clean_env[@]}" "$ml" -- sh -c 'exit 7'
expect_rc "exit status propagated" 7
run "${clean_env[@]}" "$ml" --seed 1 sh -c 'exit 0'
expect_rc "exit status 0" 0
run "${clean_env[@]}" "$ml" true
expect_rc "true" 0
run "${clean_env[@]}" "$ml" false
expect_rc "false" 1

# exec: the command replaces the wrapper (same PID).
run "${clean_env[@]}" bash -c 'echo $$; exec "$1" -- sh -c "echo \$\$"' _ "$ml"
if [[ $(printf '%s\n' "$out" | sort -u | wc -l) -eq 1 ]]; then pass; else fail "command is exec'd: $out"; fi

# --- usage errors -------------------------------------------------------------
run "${clean_env[@]}" "$ml" --bogus -- true
expect_usage_error "unknown option"
expect_err_has "unknown option" "--bogus"

run "${clean_env[@]}" "$ml" --bogus=1 true
expect_usage_error "unknown option with ="

run "${clean_env[@]}" "$ml" -x true
expect_usage_error "unknown short option"

run "${clean_env[@]}" "$ml" --global-memory
expect_usage_error "missing value"
expect_err_has "missing value" "--global-memory"

run "${clean_env[@]}" "$ml" true --seed
expect_rc "options after CMD belong to CMD" 0

run "${clean_env[@]}" "$ml" --on-limit crash -- true
expect_usage_error "bad --on-limit"
run "${clean_env[@]}" "$ml" --on-limit= -- true
expect_usage_error "empty --on-limit"

run "${clean_env[@]}" "$ml"
expect_usage_error "no command"
run "${clean_env[@]}" "$ml" --seed 3 --
expect_usage_error "no command after --"

# --- help -------------------------------------------------------------------
for h in --help -h; do
    run "${clean_env[@]}" "$ml" "$h"
    expect_rc "$h" 0
    for word in --global-memory --allocations --thread-allocations --on-limit \
        --report --profile --sample-interval --seed \
        MEMLIMITS_GLOBAL_MEMORY MEMLIMITS_ALLOCATIONS MEMLIMITS_THREAD_ALLOCATIONS \
        MEMLIMITS_ON_LIMIT MEMLIMITS_REPORT MEMLIMITS_PROFILE \
        MEMLIMITS_SAMPLE_INTERVAL MEMLIMITS_SEED MEMLIMITS_LIBRARY \
        fail abort stderr JSON ENOMEM 125 1024; do
        if [[ $out == *"$word"* ]]; then pass; else fail "$h does not mention $word"; fi
    done
done
# --help wins even with a command-less invocation after options.
run "${clean_env[@]}" "$ml" --seed 1 --help
expect_rc "--help after option" 0

# --- locating the library --------------------------------------------------------
# The profiler options (or variables) select the profiling build.
for opt in "--profile /tmp/p" "--sample-interval 64K" "--seed 3"; do
    # shellcheck disable=SC2086
    run "${clean_env[@]}" "$ml" $opt -- sh -c 'printf %s "$LD_PRELOAD"'
    expect_out "profiling build for $opt" "$tmp/tree/build/libmemlimits-prof.so"
done
run "${clean_env[@]}" MEMLIMITS_SEED=1 "$ml" -- sh -c 'printf %s "$LD_PRELOAD"'
expect_out "profiling build for MEMLIMITS_SEED" "$tmp/tree/build/libmemlimits-prof.so"
run "${clean_env[@]}" "$ml" --global-memory 1G -- sh -c 'printf %s "$LD_PRELOAD"'
expect_out "default build without profiling" "$lib"

run "${clean_env[@]}" "$tmp/inst/bin/memlimit" -- sh -c 'printf %s "$LD_PRELOAD"'
expect_rc "installed layout" 0
expect_out "installed layout" "$tmp/inst/lib/libmemlimits.so"

run "${clean_env[@]}" "$tmp/nolib/bin/memlimit" -- true
expect_rc "library not found" 125
expect_err_has "library not found" "$tmp/nolib/bin/../build/libmemlimits.so"
expect_err_has "library not found" "$tmp/nolib/bin/../lib/libmemlimits.so"

run "${clean_env[@]}" MEMLIMITS_LIBRARY="$tmp/alt/other.so" "$tmp/nolib/bin/memlimit" -- sh -c 'printf %s "$LD_PRELOAD"'
expect_rc "MEMLIMITS_LIBRARY override" 0
expect_out "MEMLIMITS_LIBRARY override" "$tmp/alt/other.so"

run "${clean_env[@]}" MEMLIMITS_LIBRARY="$tmp/alt/other.so" "$ml" -- sh -c 'printf %s "$LD_PRELOAD"'
expect_out "MEMLIMITS_LIBRARY beats source tree" "$tmp/alt/other.so"

run "${clean_env[@]}" MEMLIMITS_LIBRARY="$tmp/alt/missing.so" "$ml" -- true
expect_rc "MEMLIMITS_LIBRARY missing" 125
expect_err_has "MEMLIMITS_LIBRARY missing" "$tmp/alt/missing.so"

ln -s "$ml" "$tmp/links/memlimit"
ln -s "$tmp/links/memlimit" "$tmp/links/ml2"
run "${clean_env[@]}" "$tmp/links/ml2" -- sh -c 'printf %s "$LD_PRELOAD"'
expect_rc "symlinked script" 0
expect_out "symlinked script" "$lib"

run "${clean_env[@]}" PATH="$tmp/links:$PATH" memlimit -- sh -c 'printf %s "$LD_PRELOAD"'
expect_rc "via PATH" 0
expect_out "via PATH" "$lib"

# libdir_hint (as filled in by `make install`) is tried first.
sed "s|^libdir_hint=\"\"\$|libdir_hint=\"$tmp/alt/hint\"|" "$script" > "$tmp/tree/bin/hinted"
chmod +x "$tmp/tree/bin/hinted"
mkdir -p "$tmp/alt/hint"
cp -- "$lib" "$tmp/alt/hint/libmemlimits.so"
run "${clean_env[@]}" "$tmp/tree/bin/hinted" -- sh -c 'printf %s "$LD_PRELOAD"'
expect_out "libdir_hint" "$tmp/alt/hint/libmemlimits.so"

# Works under `set -u` callers and with nounset in the script (no unbound
# variable errors with no options and no LD_PRELOAD).
run "${clean_env[@]}" bash -u "$ml" true
expect_rc "bash -u" 0
if [[ -z $err ]]; then pass; else fail "unexpected stderr: $err"; fi

# The loader actually accepts the preload (no ld.so warning).
run "${clean_env[@]}" "$ml" true
if [[ -z $err ]]; then pass; else fail "loader warning: $err"; fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
