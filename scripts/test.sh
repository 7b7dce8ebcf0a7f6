#!/usr/bin/env bash
# The whole test suite: formatting, lints, every fuzz target for a bounded time, and every test of every crate.
# Installs what it needs. Ends with one line that totals the tests: "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase's time is printed when it ends, and all of them at the end, so a slow run says where its time went.
phase_name="setup: scripts/deps.sh"
phase_start=$SECONDS
phase_times=()
phase() {
    local took=$((SECONDS - phase_start))
    phase_times+=("$(printf '%6d s  %s' "$took" "$phase_name")")
    echo "-- $phase_name: $took s" >&2
    phase_name=$1
    phase_start=$SECONDS
    echo "== $1" >&2
}
source scripts/deps.sh
# CI builds once, from a fresh clone: no incremental caches, some 2 GB that no later build would read.
if [ "${CI:-}" = true ]; then
    export CARGO_INCREMENTAL=0
fi

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
phase "cargo deny: licenses, duplicate versions, sources (scripts/deny.sh, docs/dependencies.md)"
bash scripts/deny.sh
phase "fuzz: every target for 25 s, seeded from the vectors (scripts/fuzz.sh, fuzz/README.md)"
bash scripts/fuzz.sh --seconds 25
# The node's binaries as the QEMU test node gets them (qemu-tests/node/build.sh builds them once for both: the tests
# reuse this build), for each node architecture: static musl release builds, edge-init within its 1 MiB budget.
# The architecture that is not the host's goes first: build.sh builds it and the host's in one cargo run.
case $(dpkg --print-architecture) in
arm64) node_archs=(x86_64 aarch64) ;;
*) node_archs=(aarch64 x86_64) ;;
esac
phase "the node's binaries, ${node_archs[*]} in one cargo run: static musl release builds, edge-init at most 1 MiB"
for arch in "${node_archs[@]}"; do
    bin=$(EDGE_NODE_ARCH=$arch EDGE_NODE_BINARIES_ONLY=1 bash qemu-tests/node/build.sh)
    for b in edge-init edge-update edge-bootctl edge-agent; do
        echo "$arch $b: $(stat -c %s "$bin/$b") bytes ($(file -b "$bin/$b" | cut -d, -f1-2))" >&2
    done
    init_size=$(stat -c %s "$bin/edge-init")
    if [ "$init_size" -gt $((1 << 20)) ]; then
        echo "error: the $arch edge-init is $init_size bytes, over the 1 MiB budget" >&2
        exit 1
    fi
done
phase "cargo test: build the tests"
cargo test --workspace --locked --no-run
phase "cargo test: run them, the QEMU tests beside the others"
# The QEMU node tests keep the console log of a failed test here; old ones are cleared first.
qemu_logs=target/qemu-logs
rm -rf "$qemu_logs"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# Two streams at once: qemu-tests (its guests take a CPU each, at most one per CPU) and every other crate. The QEMU
# tests leave a CPU idle at times (one guest alone, a guest waiting for its watchdog or a reboot, the host making a
# disk) and the others' database and HTTP tests fill those gaps; one after the other, the run took 1496 s on 2 cores,
# side by side 1314 s (2026-12-07). Each stream's output is printed whole as it ends; cargo's own lines say each test
# binary's time, and the QEMU tests print what they measured (each scenario's time, a power cut's seed) with
# --show-output.
declare -A stream_of=()
stream() { # stream NAME CARGO-TEST-ARGS...
    local name=$1
    shift
    (
        rc=0
        cargo test --locked "$@" >"$logs/$name.log" 2>&1 || rc=$?
        exit "$rc"
    ) &
    stream_of[$!]=$name
}
stream qemu-tests -p qemu-tests -- --show-output
stream others --workspace --exclude qemu-tests
status=0
for _ in "${!stream_of[@]}"; do
    rc=0
    wait -n -p ended || rc=$?
    echo "== cargo test, ${stream_of[$ended]}: $( [ "$rc" -eq 0 ] && echo passed || echo "FAILED (exit $rc)")"
    cat "$logs/${stream_of[$ended]}.log"
    [ "$rc" -eq 0 ] || status=$rc
done
passed=$(cat "$logs"/*.log | awk '/^test result:/ {s += $4} END {print s + 0}')
failed=$(cat "$logs"/*.log | awk '/^test result:/ {s += $6} END {print s + 0}')
if [ "$status" -ne 0 ] && compgen -G "$qemu_logs/*.log" >/dev/null; then
    for console in "$qemu_logs"/*.log; do
        echo
        echo "== console of the failed QEMU test $(basename "$console" .log) (last 200 lines; whole file: $console)"
        tail -n 200 "$console" | sed 's/\x1b\[[0-9;?=]*[a-zA-Z]//g' | tr -d '\r'
    done
fi
# The operator guide's laptop walkthrough, with the debug binaries the tests above built, counted as one test.
phase "the operator guide's laptop walkthrough (scripts/guide-laptop.sh)"
if bash scripts/guide-laptop.sh; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    status=1
fi
phase "done"
echo
echo "time by phase (cargo test's own lines say each test binary's time):"
printf '%s\n' "${phase_times[@]}"
printf '%6d s  in all\n' "$SECONDS"
echo "$passed passed, $failed failed"
exit "$status"
