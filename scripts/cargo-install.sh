#!/usr/bin/env bash
# cargo-install.sh CRATE VERSION: installs a cargo subcommand the test suite runs (cargo-deny, cargo-fuzz) from the
# crates registry at that version, unoptimised. These tools read a few files and run for a second or two, so their
# optimisation only costs build time on every fresh machine: with cargo-deny's own release profile (fat LTO, one
# codegen unit) its install took 175 s of a 2-core CI run, downloads included and 90 s of it on one CPU; unoptimised
# it builds in 57 s (sources already downloaded; 126 s with its profile's optimisation but no LTO) and checks this
# workspace in 1.2 s instead of 0.7 s; cargo-fuzz builds in 15 s instead of 30 (2026-12-07, docs/dependencies.md).
set -euo pipefail
crate=${1:?usage: cargo-install.sh CRATE VERSION}
version=${2:?usage: cargo-install.sh CRATE VERSION}
echo "installing $crate $version (unoptimised: scripts/cargo-install.sh)" >&2
export CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
exec cargo install --quiet --locked "$crate" --version "$version"
