#!/usr/bin/env bash
# Measures the peak resident memory of `edge-agent` (the static musl release build, as on a node) over one cycle of
# contacts against a stand-in endpoint on loopback (the one its tests use): enroll, send every report in batches,
# poll the desired state; once with only the enrollment to report and once with BENCH_AGENT_EVENTS events of the
# updater's log to tail and ship. GNU time reports the peak RSS; the target is 8 MiB (the fleet issue's).
# Usage: bash bench/agent.sh      (see bench/README.md, "edge-agent memory")
set -euo pipefail
cd "$(dirname "$0")/.."
events=${BENCH_AGENT_EVENTS:-2000}
case $events in '' | *[!0-9]*) echo "BENCH_AGENT_EVENTS must be a number, not ${events@Q}" >&2; exit 2 ;; esac
cargo build --quiet --release --locked --target x86_64-unknown-linux-musl -p edge-agent
agent=target/x86_64-unknown-linux-musl/release/edge-agent
echo "edge-agent: $(stat -c %s "$agent") bytes"
for n in 0 "$events"; do
    cargo run --quiet --locked -p edge-agent --example agent_cycle -- "$agent" "$n" | tail -n 1
done
