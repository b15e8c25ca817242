#!/usr/bin/env bash
# The fuzzing step of tests/run.sh, runnable alone: installs cargo-fuzz (pinned) into
# .tools/cargo if missing, builds every target of fuzz/ and runs each for a bounded time from its
# committed corpus (fuzz/corpus/<target>/). Any crash, panic, timeout or out-of-memory fails the
# step; the input that did it is written to fuzz/artifacts/<target>/.
#
#   tests/fuzz.sh                 every target, VORONKA_FUZZ_SECONDS (default 15) each
#   tests/fuzz.sh event_batch     one target
#
# Stable Rust only, no nightly toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take the unstable
# flags cargo-fuzz passes when it uses them (`-Zsanitizer` for a sanitizer build). Targets are
# built without a sanitizer (`--sanitizer none`, which needs only stable `-C` flags): the code under
# test is safe Rust, so what we hunt is panics, overflows (debug assertions are on), hangs and
# unbounded memory; a sanitizer would slow both the build and the runs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
CARGO_FUZZ_VERSION=0.13.2
FUZZ_BIN="$ROOT/.tools/cargo/bin"
SECONDS_EACH="${VORONKA_FUZZ_SECONDS:-15}"

fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

if [[ "$("$FUZZ_BIN/cargo-fuzz" --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION" --root "$ROOT/.tools/cargo" \
        || fail "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io failed."
fi
export PATH="$FUZZ_BIN:$PATH"
export RUSTC_BOOTSTRAP=1
BUILD_FLAGS=(--sanitizer none)

cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo fuzz build --fuzz-dir fuzz "${BUILD_FLAGS[@]}"

# New inputs libFuzzer finds go to a scratch folder; the committed corpus stays small and only read.
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
if [[ $# -gt 0 ]]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo fuzz list --fuzz-dir fuzz)
fi
for target in "${TARGETS[@]}"; do
    [[ -d "fuzz/corpus/$target" ]] || fail "fuzz/corpus/$target is missing: every target keeps its seeds in the repository."
    mkdir -p "$SCRATCH/$target"
    printf '  %-16s ' "$target"
    log="$SCRATCH/$target.log"
    if ! cargo fuzz run --fuzz-dir fuzz "${BUILD_FLAGS[@]}" "$target" "$SCRATCH/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        fail "fuzz target $target failed; the input is in fuzz/artifacts/$target/. Reproduce with
  RUSTC_BOOTSTRAP=1 PATH=$FUZZ_BIN:\$PATH cargo fuzz run --fuzz-dir fuzz --sanitizer none $target fuzz/artifacts/$target/<file>
and add it as a regression test in the normal test suite with the fix."
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    printf '%s inputs in %ss, no failure\n' "${runs:-?}" "$SECONDS_EACH"
done
