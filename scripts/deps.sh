#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmark need on a fresh Debian 12 machine, and nothing when it is
# already there. Sourced by scripts/demo.sh, scripts/test.sh and bench/run.sh.
#
# QEMU comes in many packages that must all be of one version (qemu-utils 10 declares that it breaks
# qemu-system-x86 7.2). When the machine already carries QEMU packages from bookworm-backports, the missing ones are
# installed from there too, adding bookworm-backports to apt's sources (on the same mirror as bookworm) when it is not
# there yet; on a machine with no QEMU, or with bookworm's, they come from bookworm. docs/qemu-tests.md lists the QEMU
# versions the suite is known to pass on.
# Packages come without their recommendations: only what the suite uses (grub-efi-amd64-bin alone would otherwise
# bring the signed shim, a protected package, and os-prober onto the host).
set -euo pipefail

# command:package; the bootloader tools are for bootctl's interop tests and qemu-tests' real GRUB boots; tini (with
# tini-static) and catatonit are the peers of bench/init.sh; musl-gcc builds the C parts of the node binaries (ring);
# depmod builds the QEMU test node's module lists (its kernel and busybox are downloaded, not installed); sfdisk
# and sgdisk check disk images; the tests signal processes with kill(1), whose `command -v` is the shell's builtin.
# A path stands for a file the suite reads rather than a command.
# GNU time goes by its path, because `command -v time` finds the shell keyword. A path may hold a glob: Debian keeps
# PostgreSQL's programs under /usr/lib/postgresql/<major>/bin, off PATH, and any major will do (the fleet endpoint's
# tests start their own server with them; testkit's postgres module picks the newest). openssl makes the tests'
# private CAs (testkit's tls module, edge-agent's TLS test); curl is the client of the fleet demo and benchmark;
# chromium and its chromedriver run the web view's browser tests (testkit's webdriver module), headless;
# victoria-metrics and prometheus are the TSDBs the endpoint's remote write is tested against (testkit's tsdb
# module starts them on loopback; their packages' own services are not used). The arm64 node's binaries are built
# here too: aarch64-linux-gnu-gcc links them and compiles their C parts (.cargo/config.toml), against the headers of
# libc6-dev-arm64-cross; nothing of arm64 is installed on the host itself (the node's kernel and busybox are
# unpacked into a cache by qemu-tests/node/build.sh).
edge_deps=(zstd:zstd mke2fs:e2fsprogs cc:gcc python3:python3 xxd:xxd /usr/bin/time:time
    grub-editenv:grub-common grub-mkstandalone:grub-efi-amd64-bin qemu-system-x86_64:qemu-system-x86
    mcopy:mtools mkfs.vfat:dosfstools fw_printenv:libubootenv-tool mkenvimage:u-boot-tools
    qemu-system-aarch64:qemu-system-arm qemu-img:qemu-utils file:file tini:tini catatonit:catatonit
    musl-gcc:musl-tools depmod:kmod sfdisk:fdisk sgdisk:gdisk /usr/bin/kill:procps
    /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf /usr/lib/u-boot/qemu_arm64/u-boot.bin:u-boot-qemu
    '/usr/lib/postgresql/*/bin/initdb:postgresql' openssl:openssl curl:curl
    /usr/bin/chromium:chromium /usr/bin/chromedriver:chromium-driver
    victoria-metrics:victoria-metrics prometheus:prometheus
    aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu /usr/aarch64-linux-gnu/include/stdlib.h:libc6-dev-arm64-cross)
if [ "${EDGE_DEPS_BENCH:-0}" = 1 ]; then
    # casync is the delta peer of bench/delta.sh; nginx the download peer of bench/fleet.sh.
    edge_deps+=(casync:casync nginx:nginx)
fi

# The packages of `edge_deps` whose command or file is missing, one per line.
edge_deps_missing() {
    local pair cmd
    for pair in "${edge_deps[@]}"; do
        cmd=${pair%%:*}
        case $cmd in
        /*) compgen -G "$cmd" >/dev/null && continue ;;
        *) { command -v "$cmd" || [ -x "/usr/sbin/$cmd" ]; } >/dev/null 2>&1 && continue ;;
        esac
        echo "${pair#*:}"
    done
}

# The apt suite that QEMU packages must come from: bookworm-backports when any installed QEMU package is a
# backport, otherwise empty (apt's default, bookworm).
edge_qemu_suite() {
    if dpkg-query -W -f='${db:Status-Abbrev} ${Version}\n' 'qemu-*' 2>/dev/null | grep -q '^ii .*~bpo12'; then
        echo bookworm-backports
    fi
}

# Adds bookworm-backports to apt's sources, on the mirror apt already uses for bookworm, unless it is there. The
# sources are read from apt's configuration, not from its downloaded lists (--no-release-info), which a cleaned
# machine does not have.
edge_add_backports() {
    local uri
    if apt-get indextargets --no-release-info --format '$(RELEASE)' 2>/dev/null | grep -qx bookworm-backports; then
        return 0
    fi
    uri=$(apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' 2>/dev/null | awk '$1 == "bookworm" { print $2; exit }')
    if [ -z "$uri" ]; then
        echo "error: QEMU packages from bookworm-backports are installed, and apt has no bookworm source to find its backports beside" >&2
        exit 1
    fi
    echo "adding bookworm-backports ($uri) to apt's sources: the installed QEMU packages come from there" >&2
    cat >/etc/apt/sources.list.d/edge-bookworm-backports.sources <<EOF
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

mapfile -t need_apt < <(edge_deps_missing)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    qemu_pkgs=() other_pkgs=()
    for pkg in "${need_apt[@]}"; do
        case $pkg in
        qemu-*) qemu_pkgs+=("$pkg") ;;
        *) other_pkgs+=("$pkg") ;;
        esac
    done
    qemu_suite=$(edge_qemu_suite)
    if [ -n "$qemu_suite" ] && [ ${#qemu_pkgs[@]} -gt 0 ]; then
        edge_add_backports
    fi
    apt-get update -qq
    # The servers (postgresql, nginx) are installed for the tests and the benchmark to start on their own, on
    # loopback; their packages would otherwise start a system-wide instance. A policy-rc.d that denies every start
    # keeps them down for the length of this install (unless the machine has its own policy, which is left alone).
    edge_policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        edge_policy_added=1
    fi
    edge_apt_rc=0
    {
        if [ ${#other_pkgs[@]} -gt 0 ]; then
            apt-get install -y -qq --no-install-recommends "${other_pkgs[@]}" >/dev/null
        fi &&
            if [ ${#qemu_pkgs[@]} -gt 0 ]; then
                apt-get install -y -qq --no-install-recommends ${qemu_suite:+-t "$qemu_suite"} "${qemu_pkgs[@]}" >/dev/null
            fi
    } || edge_apt_rc=$?
    if [ "$edge_policy_added" = 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    if [ "$edge_apt_rc" != 0 ]; then
        echo "error: apt-get install failed (exit $edge_apt_rc; see apt's messages above)" >&2
        exit "$edge_apt_rc"
    fi
    mapfile -t still_missing < <(edge_deps_missing)
    if [ ${#still_missing[@]} -gt 0 ]; then
        echo "error: still missing after apt-get install: ${still_missing[*]} (see apt's messages above)" >&2
        exit 1
    fi
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
# Node binaries are static musl builds for both node architectures (edge-init's size is checked by the tests).
for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
    if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
        rustup target add "$target"
    fi
done
# The fuzz targets run with cargo-fuzz, which scripts/fuzz.sh installs when it runs, and the dependency policy with
# cargo-deny, which scripts/deny.sh installs when it runs (the demo needs neither).
