#!/usr/bin/env bash
# The bundle tooling on the host, without QEMU (the end-to-end demo is scripts/demo.sh): make a key, build signed
# bundles of two versions of a real ext4 root filesystem image, inspect and verify one, extract it, plan a delta
# install, watch tampered and untrusted copies get refused; then a node with file slots updated over HTTP on loopback
# (delta from its running slot), committed by its health checks, then given a broken update that fails its health
# check and is rolled back. Installs what it needs; works in a scratch directory (DEMO_DIR, default
# /var/tmp/edge-demo-bundles: not under /tmp, which edge-init as PID 1 mounts afresh as a tmpfs in the node's own
# mount namespace).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
source scripts/deps.sh
dir=${DEMO_DIR:-/var/tmp/edge-demo-bundles}
mkdir -p "$dir"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
# Runs a command that must fail with the given exit code, and says what that code means.
refused() {
    local want=$1 meaning=$2
    shift 2
    printf '$ %s\n' "$*"
    local code=0
    "$@" || code=$?
    echo "exit code $code ($want: $meaning)"
    [ "$code" = "$want" ]
}

step "build edge-image"
cargo build --release --locked -p edge-image
img="$repo/target/release/edge-image"

step "two versions of a root filesystem: 256 MiB ext4 images from 40 MiB of /usr, v2 with every 20th file rewritten"
bash bench/make-pair.sh "$dir/pair" 40

cd "$dir"
rm -rf keys ring ./*.bundle ./*.img
mkdir -p keys ring
step "make a signing key; the node trusts its public half"
show "$img" keygen -o keys/release
cp keys/release.pub ring/

step "build signed bundles of v1 and v2"
show "$img" build --payload rootfs=pair/v1.img --version 1.0.0 --security-version 1 --compatible qemu-x86_64 \
    --key keys/release.key -o v1.bundle >/dev/null
echo '{"kernel": "6.1.0", "k3s": "v1.31.2+k3s1", "app": "shop-pos 4.2"}' >stack.json
show "$img" build --payload rootfs=pair/v2.img --version 1.1.0 --security-version 1 --compatible qemu-x86_64 \
    --expires 2099-01-01T00:00:00Z --stack-info stack.json --key keys/release.key -o v2.bundle >/dev/null

step "inspect it"
show "$img" inspect v2.bundle --keyring ring

step "verify every signature, index, chunk and delta frame"
show "$img" verify v2.bundle --keyring ring

step "extract the root filesystem, streamed from stdin, verified chunk by chunk"
printf '$ %s\n' "$img extract - --payload rootfs -o rootfs.img --keyring ring < v2.bundle"
"$img" extract - --payload rootfs -o rootfs.img --keyring ring <v2.bundle
show cmp rootfs.img pair/v2.img && echo "identical to the source image"

step "a node running v1 installs v2: what it fetches, and what it reuses from its running slot"
show "$img" delta-plan v2.bundle --have pair/v1.img --keyring ring

step "a tampered copy (one byte overwritten inside a chunk) is refused"
cp v2.bundle tampered.bundle
size=$(stat -c %s tampered.bundle)
printf '\x01' | dd of=tampered.bundle bs=1 seek=$((size / 4)) conv=notrunc status=none
refused 5 "a hash does not match" "$img" verify tampered.bundle --keyring ring

step "a bundle signed by a key the node does not trust is refused"
"$img" keygen -o keys/stranger >/dev/null
"$img" build --payload rootfs=pair/v2.img --version 6.6.6 --security-version 9 --compatible qemu-x86_64 \
    --key keys/stranger.key -o stranger.bundle >/dev/null
refused 4 "no trusted signature" "$img" verify stranger.bundle --keyring ring

step "a node: slot A runs v1, slot B is empty; boot state for GRUB; the release key trusted"
(cd "$repo" && cargo build --release --locked -p edge-bootctl -p edge-update -p edge-init -p testkit --bins --example serve)
bootctl="$repo/target/release/edge-bootctl"
update="$repo/target/release/edge-update"
init="$repo/target/release/edge-init"
rm -rf node && mkdir -p node/esp node/data
cp pair/v1.img node/a.img
truncate -s 300M node/a.img
truncate -s 300M node/b.img
echo "edge.slot=A" >node/cmdline
printf 'backend = "grub"\ngrub_state_dir = "%s/node/esp"\ncmdline = "%s/node/cmdline"\n' "$dir" "$dir" >node/bootctl.toml
# The node's update config; $1 is appended to its [health] table.
write_config() {
    cat >node/update.toml <<EOF
compatible = "qemu-x86_64"
keyring = "$dir/ring"
data_dir = "$dir/node/data"
reboot = "init"
init_socket = "$dir/node/run/control.sock"

[slots]
a = "$dir/node/a.img"
b = "$dir/node/b.img"

[bootctl]
backend = "grub"
grub_state_dir = "$dir/node/esp"
cmdline = "$dir/node/cmdline"

[health]
deadline_secs = 20
services = true
$1
EOF
}
# The node's services under edge-init: the application stack (a stand-in that says it is ready), then
# `edge-update boot`, which checks the health (edge-init's services answer included) and commits or rolls back.
cat >node/services.toml <<EOF
[data]
device = "/nonexistent"
mount = "$dir/node/scratch"
wait_secs = 0
format = []

[[service]]
name = "app"
argv = ["sh", "-c", "echo serving; $init notify READY=1; exec sleep 1000"]
ready = "notify"
restart = "always"

[[service]]
name = "update-boot"
argv = ["$update", "--config", "$dir/node/update.toml", "boot"]
after = ["app"]
restart = "never"
ready = "exited"

[[service]]
name = "demo-done"
argv = ["$init", "ctl", "--socket", "$dir/node/run/control.sock", "poweroff"]
after = ["update-boot"]
restart = "never"
EOF
# Boots the node: edge-init as PID 1 of new PID, mount, UTS and network namespaces, until it reboots or powers
# off. reboot(2) in a PID namespace ends its PID 1 with SIGHUP (restart) or SIGINT (power off).
boot_node() {
    echo "\$ edge-init   # as PID 1 of new namespaces, with node/services.toml"
    local status=0
    timeout 300 unshare --kill-child --pid --fork --mount --uts --net --mount-proc "$init" --config node/services.toml --run "$dir/node/run" \
        --log stderr --cmdline "$(cat node/cmdline)" 2>&1 | sed -u 's/^/    /' || status=$?
    case $status in
        0 | 129 | 130) ;;
        *) echo "edge-init ended with status $status" >&2; exit 1 ;;
    esac
}
write_config ""
show "$bootctl" --config node/bootctl.toml provision --good A
u() { show "$update" --config node/update.toml "$@"; }
# The bootloader's part, until the QEMU harness boots the real one: boot the slot edge-bootctl says is next.
reboot_node() {
    local next
    next=$("$bootctl" --config node/bootctl.toml status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_slot"])')
    echo "edge.slot=$next" >node/cmdline
    echo "(reboot: the bootloader boots slot $next)"
}

step "serve the bundles over HTTP on loopback"
rm -rf www && mkdir -p www && cp v2.bundle www/
"$img" build --payload rootfs=pair/v1.img --version 1.2.0 --security-version 1 --compatible qemu-x86_64 \
    --key keys/release.key -o www/v3-broken.bundle >/dev/null
exec 3< <(exec "$repo/target/release/examples/serve" www)
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true' EXIT
read -r base <&3
echo "serving at $base"

step "update over the network: v2 into slot B, taking from slot A every block it already has"
u install "${base}v2.bundle"
u status

step "reboot into B on trial; edge-init starts the services, the health checks pass and B is committed"
reboot_node
boot_node
u status
echo "GRUB's own tool reads the boot state (its fill line left out here):"
# Two copies, written in turn; the newer is the one whose generation (edge_begin: 0, 1, 2, then 0 again) is one
# past the other's (docs/boot-state.md).
for copy in state0 state1; do
    printf '$ %s\n' "grub-editenv node/esp/$copy.env list"
    grub-editenv "node/esp/$copy.env" list | grep -v '^edge_fill='
done

step "a bad update: 1.2.0 into slot A, whose service never answers its health probe"
write_config $'[[health.http]]\nurl = "http://127.0.0.1:9/healthz"\nattempts = 2\ntimeout_secs = 2'
u install "${base}v3-broken.bundle"
reboot_node
echo "(edge-update boot fails its health check, marks slot A bad and asks edge-init for a reboot)"
boot_node
reboot_node
boot_node
u status
show "$bootctl" --config node/bootctl.toml status

step "the event log the cloud link will ship"
show tail -n 6 node/data/events.jsonl

step "done: everything is in $dir"
