#!/bin/sh
# The cold-start benchmark (BENCHMARKS.md): builds the six functions, the hello-world Lambda and
# the harness in release, then runs the harness. Arguments go to the harness, e.g.
#   bench/cold-start.sh --rounds 15 --write BENCHMARKS.md
# Needs moto (VORONKA_TOOLS_PYTHON, as for the tests). Honours CARGO_TARGET_DIR.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --bin voronka-bench --bin hello-lambda --bin lead-capture --bin qualify-bot --bin sender \
  --bin trigger-evaluator --bin cart-scheduler --bin kpi-rollup
exec "${CARGO_TARGET_DIR:-target}/release/voronka-bench" cold-start "$@"
