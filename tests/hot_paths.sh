#!/usr/bin/env bash
# Hot-path benchmarks (issue 13; BENCHMARKS.md, "Hot paths"). Not part of the test command: it
# takes about 8 minutes. Runs the criterion benches of the crates that own the hot paths, then
# prints the medians as markdown and writes them into BENCHMARKS.md in place of the old section.
#
#   voronka-domain      benches/scoring.rs (lead scoring, the bot's scoring), benches/kpi_rollup.rs
#   trigger-evaluator   benches/evaluation.rs (journey evaluation, template rendering)
#   lead-capture        benches/submission.rs (form and event-batch parsing and validation)
#
# Settings (environment): HOT_PATHS_CRATES (the crates, all three), HOT_PATHS_ARGS (passed to
# criterion, e.g. "--measurement-time 3"), HOT_PATHS_WRITE (the file, BENCHMARKS.md; empty to
# only print).
set -euo pipefail
cd "$(dirname "$0")/.."

CRATES=${HOT_PATHS_CRATES:-voronka-domain trigger-evaluator lead-capture}
WRITE=${HOT_PATHS_WRITE-BENCHMARKS.md}
HEADING="## Hot paths"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
RUN=$(mktemp -d /tmp/voronka-hot.XXXXXX)
trap 'rm -rf "$RUN"' EXIT

touch "$RUN/started"
packages=()
for crate in $CRATES; do packages+=(-p "$crate"); done
# Without the function crates' `lambda` feature: their benches need only the library, and the Lambda
# entry points would compile the AWS SDK in the bench profile (several minutes for nothing).
# shellcheck disable=SC2086 # HOT_PATHS_ARGS is a list of criterion options
cargo bench --no-default-features "${packages[@]}" --bench '*' -- ${HOT_PATHS_ARGS:-} >&2

machine="$(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -sr)"
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')"
SECTION="$RUN/section.md"
{
    echo "$HEADING"
    echo
    echo "Written by \`tests/hot_paths.sh\` (re-run it to replace this section): $(date -u '+%Y-%m-%d %H:%M UTC'),"
    echo "commit $commit, $machine; \`cargo bench --no-default-features -p ${CRATES// / -p } --bench '*'\`"
    echo "(criterion, bench profile). Median time per iteration with criterion's 95% interval of the"
    echo "median; each bench file's header says what one iteration is."
    echo
    python3 - "$TARGET_DIR/criterion" "$RUN/started" <<'EOF'
import json, os, sys
root, started = sys.argv[1], os.path.getmtime(sys.argv[2])
rows = []
for directory, _, files in os.walk(root):
    if os.path.basename(directory) != "new" or "estimates.json" not in files:
        continue
    estimates = os.path.join(directory, "estimates.json")
    if os.path.getmtime(estimates) < started:
        continue  # not measured by this run
    with open(os.path.join(directory, "benchmark.json")) as f:
        name = json.load(f)["full_id"]
    with open(estimates) as f:
        median = json.load(f)["median"]
    rows.append((name, median["point_estimate"], median["confidence_interval"]))

def human(ns):
    for unit, size in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= size:
            return f"{ns / size:.3g} {unit}"
    return f"{ns:.3g} ns"

if not rows:
    sys.exit("hot_paths.sh: criterion wrote no estimates")
print("| Benchmark | Median | 95% interval | Per second |")
print("|---|---:|---:|---:|")
for name, ns, ci in sorted(rows):
    print(f"| {name} | {human(ns)} | {human(ci['lower_bound'])} – {human(ci['upper_bound'])} | {1e9 / ns:,.0f} |")
EOF
} > "$SECTION"
cat "$SECTION"

if [[ -n "$WRITE" ]]; then
    if [[ ! -f "$WRITE" ]]; then
        printf '# Benchmarks\n\nPerformance figures for Voronka (issue 13). Every figure comes from the command written\nbeside it, with the machine and the date it ran on; re-run the command to refresh it.\n\n' > "$WRITE"
    fi
    python3 tests/bench_section.py "$WRITE" "$SECTION" "$HEADING"
    echo "hot_paths.sh: wrote the section into $WRITE" >&2
fi
