#!/usr/bin/env bash
# Measures the size and memory of `edge-init` against Debian's tini, tini-static and catatonit on the same machine:
# the bytes of each binary on disk, and its peak resident memory (VmHWM) as PID 1 of a new PID namespace while it
# runs the same workload: a shell that starts BENCH_ORPHANS short children through double forks, so that each is
# re-parented to PID 1 and reaped by it, waits until PID 1 has reaped them all, then reads VmHWM (and RssAnon, the
# part that is not the binary's own pages) from /proc/1/status. Each figure is the median of BENCH_RUNS runs, the
# inits interleaved with the order rotating every round. Prints the figures, the ratios edge-init / each peer, and edge-init against its targets (1 MiB on disk,
# 2 MiB peak RSS).
# Usage: sudo bench/init.sh      (as root on Debian 12; see bench/README.md, "edge-init size and memory")
set -euo pipefail

runs=${BENCH_RUNS:-5}
orphans=${BENCH_ORPHANS:-200}
case $runs in '' | *[!0-9]* | 0) echo "BENCH_RUNS must be a positive integer, not ${runs@Q}" >&2; exit 2 ;; esac
case $orphans in '' | *[!0-9]*) echo "BENCH_ORPHANS must be a number, not ${orphans@Q}" >&2; exit 2 ;; esac
if [ "$(id -u)" != 0 ]; then
    echo "bench/init.sh needs root: unshare --pid --mount-proc, and apt-get for what is missing" >&2
    exit 2
fi

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$bench/.." && pwd)
out=$bench/out/init
target=x86_64-unknown-linux-musl
ours_bytes_limit=$((1 << 20))
ours_hwm_limit_kib=2048

# tini, tini-static and catatonit, the musl target and unshare's util-linux come with the project's deps.
# shellcheck source-path=SCRIPTDIR source=../scripts/deps.sh
source "$root/scripts/deps.sh"

echo "building edge-init (static musl, release)" >&2
(cd "$root" && cargo build --release --locked --target "$target" -p edge-init)
# A private copy: a concurrent cargo build in the same target directory must not swap the binary mid-run.
mkdir -p "$out/bin"
cp "${CARGO_TARGET_DIR:-$root/target}/$target/release/edge-init" "$out/bin/edge-init.tmp"
mv "$out/bin/edge-init.tmp" "$out/bin/edge-init"

# The workload, the same file under every init. Its result goes to a file, not stdout, so that an init which sends
# its children's output elsewhere (the kernel log, a log file) can run it too.
workload=$out/workload.sh
cat >"$workload" <<'SH'
#!/bin/sh
# Usage: workload.sh RESULT_FILE N. Starts N short children through double forks, so that each is orphaned and
# re-parented to PID 1; waits until PID 1 has reaped every one; writes PID 1's VmHWM and RssAnon (KiB) to
# RESULT_FILE, in that order on one line.
set -eu
result=$1 n=$2
[ "$$" != 1 ] || { echo "workload: running as PID 1, not under an init" >&2; exit 1; }
i=0
while [ "$i" -lt "$n" ]; do
    # The subshell exits at once, orphaning /bin/true, which PID 1 must reap.
    ( /bin/true & )
    i=$((i + 1))
done
# Only PID 1 and this shell are left once every orphan is reaped (zombies stay in /proc until then); give up
# after about 10 s.
tries=0
while :; do
    set -- /proc/[0-9]*
    [ "$#" -gt 2 ] || break
    tries=$((tries + 1))
    [ "$tries" -le 1000 ] || { echo "workload: PID 1 left $(($# - 2)) orphans unreaped" >&2; exit 1; }
    sleep 0.01
done
hwm='' anon=''
while read -r key value _; do
    case $key in VmHWM:) hwm=$value ;; RssAnon:) anon=$value ;; esac
done </proc/1/status
echo "$hwm $anon" >"$result"
SH

# Starts an init as PID 1 of a new PID namespace, with /proc remounted so that /proc/1 is that init.
as_pid1() { unshare --pid --fork --mount-proc "$@"; }

# How each init runs the workload ("$@", one command) as its only child. A mode whose workload is set up another
# way, such as edge-init's services mode with the workload as a service of a config file, gets its own function.
run_edge_init() { as_pid1 "$out/bin/edge-init" -- "$@"; }
run_tini() { as_pid1 /usr/bin/tini -- "$@"; }
run_tini_static() { as_pid1 /usr/bin/tini-static -- "$@"; }
run_catatonit() { as_pid1 /usr/bin/catatonit -- "$@"; }

# edge-init's own mode: PID 1 with a services file whose first service is the workload; a second one, started
# once the workload has exited 0, asks for a poweroff over the control socket. Its own namespaces too (mount, UTS,
# network): as PID 1 it sets the hostname, brings up lo and mounts. Ended by the real reboot(2), which in a PID
# namespace kills its PID 1 (SIGINT for a poweroff), so its status is not the workload's: the result file is.
run_edge_init_services() {
    # Its files live under /var/tmp: as PID 1 it mounts a fresh tmpfs on /tmp (and /run) in its mount namespace,
    # which would hide a checkout under /tmp.
    local node
    node=$(mktemp -d /var/tmp/edge-init-bench.XXXXXX)
    cp "$out/bin/edge-init" "$2" "$node/"
    cat >"$node/services.toml" <<TOML
[data]
device = "/nonexistent"
mount = "$node/data"
wait_secs = 0
format = []
[[service]]
name = "workload"
argv = ["$1", "$node/$(basename "$2")", "$node/result", "$4"]
restart = "never"
ready = "exited"
[[service]]
name = "off"
argv = ["$node/edge-init", "ctl", "--socket", "$node/run/control.sock", "poweroff"]
after = ["workload"]
restart = "never"
TOML
    unshare --pid --fork --mount --uts --net --mount-proc "$node/edge-init" --config "$node/services.toml" \
        --run "$node/run" --log stderr --cmdline "" 2>/dev/null || true
    if [ -e "$node/result" ]; then cp "$node/result" "$3"; fi
    rm -rf "$node"
}

# The rows: ours or peer, the name shown, the file whose bytes count, and the function that runs it.
sides=() names=() files=() funcs=()
row() { sides+=("$1") names+=("$2") files+=("$3") funcs+=("$4"); }
row ours "edge-init -- CMD" "$out/bin/edge-init" run_edge_init
row ours "edge-init (PID 1, services)" "$out/bin/edge-init" run_edge_init_services
row peer "tini" /usr/bin/tini run_tini
row peer "tini-static" /usr/bin/tini-static run_tini_static
row peer "catatonit" /usr/bin/catatonit run_catatonit
n_rows=${#names[@]}

# One run: the workload under row $1's init; prints the VmHWM and RssAnon it read, in KiB.
measure() {
    local i=$1 result=$out/result
    rm -f "$result"
    if ! "${funcs[$i]}" /bin/sh "$workload" "$result" "$orphans" >&2; then
        echo "error: ${names[$i]}: the workload failed" >&2
        exit 1
    fi
    local hwm anon
    read -r hwm anon <"$result" || true
    case "$hwm:$anon" in *[!0-9:]* | :* | *:)
        echo "error: ${names[$i]}: the workload left no VmHWM and RssAnon" >&2
        exit 1
        ;;
    esac
    echo "$hwm $anon"
}

median() {
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

declare -a hwm_samples anon_samples
for ((i = 0; i < n_rows; i++)); do hwm_samples[i]="" anon_samples[i]=""; done
echo "VmHWM as PID 1 of a new PID namespace, $orphans orphans reaped: $runs rounds, the order rotating" >&2
for ((r = 0; r < runs; r++)); do
    for ((k = 0; k < n_rows; k++)); do
        i=$(((k + r) % n_rows))
        # A failed run ends the script here (errexit), which a process substitution would not.
        got=$(measure "$i")
        read -r hwm_kib anon_kib <<<"$got"
        hwm_samples[i]+=" $hwm_kib" anon_samples[i]+=" $anon_kib"
        echo "  round $((r + 1)): ${names[$i]}: VmHWM $hwm_kib KiB, RssAnon $anon_kib KiB" >&2
    done
done

bytes=() hwm=() anon=() linkage=()
for ((i = 0; i < n_rows; i++)); do
    bytes[i]=$(stat -L -c %s "${files[$i]}")
    # shellcheck disable=SC2086 # the samples are words on purpose
    hwm[i]=$(median ${hwm_samples[i]})
    # shellcheck disable=SC2086
    anon[i]=$(median ${anon_samples[i]})
    case $(file -b -L "${files[$i]}") in
        *"dynamically linked"*) linkage[i]=dynamic ;;
        *) linkage[i]=static ;;
    esac
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
met() { if awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; then echo met; else echo MISSED; fi; }

report=$bench/out/init.txt
{
    printf '%-20s | %-7s | %13s | %s\n' "init" "linkage" "bytes on disk" \
        "VmHWM as PID 1 (RssAnon at the end), median of $runs"
    for ((i = 0; i < n_rows; i++)); do
        printf '%-20s | %-7s | %13s | %s KiB (%s KiB)\n' "${names[$i]}" "${linkage[$i]}" "${bytes[$i]}" "${hwm[$i]}" \
            "${anon[$i]}"
    done
    echo
    printf '%-36s | %5s | %5s\n' "ratio" "bytes" "VmHWM"
    for ((o = 0; o < n_rows; o++)); do
        [ "${sides[$o]}" = ours ] || continue
        for ((p = 0; p < n_rows; p++)); do
            [ "${sides[$p]}" = peer ] || continue
            printf '%-36s | %5s | %5s\n' "${names[$o]} / ${names[$p]}" \
                "$(ratio "${bytes[$o]}" "${bytes[$p]}")" "$(ratio "${hwm[$o]}" "${hwm[$p]}")"
        done
    done
    echo
    printf '%-36s | %13s | %13s | %s\n' "target" "ours" "limit" "met?"
    for ((o = 0; o < n_rows; o++)); do
        [ "${sides[$o]}" = ours ] || continue
        printf '%-36s | %13s | %13s | %s\n' "${names[$o]}: bytes on disk" "${bytes[$o]} B" "$ours_bytes_limit B" \
            "$(met "${bytes[$o]}" "$ours_bytes_limit")"
        printf '%-36s | %13s | %13s | %s\n' "${names[$o]}: VmHWM as PID 1" "${hwm[$o]} KiB" \
            "$ours_hwm_limit_kib KiB" "$(met "${hwm[$o]}" "$ours_hwm_limit_kib")"
    done
    echo
    echo "reproduce: cd ${root@Q} && BENCH_RUNS=$runs BENCH_ORPHANS=$orphans bench/init.sh"
} | tee "$report"
echo "wrote $report" >&2
