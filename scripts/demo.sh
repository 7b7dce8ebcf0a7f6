#!/usr/bin/env bash
# The end-to-end demo: builds the test node (a Debian kernel, an initramfs whose /init is edge-init, slot root images
# with edge-update, GRUB for the ESP) and a disk made by `edge-image disk`, boots it in QEMU with OVMF, updates it over
# HTTP from 1.0.0 on slot A to 2.0.0 on slot B (committed by its health checks), then ships a broken 3.0.0 that fails
# its health check on slot A and is rolled back. Prints a timeline of events and slot states. Installs what it needs;
# the node's console goes to DEMO_DIR (default /var/tmp/edge-demo). The bundle tooling alone: scripts/demo-bundles.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
export DEMO_DIR=${DEMO_DIR:-/var/tmp/edge-demo}
cargo run --quiet --locked -p qemu-tests --example demo
