#!/usr/bin/env bash
# The dependency policy of deny.toml, checked with cargo-deny (docs/dependencies.md): licenses, duplicate versions and
# sources always; security advisories only when a copy of the advisory database is already on this machine, because
# only the package registries can be reached from here.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-deny at this version, built from the crates registry when it is missing or another version (about a minute
# on 2 cores, once per machine: scripts/cargo-install.sh); only the test suite needs it, so the demo does not pay.
edge_cargo_deny_version=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $edge_cargo_deny_version" ]; then
    bash scripts/cargo-install.sh cargo-deny "$edge_cargo_deny_version"
fi

cargo deny --locked check licenses bans sources
# cargo-deny keeps its databases here; `cargo deny fetch` on a machine that reaches the database's host fills it.
if compgen -G "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-*/crates" >/dev/null; then
    cargo deny --locked --offline check advisories
else
    echo "deny: no copy of the advisory database on this machine; advisories not checked (docs/dependencies.md)" >&2
fi
