#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ with cargo-fuzz: every target, or the ones named, each for --seconds N (60 unless
# told), one per CPU at a time (EDGE_FUZZ_JOBS=N to choose), after seeding their corpora from the vectors (seed.sh).
# Prints one line per target: executions, executions per second, libFuzzer's final coverage (cov: edges, ft:
# features), the corpus size, and whether it crashed. Exits 1 when any target crashed; the crashing input stays in
# fuzz/artifacts/<target>/ and the whole log in fuzz/target/logs/<target>.log.
# The toolchain is nightly when rustup has one, else the default one with RUSTC_BOOTSTRAP=1, which lets a stable
# compiler take cargo-fuzz's -Z flags (its standard library ships the sanitizer runtimes). See fuzz/README.md.
# Usage: scripts/fuzz.sh [--seconds N] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
targets=()
while [ $# -gt 0 ]; do
    case $1 in
    --seconds)
        seconds=${2:?--seconds needs a number}
        shift 2
        ;;
    --seconds=*)
        seconds=${1#--seconds=}
        shift
        ;;
    -h | --help)
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*)
        echo "fuzz.sh: unknown option $1 (usage: scripts/fuzz.sh [--seconds N] [TARGET...])" >&2
        exit 2
        ;;
    *)
        targets+=("$1")
        shift
        ;;
    esac
done
case $seconds in
'' | *[!0-9]*)
    echo "fuzz.sh: --seconds takes a whole number of seconds, not $seconds" >&2
    exit 2
    ;;
esac

# The largest input each target is given (libFuzzer's -max_len): whole blocks, journals and indexes, and for the
# bundle whole bundles of several chunks and payloads, far past the 4096 bytes libFuzzer would start from.
declare -A max_len=([uboot_env]=16385 [grub_state]=4096 [updater_files]=16384 [delta_index]=65536
    [parse_bundle]=1048576 [http_response]=4096 [fleet_headers]=16384 [telemetry_batch]=65536)
all=(uboot_env grub_state updater_files delta_index parse_bundle http_response fleet_headers telemetry_batch)
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${all[@]}")
fi
for t in "${targets[@]}"; do
    if [ -z "${max_len[$t]:-}" ]; then
        echo "fuzz.sh: no fuzz target $t (targets: ${all[*]})" >&2
        exit 2
    fi
done

# cargo-fuzz, built from source like any crate, once (scripts/cargo-install.sh).
if ! cargo fuzz --version >/dev/null 2>&1; then
    bash scripts/cargo-install.sh cargo-fuzz 0.13.2
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
    toolchain="nightly ($(rustc +nightly --version))"
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
    toolchain="$(rustc --version) with RUSTC_BOOTSTRAP=1"
fi
echo "== fuzz: ${targets[*]}, ${seconds} s each, on $toolchain" >&2

fuzz/seed.sh "${targets[@]}"
mkdir -p fuzz/target/logs
start=$SECONDS
# One build of every target: after the first, each is a few seconds.
if ! (cd fuzz && "${fuzz[@]}" build --sanitizer address) >fuzz/target/logs/build.log 2>&1; then
    tail -n 40 fuzz/target/logs/build.log >&2
    echo "fuzz.sh: the fuzz targets do not build (whole log: fuzz/target/logs/build.log)" >&2
    exit 1
fi
echo "fuzz: built in $((SECONDS - start)) s" >&2

# One target per CPU at a time (EDGE_FUZZ_JOBS to choose): libFuzzer runs on one thread and its time limit is
# wall-clock time, so on a machine with several CPUs two targets fuzz as long as one would alone. The lines are
# printed in the order of the targets once all have run.
jobs=${EDGE_FUZZ_JOBS:-$(nproc)}
case $jobs in
'' | *[!0-9]* | 0)
    echo "fuzz.sh: EDGE_FUZZ_JOBS takes a whole number of targets at once, at least 1, not $jobs" >&2
    exit 2
    ;;
esac
fuzz_one() {
    local t=$1 log=fuzz/target/logs/$1.log
    mkdir -p "fuzz/artifacts/$t" "fuzz/corpus/$t"
    # -timeout: an input that takes 10 s is a hang, reported like a crash.
    (cd fuzz && "${fuzz[@]}" run --sanitizer address "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=10 -print_final_stats=1) >"$log" 2>&1
}
declare -A pid_of=()
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    fuzz_one "$t" &
    pid_of[$t]=$!
    running=$((running + 1))
done

crashed=()
for t in "${targets[@]}"; do
    log=fuzz/target/logs/$t.log
    status=0
    wait "${pid_of[$t]}" || status=$?
    runs=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$log")
    rate=$(awk '/^stat::average_exec_per_sec:/ {print $2}' "$log")
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [ "$status" -eq 0 ]; then
        verdict="no crash"
    else
        crashed+=("$t")
        input=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -n 1 | sed 's/Test unit written to //' || true)
        verdict="CRASHED (exit $status): ${input:+input $input, }log $log"
    fi
    printf 'fuzz %-14s %12s execs %8s exec/s  %-22s corpus %6s  %s\n' \
        "$t" "${runs:-?}" "${rate:-?}" "${cov:-cov: ? ft: ?}" "$corpus" "$verdict"
done
if [ ${#crashed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashed: ${crashed[*]}; replay one with: cd fuzz && ${fuzz[*]} run TARGET artifacts/TARGET/crash-..." >&2
    exit 1
fi
