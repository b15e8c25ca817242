#!/usr/bin/env bash
# Voronka's one test command. On a fresh machine it first installs the tools it needs (pinned, into
# .tools/venv), then runs: formatting and lints, a check that the local stack links no AWS SDK, unit
# tests, the port contract suite on the embedded adapters and on the AWS adapters against
# moto_server, the handler and end-to-end HTTP tests, the campaign-file check, the fuzz targets
# for a bounded time (tests/fuzz.sh), schemathesis with openapi.yaml against `voronka serve`,
# cfn-lint and `sam validate --lint` on the SAM template, a `cargo lambda build --release` of
# every function, and a small demo run under every fault whose invariants must hold.
#
# Nothing is skipped: a missing tool stops the run with a message saying what is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TOOLS="$ROOT/.tools"
VENV="$TOOLS/venv"
REQUIREMENTS="$ROOT/tests/tools-requirements.txt"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

need() {
    command -v "$1" >/dev/null 2>&1 || fail "$1 is required but not installed. $2"
}

need cargo "Install Rust with rustup (https://rustup.rs)."
need python3 "Install Python 3.9 or newer with the venv module."
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' || fail "Python 3.9 or newer is required."

step "Tools (pinned in tests/tools-requirements.txt, installed into .tools/venv)"
STAMP="$VENV/.requirements.sha256"
WANT=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [[ ! -x "$VENV/bin/python" || ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV" || fail "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)."
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet -r "$REQUIREMENTS" || fail "installing the Python tools failed."
    echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export VORONKA_TOOLS_PYTHON="$VENV/bin/python"
for tool in moto_server cfn-lint sam cargo-lambda schemathesis; do
    [[ -x "$VENV/bin/$tool" ]] || fail "$tool is missing from $VENV/bin after installation."
done
cargo lambda --version
cfn-lint --version
sam --version
schemathesis --version

step "Browser for the widget test (Debian's chromium and chromium-driver)"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    command -v apt-get >/dev/null 2>&1 \
        || fail "chromium and chromedriver are required for the browser test; install them (Debian: apt-get install chromium chromium-driver)."
    $SUDO apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null \
        || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null; } \
        || fail "installing chromium and chromium-driver with apt-get failed."
fi
need chromium "Install Debian's chromium."
need chromedriver "Install Debian's chromium-driver."
chromium --version

# sam and the SDK need a region; no credentials are needed for anything here.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-eu-central-1}"
export SAM_CLI_TELEMETRY=0
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"

step "Formatting (cargo fmt --check)"
cargo fmt --all -- --check

step "Lints (cargo clippy --all-targets -D warnings)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "The local stack builds without the AWS SDK (cargo tree -p voronka -e normal)"
LOCAL_TREE=$(cargo tree -p voronka -e normal --prefix none)
AWS_IN_LOCAL=$(grep -E '^(aws-sdk-[a-z0-9-]+|aws-config|aws-smithy-[a-z0-9-]+|aws-runtime|aws-types|aws-sigv4|aws-credential-types|aws_lambda_events|lambda_runtime|lambda_http) ' <<<"$LOCAL_TREE" | sort -u || true)
[[ -z "$AWS_IN_LOCAL" ]] || fail "the voronka binary depends on AWS SDK or Lambda runtime crates:
$AWS_IN_LOCAL
Keep them behind the function crates' \`lambda\` feature (the workspace depends on the function crates with default-features = false)."

step "Tests: unit, contract (embedded and AWS against moto_server), handlers, Lambda samples, end to end"
cargo test --workspace --no-fail-fast

step "Campaign files (voronka validate, and journeys against their JSON Schema)"
cargo run --quiet -p voronka -- validate
"$VENV/bin/python" tests/check_journey_schema.py

step "Fuzzing (cargo fuzz, stable Rust: every target of fuzz/ for a bounded time from its corpus)"
tests/fuzz.sh

step "API schema (schemathesis with openapi.yaml against voronka serve, about 2 minutes)"
# tests/openapi.rs holds the document's operations to the routers; this holds the answers of the
# running server to the document: no 5xx, only documented statuses, content types and headers,
# bodies that match their schemas, a JSON 405 for a method a route does not take, and admin
# routes that refuse a request without the key. The server runs on
# a fresh data folder and a copy of the campaign whose rate limits are out of reach, so the
# generated requests reach the handlers instead of a 429 after the first 30.
cargo build --quiet -p voronka
TARGET_DIR=$("$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' \
    < <(cargo metadata --format-version 1 --no-deps))
API_RUN=$(mktemp -d)
cp -r shared/campaigns "$API_RUN/campaigns"
sed -i -e 's/^per_ip_per_minute = .*/per_ip_per_minute = 1000000/' \
    -e 's/^per_form_per_minute = .*/per_form_per_minute = 1000000/' "$API_RUN/campaigns/settings.toml"
grep -q '^per_ip_per_minute = 1000000$' "$API_RUN/campaigns/settings.toml" || fail "could not raise the rate limits of the campaign copy"
API_PORT=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$TARGET_DIR/debug/voronka" serve --addr "127.0.0.1:$API_PORT" --data-dir "$API_RUN/data" \
    --campaigns "$API_RUN/campaigns" > "$API_RUN/serve.out" 2> "$API_RUN/serve.log" &
API_SERVER=$!
trap 'kill "$API_SERVER" 2>/dev/null || true; rm -rf "$API_RUN"' EXIT
for _ in $(seq 1 100); do
    grep -q "is listening on" "$API_RUN/serve.out" 2>/dev/null && break
    kill -0 "$API_SERVER" 2>/dev/null || fail "voronka serve exited: $(tail -5 "$API_RUN/serve.log")"
    sleep 0.2
done
API_URL=$(sed -n 's/.*is listening on \(http:\/\/[^ ]*\) .*/\1/p' "$API_RUN/serve.out")
[[ "$API_URL" == "http://127.0.0.1:$API_PORT" ]] || fail "voronka serve did not say it listens on 127.0.0.1:$API_PORT"
# Answers need conversations that exist: start a few, and let schemathesis answer them.
{
    cat tests/schemathesis.toml
    printf '\n[dictionaries.sessions]\nvalues = [\n'
    "$VENV/bin/python" - "$API_URL" <<'PYTHON'
import json, sys, urllib.request
for script in ["b2b_demo", "course_picker"] * 10:
    request = urllib.request.Request(
        f"{sys.argv[1]}/v1/bot/{script}/sessions", data=b"{}", headers={"Content-Type": "application/json"}
    )
    print(f'    "{json.load(urllib.request.urlopen(request))["session_id"]}",')
PYTHON
    printf ']\n'
} > "$API_RUN/schemathesis.toml" || fail "could not start the bot conversations schemathesis answers"
API_STATUS=0
"$VENV/bin/schemathesis" --config-file "$API_RUN/schemathesis.toml" run openapi.yaml --url "$API_URL" \
    --header "Authorization: Bearer $(cat "$API_RUN/data/admin-key")" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,unsupported_method,ignored_auth \
    --max-examples 50 --max-time 120 || API_STATUS=$?
kill "$API_SERVER"
wait "$API_SERVER" 2>/dev/null || true
if grep -q '"level":"ERROR"' "$API_RUN/serve.log"; then
    grep '"level":"ERROR"' "$API_RUN/serve.log" | head -20 >&2
    fail "voronka serve logged errors while schemathesis ran"
fi
rm -rf "$API_RUN"
trap - EXIT
[[ $API_STATUS -eq 0 ]] || fail "schemathesis found responses that break openapi.yaml (above)"

step "SAM template (cfn-lint, sam validate --lint)"
cfn-lint infra/template.yaml
(cd infra && sam validate --lint --template template.yaml)

step "Lambda packages (cargo lambda build --release, as sam build runs it)"
# SAM's rust-cargolambda build runs `cargo lambda build --release --bin <Binary>` in the CodeUri
# (the workspace root): build exactly the binaries the template names, the same way, so a binary
# the root cannot find by name fails here and not on the first deploy.
BINARIES=()
while read -r binary; do
    BINARIES+=(--bin "$binary")
done < <(sed -n 's/^ *Binary: *//p' infra/template.yaml)
[[ ${#BINARIES[@]} -gt 0 ]] || fail "infra/template.yaml names no Binary to build"
for manifest in functions/*/Cargo.toml; do
    name=$(basename "$(dirname "$manifest")")
    grep -q "Binary: $name\$" infra/template.yaml || fail "functions/$name is not built by infra/template.yaml"
done
cargo lambda build --release "${BINARIES[@]}"
for manifest in functions/*/Cargo.toml; do
    name=$(basename "$(dirname "$manifest")")
    bootstrap="target/lambda/$name/bootstrap"
    [[ -x "$bootstrap" ]] || fail "cargo lambda build produced no $bootstrap"
    printf '  %-20s %s bytes\n' "$name" "$(stat -c %s "$bootstrap")"
done

step "Demo under every fault (seeded; exits non-zero on any invariant violation)"
# Every fault at its reference rate, the bounce storm on the middle day included; the demo's
# invariants (from the outbox, the store and the queues) must all be at zero. Sized for about
# three minutes of the debug build on a shared 2-core machine (measured 2m54s wall, 40 s of CPU);
# 2 000 contacts over 30 days, scaled from it, would take about ten.
DEMO_STARTED=$SECONDS
cargo run --quiet -p voronka -- demo --contacts 600 --days 21 --faults all --seed 7
printf 'faulty demo run: %d s wall time\n' "$((SECONDS - DEMO_STARTED))"

printf '\nAll Voronka checks passed.\n'
