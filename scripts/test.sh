#!/usr/bin/env bash
# The whole test suite: formatting, lints, every fuzz target for a bounded time, and every test of every crate.
# Installs what it needs. Ends with one line that totals the tests: "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo deny: licenses, duplicate versions, sources (scripts/deny.sh, docs/dependencies.md)" >&2
bash scripts/deny.sh
echo "== fuzz: every target for 25 s, seeded from the vectors (scripts/fuzz.sh, fuzz/README.md)" >&2
bash scripts/fuzz.sh --seconds 25
# The node's binaries as the QEMU test node gets them (qemu-tests/node/build.sh builds them once for both: the tests
# reuse this build), for each node architecture: static musl release builds, edge-init within its 1 MiB budget.
for arch in x86_64 aarch64; do
    echo "== the $arch node's binaries: static musl release builds, edge-init at most 1 MiB" >&2
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
echo "== cargo test" >&2
# The QEMU node tests keep the console log of a failed test here; old ones are cleared first.
qemu_logs=target/qemu-logs
rm -rf "$qemu_logs"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
passed=$(awk '/^test result:/ {s += $4} END {print s + 0}' "$log")
failed=$(awk '/^test result:/ {s += $6} END {print s + 0}' "$log")
if [ "$status" -ne 0 ] && compgen -G "$qemu_logs/*.log" >/dev/null; then
    for console in "$qemu_logs"/*.log; do
        echo
        echo "== console of the failed QEMU test $(basename "$console" .log) (last 200 lines; whole file: $console)"
        tail -n 200 "$console" | sed 's/\x1b\[[0-9;?=]*[a-zA-Z]//g' | tr -d '\r'
    done
fi
# The operator guide's laptop walkthrough, with the debug binaries the tests above built, counted as one test.
echo "== the operator guide's laptop walkthrough (scripts/guide-laptop.sh)" >&2
if bash scripts/guide-laptop.sh; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    status=1
fi
echo
echo "$passed passed, $failed failed"
exit "$status"
