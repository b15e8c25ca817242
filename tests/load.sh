#!/usr/bin/env bash
# The local stack under load (issue 13; BENCHMARKS.md, "The local stack under load"). Not part of
# the test command: it takes about 7 minutes and its figures depend on the machine.
#
# Builds `voronka` and the baselines (infra/loadbench) in release, then on loopback, alternating
# per route: wrk against a bare axum server answering fixed bodies (same axum, same tokio runtime
# and threads), wrk against `voronka serve` on a fresh data folder and a copy of the campaign with
# rate limits out of reach (as tests/run.sh does for schemathesis), and, for the events route, a
# plain rusqlite loop doing the route's durable writes with the store's pragmas (per write as the
# store commits today, per request, and one commit per group of as many requests as connections).
# Then a long events run on a fresh server, sampling the queue depths and the server's RSS.
# Prints the section as markdown and writes it into BENCHMARKS.md in place of the old one.
#
# Settings (environment): LOAD_THREADS (wrk threads, 2), LOAD_CONNECTIONS (32), LOAD_SECONDS (per
# run, 20), LOAD_LONG_SECONDS (the long run, 60), LOAD_LONG_MODE (events10), LOAD_SAMPLE_SECONDS
# (5), LOAD_WRITE (the file the section goes into, BENCHMARKS.md; empty to only print).
# Needs wrk (`apt-get install -y wrk`; installed when missing and apt-get can).
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${LOAD_THREADS:-2}
CONNECTIONS=${LOAD_CONNECTIONS:-32}
SECONDS_PER_RUN=${LOAD_SECONDS:-20}
LONG_SECONDS=${LOAD_LONG_SECONDS:-60}
LONG_MODE=${LOAD_LONG_MODE:-events10}
SAMPLE_SECONDS=${LOAD_SAMPLE_SECONDS:-5}
WRITE=${LOAD_WRITE-BENCHMARKS.md}
HEADING="## The local stack under load"

fail() { echo "load.sh: $*" >&2; exit 1; }
step() { echo "== $*" >&2; }

if ! command -v wrk >/dev/null; then
    step "installing wrk"
    apt-get install -y wrk >&2 || fail "wrk is missing and apt-get could not install it; install wrk (Debian package 'wrk') and run again"
fi
command -v wrk >/dev/null || fail "wrk is still missing"

TARGET_DIR=${CARGO_TARGET_DIR:-target}
step "building voronka and infra/loadbench in release"
cargo build --release -p voronka -p voronka-loadbench >&2
VORONKA="$TARGET_DIR/release/voronka"
LOADBENCH="$TARGET_DIR/release/loadbench"

RUN=$(mktemp -d /tmp/voronka-load.XXXXXX)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
SERVER=""
stop_server() {
    if [[ -n "$SERVER" ]]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
        SERVER=""
    fi
}
trap 'stop_server; rm -rf "$RUN"' EXIT

cp -r shared/campaigns "$RUN/campaigns"
sed -i -e 's/^per_ip_per_minute = .*/per_ip_per_minute = 1000000000/' \
    -e 's/^per_form_per_minute = .*/per_form_per_minute = 1000000000/' "$RUN/campaigns/settings.toml"
grep -q '^per_ip_per_minute = 1000000000$' "$RUN/campaigns/settings.toml" || fail "could not raise the rate limits of the campaign copy"
grep -q '^per_form_per_minute = 1000000000$' "$RUN/campaigns/settings.toml" || fail "could not raise the rate limits of the campaign copy"

URL=""
# Starts a server (the rest of the arguments) in the background, its output in $RUN/$1.*; sets
# SERVER and URL from the "is listening on" line both servers print.
start_server() {
    local name=$1
    shift
    "$@" > "$RUN/$name.out" 2> "$RUN/$name.log" &
    SERVER=$!
    for _ in $(seq 1 300); do
        grep -q "is listening on" "$RUN/$name.out" 2>/dev/null && break
        kill -0 "$SERVER" 2>/dev/null || fail "$name exited: $(tail -5 "$RUN/$name.log")"
        sleep 0.1
    done
    URL=$(sed -n 's/.*is listening on \(http:\/\/[^ ]*\) .*/\1/p' "$RUN/$name.out")
    [[ -n "$URL" ]] || fail "$name did not say where it listens"
}

RUN_NUMBER=0
start_voronka() {
    RUN_NUMBER=$((RUN_NUMBER + 1))
    DATA="$RUN/data-$RUN_NUMBER"
    start_server "voronka-$RUN_NUMBER" "$VORONKA" serve --addr 127.0.0.1:0 --data-dir "$DATA" --campaigns "$RUN/campaigns"
}

# One wrk run of mode $1 against $URL for $2 seconds; prints its LOADRESULT line.
drive() {
    local mode=$1 seconds=$2 out
    out=$(LOAD_MODE=$mode LOAD_RUN="r$RUN_NUMBER-$RANDOM" wrk -t "$THREADS" -c "$CONNECTIONS" -d "${seconds}s" \
        --timeout 10s -s tests/load.lua "$URL") || fail "wrk failed: $out"
    grep '^LOADRESULT ' <<< "$out" || fail "wrk printed no result: $out"
}

# A field of a LOADRESULT line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<< "$1"; }
rate() { awk -v r="$(field "$1" requests)" -v s="$(field "$1" seconds)" -v k="${2:-1}" 'BEGIN { printf "%.0f", r * k / s }'; }
ms() { awk -v us="$(field "$1" "$2")" 'BEGIN { printf "%.2f", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f×", a / b; else printf "–" }'; }

# Smoke check before anything is measured: every request the load makes is answered with success.
start_voronka
curl -sf "$URL/v1/forms/newsletter" > "$RUN/describe.json" || fail "GET /v1/forms/newsletter failed"
for mode in events1 events10 submit; do
    result=$(drive "$mode" 1)
    [[ "$(field "$result" non2xx)" == 0 && "$(field "$result" requests)" -gt 0 ]] ||
        fail "the $mode requests are refused: $result; $(tail -3 "$RUN/voronka-$RUN_NUMBER.log")"
done
stop_server

declare -A EVENTS_PER=([describe]=0 [events1]=1 [events10]=10 [submit]=0)
declare -A LABEL=([describe]='`GET /v1/forms/newsletter`' [events1]='`POST /v1/events`, 1 event'
    [events10]='`POST /v1/events`, 10 events' [submit]='`POST /v1/forms/newsletter/submissions`, unique addresses')
declare -A RESULT

for mode in describe events1 events10 submit; do
    step "$mode: bare axum, ${SECONDS_PER_RUN} s"
    start_server bare "$LOADBENCH" bare-axum --describe-body "$RUN/describe.json"
    RESULT[bare-$mode]=$(drive "$mode" "$SECONDS_PER_RUN")
    stop_server
    step "$mode: voronka serve (fresh data folder), ${SECONDS_PER_RUN} s"
    start_voronka
    RESULT[voronka-$mode]=$(drive "$mode" "$SECONDS_PER_RUN")
    RESULT[depth-$mode]=$("$LOADBENCH" queue-depth --db "$DATA/voronka.db")
    stop_server
    if [[ "$mode" == events* ]]; then
        for commit in per-write per-request "group:$CONNECTIONS"; do
            step "$mode: rusqlite loop, commit $commit, ${SECONDS_PER_RUN} s"
            RESULT[store-$mode-$commit]=$("$LOADBENCH" store-limit --dir "$RUN/store" --events "${EVENTS_PER[$mode]}" \
                --commit "$commit" --seconds "$SECONDS_PER_RUN" | grep '^LOADRESULT ')
        done
    fi
done

step "$LONG_MODE: voronka serve for ${LONG_SECONDS} s, sampling queue depth and RSS every ${SAMPLE_SECONDS} s"
start_voronka
DRIVE_OUT="$RUN/long.result"
drive "$LONG_MODE" "$LONG_SECONDS" > "$DRIVE_OUT" &
DRIVER=$!
SAMPLES=""
started=$(date +%s.%N)
while :; do
    elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
    depth=$("$LOADBENCH" queue-depth --db "$DATA/voronka.db" 2>/dev/null || echo "unreadable")
    rss=$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER/status")
    SAMPLES+="| $elapsed | ${depth:-empty} | $rss |"$'\n'
    kill -0 "$DRIVER" 2>/dev/null || break
    sleep "$SAMPLE_SECONDS"
done
wait "$DRIVER" || fail "the long run failed: $(cat "$DRIVE_OUT")"
LONG=$(cat "$DRIVE_OUT")
PEAK_RSS=$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER/status")
END_DEPTH=$("$LOADBENCH" queue-depth --db "$DATA/voronka.db")
stop_server

# The section.
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
machine="$(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -sr)"
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')"
SECTION="$RUN/section.md"
{
    echo "$HEADING"
    echo
    echo "Written by \`tests/load.sh\` (re-run it to replace this section): $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit,"
    echo "$machine. wrk $THREADS threads, $CONNECTIONS connections, ${SECONDS_PER_RUN} s per run, on loopback; release"
    echo "builds; \`voronka serve\` on a fresh data folder per run, rate limits of its campaign copy raised; the"
    echo "load generator, the server and its consumers share the machine's cores. Each route ran against"
    echo "bare axum, then Voronka, then (events) the rusqlite loop, in turn. Latencies are wrk's (per request)."
    echo "Load average (1, 5, 15 min) before the runs: $LOAD_BEFORE; after: $LOAD_AFTER."
    echo
    echo "| Route | Voronka req/s | events/s | p50 ms | p99 ms | non-2xx | bare axum req/s | p50 ms | p99 ms | Voronka / bare |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for mode in describe events1 events10 submit; do
        v=${RESULT[voronka-$mode]} b=${RESULT[bare-$mode]}
        events="–"
        [[ ${EVENTS_PER[$mode]} -gt 0 ]] && events=$(rate "$v" "${EVENTS_PER[$mode]}")
        echo "| ${LABEL[$mode]} | $(rate "$v") | $events | $(ms "$v" p50_us) | $(ms "$v" p99_us) | $(field "$v" non2xx) | $(rate "$b") | $(ms "$b" p50_us) | $(ms "$b" p99_us) | $(ratio "$(rate "$v")" "$(rate "$b")") |"
    done
    echo
    echo "Queues after each Voronka run (messages the in-process consumers had not finished):"
    for mode in describe events1 events10 submit; do
        echo "${LABEL[$mode]}: ${RESULT[depth-$mode]:-empty}."
    done
    echo
    echo "The store's own limit: \`loadbench store-limit\` (infra/loadbench) does the events route's durable writes"
    echo "(the rate-limit counter, a receipt claimed per event, the batch onto the queue, each receipt marked"
    echo "queued; every item read and written back as JSON) in a plain rusqlite loop on one connection, with the"
    echo "embedded store's schema and pragmas (WAL, \`synchronous = FULL\`, \`secure_delete\`, 32 MiB cache). No"
    echo "consumers read the queue meanwhile. Latency is per request; in a group every request waits for its"
    echo "group's commit. An fsync's cost varies on a shared machine (on ext4 it waits for a journal commit"
    echo "only when the file's metadata changed, such as its mtime at the kernel's clock tick), so the loop and"
    echo "the server need not pay the same per commit: compare the commits per request, and see it with"
    echo "\`strace -f -T -e trace=fsync\` on either."
    echo
    echo "| Writes of | Commits | req/s | events/s | p50 ms | p99 ms | Voronka / this |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    for mode in events1 events10; do
        n=${EVENTS_PER[$mode]}
        for commit in per-write per-request "group:$CONNECTIONS"; do
            s=${RESULT[store-$mode-$commit]}
            case $commit in
                per-write) commits="one per write ($((2 * n + 2)) per request), as the store does" ;;
                per-request) commits="one per request" ;;
                *) commits="one per ${commit#group:} requests" ;;
            esac
            echo "| ${LABEL[$mode]} | $commits | $(rate "$s") | $(rate "$s" "$n") | $(ms "$s" p50_us) | $(ms "$s" p99_us) | $(ratio "$(rate "${RESULT[voronka-$mode]}")" "$(rate "$s")") |"
        done
    done
    echo
    n=${EVENTS_PER[$LONG_MODE]}
    accepted=$(( $(field "$LONG" requests) * (n > 0 ? n : 1) ))
    echo "Do the consumers keep up? ${LABEL[$LONG_MODE]} for ${LONG_SECONDS} s on a fresh server: $(rate "$LONG") req/s"
    echo "($(rate "$LONG" "$n") events/s), p50 $(ms "$LONG" p50_us) ms, p99 $(ms "$LONG" p99_us) ms, $(field "$LONG" non2xx) non-2xx; $accepted events"
    echo "accepted. Queue depths (messages waiting or in flight, read from the database file while it runs) and"
    echo "the server's RSS:"
    echo
    echo "| Second | Queues | RSS MiB |"
    echo "|---:|---|---:|"
    echo -n "$SAMPLES"
    echo
    echo "At the end: ${END_DEPTH:-empty}; peak RSS ${PEAK_RSS} MiB."
    echo
    echo "Command: \`CARGO_TARGET_DIR=<target> tests/load.sh\` (settings: LOAD_THREADS=$THREADS LOAD_CONNECTIONS=$CONNECTIONS"
    echo "LOAD_SECONDS=$SECONDS_PER_RUN LOAD_LONG_SECONDS=$LONG_SECONDS LOAD_LONG_MODE=$LONG_MODE)."
} > "$SECTION"
cat "$SECTION"

if [[ -n "$WRITE" ]]; then
    if [[ ! -f "$WRITE" ]]; then
        printf '# Benchmarks\n\nPerformance figures for Voronka (issue 13). Every figure comes from the command written\nbeside it, with the machine and the date it ran on; re-run the command to refresh it.\n\n' > "$WRITE"
    fi
    python3 tests/bench_section.py "$WRITE" "$SECTION" "$HEADING"
    echo "load.sh: wrote the section into $WRITE" >&2
fi
