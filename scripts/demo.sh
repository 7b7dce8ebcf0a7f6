#!/usr/bin/env bash
# The end-to-end demo of what exists today: make a key, build signed bundles of two versions of a real ext4 root
# filesystem image, inspect and verify one, extract it, plan a delta install from the old version, watch tampered
# and untrusted copies get refused; then a node's slot state through an update that fails and rolls back. Installs what it needs; works in a scratch directory (DEMO_DIR, default
# /tmp/edge-demo).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
source scripts/deps.sh
dir=${DEMO_DIR:-/tmp/edge-demo}
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
cargo build --release --locked -p image-layout
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

step "slot state: a node's boot state, as GRUB will read it (edge-bootctl)"
(cd "$repo" && cargo build --release --locked -p bootctl)
bootctl="$repo/target/release/edge-bootctl"
rm -rf esp && mkdir -p esp
printf 'backend = "grub"\ngrub_state_dir = "%s/esp"\ncmdline = "%s/cmdline"\n' "$dir" "$dir" >bootctl.toml
echo "edge.slot=A" >cmdline
show "$bootctl" --config bootctl.toml provision --good A
show "$bootctl" --config bootctl.toml set-active B
show "$bootctl" --config bootctl.toml status
echo "GRUB's own tool reads the newest copy (its fill line left out here):"
printf '$ %s\n' "grub-editenv esp/state0.env list"
grub-editenv esp/state0.env list | grep -v '^edge_fill='
echo "B boots as a trial and fails its health check:"
echo "edge.slot=B" >cmdline
show "$bootctl" --config bootctl.toml mark-bad
show "$bootctl" --config bootctl.toml status

step "done: everything is in $dir"
