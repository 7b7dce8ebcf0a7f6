#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of every crate. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test" >&2
cargo test --workspace --locked
echo "== the fuzz target still builds (running it needs nightly: image-layout/fuzz/README.md)" >&2
cargo check --quiet --manifest-path image-layout/fuzz/Cargo.toml
