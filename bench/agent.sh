#!/usr/bin/env bash
# Measures the peak resident memory of `edge-agent` (the static musl release build, as on a node) over its contacts
# with the real endpoint on loopback (edge-cloud's router over SQLite, through edge_cloud::harness): enroll, send
# every report in batches, poll the desired state; once with only the enrollment to report, once with
# BENCH_AGENT_EVENTS events of the updater's log to tail and ship, and twice with an install of a bundle of
# BENCH_AGENT_PAYLOAD_MIB from the endpoint's store (every byte fetched, and a delta install against a booted slot
# that holds most of it). GNU time reports the peak RSS; the target is 8 MiB (the fleet issue's).
# Usage: bash bench/agent.sh      (see bench/README.md, "edge-agent memory")
set -euo pipefail
cd "$(dirname "$0")/.."
events=${BENCH_AGENT_EVENTS:-2000}
payload=${BENCH_AGENT_PAYLOAD_MIB:-64}
case $events in '' | *[!0-9]*) echo "BENCH_AGENT_EVENTS must be a number, not ${events@Q}" >&2; exit 2 ;; esac
case $payload in '' | *[!0-9]* | 0) echo "BENCH_AGENT_PAYLOAD_MIB must be a positive number, not ${payload@Q}" >&2; exit 2 ;; esac
cargo build --quiet --release --locked --target x86_64-unknown-linux-musl -p edge-agent
agent=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/edge-agent
echo "edge-agent: $(stat -c %s "$agent") bytes"
cycle() { cargo run --quiet --release --locked -p edge-agent --example agent_cycle -- "$agent" "$@" | tail -n 1; }
cycle 0
cycle "$events"
cycle 0 install "$payload"
cycle 0 install-delta "$payload"
