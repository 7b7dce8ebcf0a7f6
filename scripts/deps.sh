#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmark need on a fresh Debian 12 machine, and nothing when it is
# already there. Sourced by scripts/demo.sh, scripts/test.sh and bench/run.sh.
set -euo pipefail

need_apt=()
# command:package; the bootloader tools are for bootctl's interop tests and qemu-tests' real GRUB boots; tini (with
# tini-static) and catatonit are the peers of bench/init.sh; musl-gcc builds the C parts of the node binaries (ring);
# depmod builds the QEMU test node's module lists (its kernel and busybox are downloaded, not installed); sfdisk
# and sgdisk check disk images.
# GNU time goes by its path, because `command -v time` finds the shell keyword.
for pair in zstd:zstd mke2fs:e2fsprogs cc:gcc python3:python3 xxd:xxd /usr/bin/time:time \
    grub-editenv:grub-common grub-mkstandalone:grub-efi-amd64-bin qemu-system-x86_64:qemu-system-x86 \
    mcopy:mtools mkfs.vfat:dosfstools fw_printenv:libubootenv-tool mkenvimage:u-boot-tools \
    qemu-system-aarch64:qemu-system-arm file:file tini:tini catatonit:catatonit \
    musl-gcc:musl-tools depmod:kmod sfdisk:fdisk sgdisk:gdisk; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need_apt+=("$pkg")
done
if [ "${EDGE_DEPS_BENCH:-0}" = 1 ]; then
    command -v casync >/dev/null 2>&1 || need_apt+=(casync)
fi
[ -e /usr/share/OVMF/OVMF_CODE_4M.fd ] || need_apt+=(ovmf)
[ -e /usr/lib/u-boot/qemu_arm64/u-boot.bin ] || need_apt+=(u-boot-qemu)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: no Rust toolchain: install rustup (https://rustup.rs) and run this again" >&2
    exit 1
fi
for comp in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$comp"; then
        rustup component add "$comp"
    fi
done
# Node binaries are static musl builds (edge-init's size is checked by the tests).
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    rustup target add x86_64-unknown-linux-musl
fi
