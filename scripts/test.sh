#!/usr/bin/env bash
# The whole test suite: formatting, lints, the fuzz target's build, and every test of every crate.
# Installs what it needs. Ends with one line that totals the tests: "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== the fuzz target still builds (running it needs nightly: image-layout/fuzz/README.md)" >&2
cargo check --quiet --manifest-path image-layout/fuzz/Cargo.toml
echo "== cargo test" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
passed=$(awk '/^test result:/ {s += $4} END {print s + 0}' "$log")
failed=$(awk '/^test result:/ {s += $6} END {print s + 0}' "$log")
echo
echo "$passed passed, $failed failed"
exit "$status"
