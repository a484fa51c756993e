#!/usr/bin/env bash
# `make fuzz`: runs every fuzz target for FUZZ_SECS seconds (default 600), or for FUZZ_RUNS
# executions when that is set, from a seed corpus made from the repository's examples plus the
# inputs in fuzz/regressions/<target>/, then prints executions and time per target.
# FUZZ_REPLAY=1 only runs the seeds and regressions once (what CI does: deterministic).
# A crash leaves its input in fuzz/artifacts/<target>/ and makes this script fail: copy it to
# fuzz/regressions/<target>/, add a test in the crate the target covers, fix it.
#
# `load` runs under AddressSanitizer: the YAML parser (unsafe-libyaml-norway) is C translated
# to unsafe Rust. The other targets cover safe Rust only and run without a sanitizer, about
# five times faster; overflow checks and debug assertions are on in every target.
# FUZZ_SANITIZER=none|address overrides that for every target.
set -euo pipefail
cd "$(dirname "$0")"
targets="${FUZZ_TARGETS:-load wire expr template}"
root="$(cd .. && pwd)"
tools="$root/target/tools/cargo-fuzz"
export PATH="$tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz 0.13.2 from crates.io into target/tools/cargo-fuzz"
    cargo install -q --locked --root "$tools" cargo-fuzz --version 0.13.2
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: needs the nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
work="$root/target/fuzz"
seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
python3 seed.py "$seeds"
if [[ "${FUZZ_REPLAY:-}" == 1 ]]; then
    limit=(-runs=0)
elif [[ -n "${FUZZ_RUNS:-}" ]]; then
    limit=(-runs="$FUZZ_RUNS")
else
    limit=(-max_total_time="${FUZZ_SECS:-600}")
fi
summary=()
status=0
for t in $targets; do
    case "$t" in
        load) san="${FUZZ_SANITIZER:-address}" ;;
        *) san="${FUZZ_SANITIZER:-none}" ;;
    esac
    corpus="$work/corpus/$t"
    mkdir -p "$corpus" "artifacts/$t" "regressions/$t"
    log="$work/$t.log"
    echo "fuzz: $t (${limit[*]}, sanitizer $san)"
    started=$(date +%s)
    if cargo +nightly fuzz run -s "$san" --target-dir "$work/build-$san" "$t" \
        "$corpus" "$seeds/$t" "regressions/$t" -- \
        "${limit[@]}" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        result=ok
    else
        result="FAILED: see $log and fuzz/artifacts/$t"
        status=1
        tail -40 "$log"
    fi
    took=$(($(date +%s) - started))
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
    summary+=("$(printf '%-9s %12s executions in %6ss (with the build)  coverage %6s  %s' \
        "$t" "${runs:-?}" "$took" "${cov:-?}" "$result")")
done
echo
printf '%s\n' "${summary[@]}"
exit "$status"
