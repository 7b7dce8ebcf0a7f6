# shellcheck shell=bash
# Sourced by bench/run.sh and bench/update.sh: the knobs they share (bench/README.md, "Knobs") and where things are.
# shellcheck disable=SC2034  # each variable is used by one of the scripts that source this
runs=${BENCH_RUNS:-5}
level=${BENCH_LEVEL:-3}
extra_build_args=${BENCH_EXTRA_BUILD_ARGS:-}
case $runs in '' | *[!0-9]* | 0) echo "BENCH_RUNS must be a positive integer, not ${runs@Q}" >&2; exit 2 ;; esac
case $level in [1-9] | 1[0-9]) ;; *) echo "BENCH_LEVEL must be a zstd level from 1 to 19, not ${level@Q}" >&2; exit 2 ;; esac

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$bench/.." && pwd)
out=$bench/out
