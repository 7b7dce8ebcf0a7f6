#!/usr/bin/env bash
# Builds what the QEMU test node boots, without root and without installing anything of the node's architecture on
# the host: a Debian kernel (downloaded and unpacked into a cache, never installed), an initramfs whose /init is
# edge-init, and ext4 root images of the node's slots made with mke2fs -d. One builder for every architecture:
# EDGE_NODE_ARCH picks the node's (x86_64, the default, or aarch64), and with it the Debian architecture its kernel
# and busybox come from, the Rust target its binaries are built for, and the boot loader's files.
#
# Usage: [EDGE_NODE_ARCH=x86_64|aarch64] qemu-tests/node/build.sh [OUT_DIR]
# Writes into OUT_DIR (default target/qemu-node for x86_64, target/qemu-node-aarch64 for aarch64):
#   kernel-version      the kernel release used (resolved from linux-image-amd64 or linux-image-arm64 at run time)
#   BOOTX64.EFI         x86_64 only: GRUB for the ESP (grub-mkstandalone with grub-embedded.cfg); an aarch64 node
#                       boots U-Boot, whose script edge-image disk compiles from bootctl/uboot/boot.cmd
#   vmlinuz initrd.img  the kernel and the initramfs (also inside every root image, under /boot)
#   bin/                the node's static binaries, built for the node's architecture
#   host/               the host's tools: edge-image and edge-bootctl (to make bundles, boot states and disks) and
#                       busybox, whose nc is the host side of the guest's one network forward (qemu-tests/src/vm.rs)
#   keys/node.key .pub  the key the test bundles are signed with (made once, kept), trusted by every root image
# and reads from OUT_DIR fleet-ca/ca.pem, the fleet's CA the harness made (qemu-tests/src/node.rs, made once, kept),
# which every root image carries as /etc/edge/fleet-ca.pem: the one root edge-agent trusts.
#   root-VARIANT-VERSION.ext4  slot root filesystems, for each VARIANT:VERSION in EDGE_NODE_IMAGES
#   root/               the tree shared by every image
# Variants differ only in /etc/edge/services.toml and /etc/edge/broken:
#   good       net, the ESP mount (x86_64), the app stand-in (critical, notify), the harness shell, the fleet agent,
#              the telemetry test's ticker (idle until a flag is on the data partition), then `edge-update boot`
#   unhealthy  as good, but its health check fails (/etc/edge/broken)
#   hang       a critical service that is down for good, so edge-init stops petting the watchdog; nothing commits
#   panic      a service that crashes the kernel (sysrq c); panic=10 on the command line reboots it
# A version goes into /etc/edge/version and /usr/share/edge-node/release (a few KiB that change with it); the same
# inputs give the same image bytes. The cargo build uses EDGE_NODE_TARGET_DIR (default target/qemu-node-cargo), so
# that a test can run this script while an outer cargo holds the workspace's target directory.
#
# With EDGE_NODE_BINARIES_ONLY=1 it only builds the binaries and prints the folder of the node's, so that the test
# script checks edge-init's size on the very build the node boots.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
arch=${EDGE_NODE_ARCH:-x86_64}
# deb_arch: Debian's name of the architecture; target: Rust's; root_mib: the slot root images' size (arm64's kernel is
# an uncompressed Image of 32 MiB).
case $arch in
x86_64) deb_arch=amd64 target=x86_64-unknown-linux-musl default_out=$repo/target/qemu-node root_mib=48 ;;
aarch64) deb_arch=arm64 target=aarch64-unknown-linux-musl default_out=$repo/target/qemu-node-aarch64 root_mib=64 ;;
*) echo "build.sh: EDGE_NODE_ARCH=$arch: expected x86_64 or aarch64" >&2; exit 1 ;;
esac
# The board string of the node's update.toml, which every good test bundle carries (qemu-tests/src/node.rs).
compatible=edge-qemu-$arch
host_deb_arch=$(dpkg --print-architecture)
case $host_deb_arch in
amd64) host_target=x86_64-unknown-linux-musl ;;
arm64) host_target=aarch64-unknown-linux-musl ;;
*) echo "build.sh: no Rust target for the host's architecture $host_deb_arch" >&2; exit 1 ;;
esac

# The node's binaries and the host's tools, static musl builds. On an x86_64 host an x86_64 node's binaries come
# from the one build with the tools; an aarch64 node's from a cross build (.cargo/config.toml names the cross gcc).
node_pkgs=(-p edge-init -p edge-update -p edge-bootctl -p edge-agent)
# Run by a test, this script inherits what cargo sets for the test's package (CARGO_MANIFEST_DIR and the like), and
# the nested cargo would see it too: ring's build script reruns when CARGO_MANIFEST_DIR changes, so a test would
# rebuild the node's binaries from ring up, and the next build outside a test again. Those variables are dropped.
for var in $(compgen -e); do
    case $var in
    CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_BIN_NAME | CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR | OUT_DIR)
        unset "$var"
        ;;
    esac
done
cargo_target=${EDGE_NODE_TARGET_DIR:-$repo/target/qemu-node-cargo}
# One cargo run for both targets when the node's is not the host's: the two builds share the CPUs, each filling the
# time the other spends in a link-time optimisation on one CPU (edge-image is built for the node's target too, unused).
targets=(--target "$host_target")
if [ "$target" != "$host_target" ]; then
    targets+=(--target "$target")
fi
(cd "$repo" && cargo build -q --release --locked "${targets[@]}" --target-dir "$cargo_target" "${node_pkgs[@]}" -p edge-image)
bin="$cargo_target/$target/release"
host_bin="$cargo_target/$host_target/release"
if [ "${EDGE_NODE_BINARIES_ONLY:-0}" = 1 ]; then
    echo "$bin"
    exit 0
fi

out=$(mkdir -p "${1:-$default_out}" && cd "${1:-$default_out}" && pwd)
images=${EDGE_NODE_IMAGES:-good:1.0.0 good:2.0.0 good:3.0.0 unhealthy:2.0.0 unhealthy:3.0.0 hang:2.0.0 panic:2.0.0}
cache=${EDGE_NODE_CACHE:-$repo/target/qemu-node-cache}
mkdir -p "$cache"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

# apt for the architecture ARCH: the host's own apt for the host's; for another, a private configuration in the
# cache (its own lists, archive cache and empty dpkg status, APT::Architecture set to ARCH) over the host's
# sources, so that the host's dpkg and apt state never learn of ARCH.
apt_for() { # apt_for ARCH apt-get|apt-cache ARGS...
    local a=$1 dir
    shift
    if [ "$a" = "$host_deb_arch" ]; then
        "$@"
        return
    fi
    dir="$cache/apt-$a"
    if [ ! -f "$dir/apt.conf" ]; then
        mkdir -p "$dir/lists/partial" "$dir/archives/partial"
        : >"$dir/status"
        printf '%s\n' "Dir::State \"$dir\";" "Dir::State::lists \"$dir/lists\";" "Dir::State::status \"$dir/status\";" \
            "Dir::Cache \"$dir\";" "Dir::Cache::archives \"$dir/archives\";" "Dir::Cache::pkgcache \"\";" \
            "Dir::Cache::srcpkgcache \"\";" "APT::Architecture \"$a\";" "APT::Architectures { \"$a\"; };" \
            >"$dir/apt.conf.tmp"
        mv "$dir/apt.conf.tmp" "$dir/apt.conf"
    fi
    APT_CONFIG="$dir/apt.conf" "$@"
}

# Debian packages are fetched into the cache and unpacked there, never installed.
fetch_deb() { # fetch_deb ARCH PACKAGE -> prints the unpacked directory
    local a=$1 pkg=$2 deb dir
    deb=$(ls "$cache/debs/${pkg}"_*_"$a".deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        mkdir -p "$cache/debs"
        (cd "$cache/debs" && apt_for "$a" apt-get download -qq "$pkg:$a" >/dev/null 2>&1) ||
            { apt_for "$a" apt-get update -qq >&2 && (cd "$cache/debs" && apt_for "$a" apt-get download -qq "$pkg:$a" >/dev/null); }
        deb=$(ls "$cache/debs/${pkg}"_*_"$a".deb | head -n1)
    fi
    dir="$cache/unpacked/$(basename "$deb" .deb)"
    if [ ! -d "$dir" ]; then
        rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
        dpkg -x "$deb" "$dir.tmp"
        mv "$dir.tmp" "$dir"
    fi
    echo "$dir"
}

# copy_modules SRC DEST NAME...: the named modules of the kernel tree SRC and everything they depend on, into DEST,
# with the kernel's module lists and a modules.dep for them.
copy_modules() {
    local src=$1 dest=$2 mdir="$1/lib/modules/$kver"; shift 2
    local -A seen=()
    local queue=("$@") name path dep
    while [ ${#queue[@]} -gt 0 ]; do
        name=${queue[0]}; queue=("${queue[@]:1}")
        name=${name//-/_}
        [ -n "${seen[$name]:-}" ] && continue
        seen[$name]=1
        path=$(awk -F: -v n="$name" '{ f = $1; sub(".*/", "", f); sub("\\.ko.*$", "", f); gsub("-", "_", f); if (f == n) { print $1; exit } }' "$mdir/modules.dep")
        if [ -z "$path" ]; then
            if grep -q "/${name}.ko" "$mdir/modules.builtin" 2>/dev/null; then continue; fi
            echo "build.sh: no module $name in $kpkg" >&2; exit 1
        fi
        mkdir -p "$dest/lib/modules/$kver/$(dirname "$path")"
        cp "$mdir/$path" "$dest/lib/modules/$kver/$path"
        for dep in $(awk -F: -v p="$path" '$1 == p { print $2 }' "$mdir/modules.dep"); do
            dep=${dep##*/}; queue+=("${dep%%.ko*}")
        done
    done
    cp "$mdir/modules.builtin" "$mdir/modules.builtin.modinfo" "$mdir/modules.order" "$dest/lib/modules/$kver/"
    depmod -b "$dest" "$kver"
}

# The modules the initramfs loads (the disk's drivers, and the watchdog's, so that the watchdog is there from the
# start on every architecture: the generic kernels of both build i6300esb as a module), and those the root adds.
initramfs_modules=(virtio_pci virtio_blk crc32c_generic ext4 i6300esb)
root_modules=("${initramfs_modules[@]}" virtio_net virtio_console vfat nls_cp437 nls_ascii)

# The kernel: whatever linux-image-amd64 or linux-image-arm64 depends on today (the generic kernel: its i6300esb
# watchdog driver is a module, the cloud kernel has none). arm64's vmlinuz is an uncompressed Image, which U-Boot's
# booti starts as it is. The cache keeps only what the node takes of it (the kernel image, the modules above and the
# module lists: tens of MiB of a package that unpacks to 400), so the download and the whole tree are gone once that
# is copied out.
if ! apt_for "$deb_arch" apt-cache show "linux-image-$deb_arch" >/dev/null 2>&1; then apt_for "$deb_arch" apt-get update -qq; fi
kpkg=$(apt_for "$deb_arch" apt-cache depends "linux-image-$deb_arch" |
    sed -n "s/^ *Depends: \(linux-image-[0-9].*-$deb_arch\)\$/\1/p" | head -n1)
[ -n "$kpkg" ] || { echo "build.sh: cannot resolve the kernel package of linux-image-$deb_arch" >&2; exit 1; }
kver=${kpkg#linux-image-}
# The kept part is named by the package and the module list, so a changed list makes a new one.
kdir="$cache/kernel/$kpkg-$(printf '%s\n' "${root_modules[@]}" | sha256sum | cut -c1-12)"
if [ ! -f "$kdir/boot/vmlinuz-$kver" ]; then
    full=$(fetch_deb "$deb_arch" "$kpkg")
    [ -f "$full/boot/vmlinuz-$kver" ] || { echo "build.sh: $kpkg has no /boot/vmlinuz-$kver" >&2; exit 1; }
    [ -f "$full/lib/modules/$kver/modules.dep" ] || depmod -b "$full" "$kver"
    rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp/boot"
    copy_modules "$full" "$kdir.tmp" "${root_modules[@]}"
    cp "$full/boot/vmlinuz-$kver" "$kdir.tmp/boot/"
    rm -rf "$kdir" && mv "$kdir.tmp" "$kdir"
    rm -rf "$cache/unpacked/linux-image-"*_"$deb_arch" "$cache/debs/linux-image-"*_"$deb_arch".deb
fi
bbdir=$(fetch_deb "$deb_arch" busybox-static)
host_bbdir=$(fetch_deb "$host_deb_arch" busybox-static)

put() { # put SOURCE DEST: installed whole or not at all
    install -m 0755 "$1" "$2.tmp" && mv "$2.tmp" "$2"
}
mkdir -p "$out/bin" "$out/host"
for b in edge-init edge-update edge-bootctl edge-agent; do put "$bin/$b" "$out/bin/$b"; done
for b in edge-image edge-bootctl; do put "$host_bin/$b" "$out/host/$b"; done
put "$host_bbdir/bin/busybox" "$out/host/busybox"
mkdir -p "$out/keys"
[ -f "$out/keys/node.key" ] || "$out/host/edge-image" keygen -o "$out/keys/node" >/dev/null
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The initramfs: edge-init as /init, its services file, and the modules it loads.
initramfs="$work/initramfs"
cp -r "$here/initramfs" "$initramfs"
install -m 0755 "$bin/edge-init" "$initramfs/init"
mkdir -p "$initramfs/sbin" "$initramfs/newroot" "$initramfs/proc" "$initramfs/sys" "$initramfs/run"
ln -s ../init "$initramfs/sbin/edge-init"
copy_modules "$kdir" "$initramfs" "${initramfs_modules[@]}"
find "$initramfs" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
python3 "$here/mkcpio.py" "$initramfs" "$work/initrd.cpio"
gzip -n -9 -c "$work/initrd.cpio" >"$work/initrd.img"

# The root tree shared by every variant.
root="$work/root"
cp -r "$here/rootfs" "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,boot/efi,data,dev,proc,sys,run,tmp,root,newroot,etc/edge/keys}
chmod 1777 "$root/tmp"
install -m 0755 "$bbdir/bin/busybox" "$root/bin/busybox"
# The applets are listed by the host's busybox of the same package (the node's may not run here).
for applet in $("$out/host/busybox" --list-full); do
    case $applet in sbin/init | linuxrc | bin/busybox) continue ;; esac
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
install -m 0755 "$bin/edge-init" "$root/sbin/edge-init"
install -m 0755 "$bin/edge-update" "$root/usr/bin/edge-update"
install -m 0755 "$bin/edge-bootctl" "$root/usr/bin/edge-bootctl"
install -m 0755 "$bin/edge-agent" "$root/usr/bin/edge-agent"
install -m 0644 "$kdir/boot/vmlinuz-$kver" "$root/boot/vmlinuz"
install -m 0644 "$work/initrd.img" "$root/boot/initrd.img"
copy_modules "$kdir" "$root" "${root_modules[@]}"
echo edge-node >"$root/etc/hostname"
# Where the boot state is: GRUB's two blocks on the ESP (mounted by the esp service), or U-Boot's redundant
# environment in the raw partition edge-state, partition 2 of an arm64 node's disk (edge-image disk, docs/disk-image.md).
case $arch in
x86_64)
    boot_config='backend = "grub"
grub_state_dir = "/boot/efi/EFI/edge"'
    ;;
aarch64)
    boot_config='backend = "uboot"
uboot_fw_env_config = "/etc/fw_env.config"'
    # Two copies of 8 KiB back to back, where bootctl/uboot/boot.cmd reads them; fw_printenv reads the same file.
    printf '%s\n' "# The boot state: U-Boot's redundant environment in the partition edge-state (qemu-tests/node/build.sh)." \
        "/dev/vda2 0x0000 0x2000" "/dev/vda2 0x2000 0x2000" >"$root/etc/fw_env.config"
    ;;
esac
printf '%s\n' "# How edge-bootctl reaches the boot state (qemu-tests/node/build.sh writes this file)." "$boot_config" \
    >"$root/etc/edge/bootctl.toml"
{
    echo "# edge-update on the test node: slots and data by partition name (qemu-tests/node/build.sh writes this file)."
    echo "compatible = \"$compatible\""
    awk -v keys="$boot_config" '/^keyring/ { on = 1 } on { print } on && /^\[bootctl\]$/ { print keys }' "$here/update.toml"
} >"$root/etc/edge/update.toml"
cp "$out/keys/node.pub" "$root/etc/edge/keys/"
[ -f "$out/fleet-ca/ca.pem" ] || { echo "build.sh: $out/fleet-ca/ca.pem missing: the harness makes the fleet's CA first" >&2; exit 1; }
install -m 0644 "$out/fleet-ca/ca.pem" "$root/etc/edge/fleet-ca.pem"

services_common() {
    cat <<'TOML'
# The test node's services (qemu-tests/node/build.sh writes this file).
hostname = "edge-node"
modules = ["virtio_net", "virtio_console", "i6300esb", "vfat", "nls_cp437", "nls_ascii"]

[watchdog]
identity = "i6300ESB timer"
timeout_secs = 20

[data]
fsck = []
format = []

[[service]]
name = "net"
argv = ["/usr/libexec/edge-node/net"]
ready = "exited"
restart = "never"

[[service]]
name = "shell"
argv = ["/usr/libexec/edge-node/shell"]
restart = "always"

# The fleet agent: ready once its config is read and its key is there, before any network; nothing waits for it,
# and with no endpoint (or no token in /etc/edge/fleet-token) it only retries.
[[service]]
name = "edge-agent"
argv = ["/usr/bin/edge-agent", "run"]
ready = "notify"
restart = "always"

# Numbered lines for the telemetry test, once a flag is on the data partition. Listed after the agent, so it stops
# before the agent at a shutdown and its last lines are collected.
[[service]]
name = "ticker"
argv = ["/usr/libexec/edge-node/ticker"]
restart = "always"
TOML
}

# x86_64: the ESP, where the boot state is, mounted on /boot/efi before `edge-update boot` runs.
esp_service() {
    cat <<'TOML'

[[service]]
name = "esp"
argv = ["/usr/libexec/edge-node/esp"]
ready = "exited"
restart = "never"
TOML
}
boot_mount=
if [ "$arch" = x86_64 ]; then boot_mount=esp; fi

services_update() { # services_update AFTER...: `edge-update boot` once the named services are up
    local after
    after=$(printf '"%s", ' "$@")
    cat <<TOML

[[service]]
name = "update-boot"
argv = ["/usr/bin/edge-update", "boot"]
after = [${after%, }]
ready = "exited"
restart = "never"
TOML
}

app_service() {
    cat <<'TOML'

[[service]]
name = "app"
argv = ["/usr/libexec/edge-node/app"]
ready = "notify"
start_timeout_secs = 60
critical = true
TOML
}

for image in $images; do
    variant=${image%%:*} version=${image#*:}
    rm -rf "$work/v" && cp -a "$root" "$work/v"
    echo "$version" >"$work/v/etc/edge/version"
    mkdir -p "$work/v/usr/share/edge-node"
    for i in $(seq 1 64); do echo "edge-node $version release line $i"; done >"$work/v/usr/share/edge-node/release"
    {
        services_common
        if [ -n "$boot_mount" ]; then esp_service; fi
        app_service
        case $variant in
        good | unhealthy) services_update $boot_mount net app ;;
        hang)
            cat <<'TOML'

[[service]]
name = "stuck"
argv = ["/bin/false"]
restart = "never"
critical = true
TOML
            services_update $boot_mount net app stuck
            ;;
        panic)
            cat <<'TOML'

[[service]]
name = "crash"
argv = ["/bin/sh", "-c", "echo c >/proc/sysrq-trigger"]
after = ["app"]
restart = "never"
TOML
            services_update $boot_mount net app crash
            ;;
        *) echo "build.sh: unknown variant $variant in EDGE_NODE_IMAGES" >&2; exit 1 ;;
        esac
    } >"$work/v/etc/edge/services.toml"
    if [ "$variant" = unhealthy ]; then echo "this build fails its health check" >"$work/v/etc/edge/broken"; fi
    find "$work/v" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    # A fixed UUID and hash seed, and the fixed times above, make the image the same for the same tree.
    rm -f "$work/root.ext4"
    E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mke2fs -q -t ext4 -b 4096 -L edge-root -d "$work/v" \
        -U 6564676f-726f-4f74-8000-000000000001 -E root_owner=0:0,hash_seed=6564676f-726f-4f74-8000-000000000002 \
        "$work/root.ext4" "${EDGE_NODE_ROOT_MIB:-$root_mib}M" >/dev/null
    mv "$work/root.ext4" "$out/root-$variant-$version.ext4"
done

# GRUB for the ESP; every module goes into its memdisk and loads on first use.
if [ "$arch" = x86_64 ]; then
    grub-mkstandalone --format=x86_64-efi --modules="part_gpt fat serial terminal search search_fs_file configfile echo test" \
        --locales= --fonts= --themes= --output "$work/BOOTX64.EFI" "boot/grub/grub.cfg=$here/grub-embedded.cfg"
    mv "$work/BOOTX64.EFI" "$out/BOOTX64.EFI"
fi

rm -rf "$out/root" && mv "$root" "$out/root"
cp "$kdir/boot/vmlinuz-$kver" "$out/vmlinuz"
mv "$work/initrd.img" "$out/initrd.img"
echo "$kver" >"$out/kernel-version"
echo "built the $arch test node for kernel $kver into $out" >&2
