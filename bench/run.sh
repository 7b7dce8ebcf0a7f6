#!/usr/bin/env bash
# Measures edge-image against plain baselines measured in the same run on the same machine, and prints each figure as
# a ratio against its baseline:
#   full install bytes vs `zstd -T2 -L` of the whole image, build time vs that zstd, verified extract time vs
#   `zstd -dc`, and delta bytes v1 -> v2 vs a block-level floor and vs casync's default chunking.
# Times are the median of BENCH_RUNS runs, ours and the baseline's interleaved so that machine noise hits both.
# Usage: bench/run.sh        (as root on Debian 12; installs what it needs; see bench/README.md for the knobs)
set -euo pipefail

# shellcheck source=bench/knobs.sh
source "$(dirname "${BASH_SOURCE[0]}")/knobs.sh"

# Tools: installed only when missing, so a second run touches no package lists.
missing=()
command -v zstd >/dev/null || missing+=(zstd)
command -v casync >/dev/null || missing+=(casync)
command -v mke2fs >/dev/null || [ -x /usr/sbin/mke2fs ] || [ -x /sbin/mke2fs ] || missing+=(e2fsprogs)
command -v python3 >/dev/null || missing+=(python3)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing ${missing[*]}; run as root or install them first" >&2
        exit 1
    fi
    echo "installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin:/sbin
[ -d "${HOME:-/root}/.cargo/bin" ] && export PATH=$PATH:${HOME:-/root}/.cargo/bin
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install a Rust toolchain (https://rustup.rs) first" >&2
    exit 1
fi

echo "building edge-image" >&2
(cd "$root" && cargo build --release -p edge-image)
# A private copy: a concurrent cargo build in the same target directory must not swap the binary mid-run.
mkdir -p "$out"
cp "${CARGO_TARGET_DIR:-$root/target}/release/edge-image" "$out/edge-image.tmp"
mv "$out/edge-image.tmp" "$out/edge-image"
edge_image=$out/edge-image

"$bench/make-pair.sh" "$out/pair" >&2

# Fresh keys every run; the keyring directory holds only the public half.
rm -rf "$out/keys" "$out/keyring" "$out/work"
mkdir -p "$out/keys" "$out/keyring" "$out/work"
"$edge_image" keygen -o "$out/keys/bench" >/dev/null
cp "$out/keys/bench.pub" "$out/keyring/"

reproduce="cd ${root@Q} && BENCH_RUNS=$runs BENCH_LEVEL=$level"
[ -n "$extra_build_args" ] && reproduce+=" BENCH_EXTRA_BUILD_ARGS=${extra_build_args@Q}"
reproduce+=" bench/run.sh"

export BENCH_EDGE_IMAGE=$edge_image BENCH_OUT=$out BENCH_ROOT=$root BENCH_RUNS_N=$runs BENCH_LEVEL_N=$level \
    BENCH_EXTRA=$extra_build_args BENCH_REPRODUCE=$reproduce
exec python3 - <<'PY'
import glob, json, os, platform, shlex, statistics, subprocess, sys, time

ei = os.environ["BENCH_EDGE_IMAGE"]
out = os.environ["BENCH_OUT"]
root = os.environ["BENCH_ROOT"]
runs = int(os.environ["BENCH_RUNS_N"])
level = int(os.environ["BENCH_LEVEL_N"])
extra = shlex.split(os.environ["BENCH_EXTRA"])
reproduce = os.environ["BENCH_REPRODUCE"]
pair = os.path.join(out, "pair")
work = os.path.join(out, "work")
v1, v2 = os.path.join(pair, "v1.img"), os.path.join(pair, "v2.img")
key = os.path.join(out, "keys", "bench.key")
ring = os.path.join(out, "keyring")
bundle = os.path.join(work, "v2.bundle")
v2zst = os.path.join(work, "v2.zst")
out_img, out2_img = os.path.join(work, "out.img"), os.path.join(work, "out2.img")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(argv, check=True, **kw):
    return subprocess.run(argv, check=check, **kw)


def rm(*paths):
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def timed(argv, clean):
    """One run of argv in seconds, after removing its outputs and flushing earlier runs' dirty pages (untimed)."""
    rm(*clean)
    os.sync()
    t0 = time.perf_counter()
    run(argv, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def race(what, ours, ours_out, base, base_out):
    """Interleaved runs after one untimed warm-up of each; the order alternates so neither always runs first.
    Each run removes its own output first, so both always write a fresh file and the last outputs stay."""
    log(f"{what}: warm-up, then {runs} interleaved runs")
    timed(ours, [ours_out])
    timed(base, [base_out])
    t_ours, t_base = [], []
    for i in range(runs):
        sides = [(ours, ours_out, t_ours), (base, base_out, t_base)]
        for argv, clean, acc in sides if i % 2 == 0 else reversed(sides):
            acc.append(timed(argv, [clean]))
    return t_ours, t_base


def edge_json(*args):
    return json.loads(run([ei, *args, "--json"], stdout=subprocess.PIPE).stdout)


# 2. Build time (first, because its last run leaves the bundle and the .zst the other figures read).
build = [ei, "build", "--payload", f"rootfs={v2}", "--version", "2", "--security-version", "1",
         "--compatible", "bench", "--key", key, "--level", str(level), *extra, "-o", bundle]
zstd_c = ["zstd", "-T2", f"-{level}", "-q", "-f", v2, "-o", v2zst]
build_ours, build_base = race("build", build, bundle, zstd_c, v2zst)

# 1. Full install bytes.
inspect = edge_json("inspect", bundle)
full_install = inspect["full_install_bytes"]
bundle_bytes = os.path.getsize(bundle)
zst_bytes = os.path.getsize(v2zst)

# 3. Verified extract time.
extract = [ei, "extract", bundle, "--payload", "rootfs", "-o", out_img, "--keyring", ring]
zstd_d = ["sh", "-c", 'zstd -dc "$1" > "$2"', "sh", v2zst, out2_img]
extract_ours, extract_base = race("extract", extract, out_img, zstd_d, out2_img)
for p in (out_img, out2_img):
    if run(["cmp", "-s", p, v2], check=False).returncode != 0:
        sys.exit(f"{p} differs from {v2}")
rm(out_img, out2_img)

# Peak memory (resident set) of one run of each, as GNU time reports it: informational, no target. (A child forked
# from this python process would inherit its high-water mark across exec; GNU time is a small parent.)
def peak_rss(argv, clean):
    rm(*clean)
    r = run(["/usr/bin/time", "-f", "%M", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return int(r.stderr.strip().splitlines()[-1]) * 1024

rss = {
    "build": (peak_rss(build, [bundle]), peak_rss(zstd_c, [v2zst])),
    "extract": (peak_rss(extract, [out_img]), peak_rss(zstd_d, [out2_img])),
}
rm(out_img, out2_img)

# 4. Delta bytes: ours.
log("delta-plan")
plan = edge_json("delta-plan", bundle, "--have", v1, "--keyring", ring)
fetch = plan["fetched_bytes"]

# 4a. The floor: v2's blocks found at no aligned offset of v1, in v2 order, as one zstd stream (bench/floor.py,
# shared with update.sh).
log("floor")
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(root, "bench"))
import floor as floor_py  # noqa: E402

blocks = floor_py.floor(v1, v2, level)
floor = blocks.pop("floor_bytes")
n_blocks, n_same_offset_diff, n_missing = blocks["n_blocks"], blocks["same_offset_differs"], blocks["missing_from_v1"]

# 4b. casync with its defaults: what a client holding v1's store fetches for v2, plus v2's index.
log("casync")
cas = os.path.join(work, "casync")
run(["rm", "-rf", cas])
os.makedirs(cas)
for v, img in (("1", v1), ("2", v2)):
    run(["casync", "make", f"--store={cas}/S{v}", f"{cas}/v{v}.caibx", img], stdout=subprocess.DEVNULL)
have = {os.path.basename(p) for p in glob.glob(f"{cas}/S1/*/*.cacnk")}
new_chunks = [p for p in glob.glob(f"{cas}/S2/*/*.cacnk") if os.path.basename(p) not in have]
caibx = os.path.getsize(f"{cas}/v2.caibx")
casync_bytes = sum(os.path.getsize(p) for p in new_chunks) + caibx


# The report.
def fig(name, unit, ours, base, target):
    ratio = ours / base if base else float("inf")
    return {"metric": name, "unit": unit, "ours": ours, "baseline": base, "ratio": ratio, "target": target,
            "met": None if target is None else ratio <= target}

med = statistics.median
rows = [
    fig(f"full install bytes vs zstd -T2 -{level}", "bytes", full_install, zst_bytes, 1.10),
    fig(f"bundle file bytes vs zstd -T2 -{level}", "bytes", bundle_bytes, zst_bytes, None),
    fig(f"build time vs zstd -T2 -{level}, median of {runs}", "s", med(build_ours), med(build_base), 1.3),
    fig(f"verified extract time vs zstd -dc, median of {runs}", "s", med(extract_ours), med(extract_base), 1.0),
    fig("delta bytes v1->v2 vs floor (new 4K blocks, zstd)", "bytes", fetch, floor, 2.0),
    fig("delta bytes v1->v2 vs casync (new chunks + caibx)", "bytes", fetch, casync_bytes, 0.333),
    fig("v2 blocks differing from v1 at the same offset", "blocks", n_same_offset_diff, n_blocks, None),
    fig("v2 blocks missing from v1 entirely", "blocks", n_missing, n_blocks, None),
    fig("delta bytes vs full install bytes", "bytes", fetch, full_install, None),
    fig(f"peak memory of build vs zstd -T2 -{level}", "bytes", *rss["build"], None),
    fig("peak memory of extract vs zstd -dc", "bytes", *rss["extract"], None),
]


def show(v, unit):
    if unit == "s":
        return f"{v:.3f} s"
    return f"{v}" if unit == "blocks" else f"{v} B"

table = [("metric", "ours", "baseline", "ratio", "target", "met?")]
for r in rows:
    table.append((r["metric"], show(r["ours"], r["unit"]), show(r["baseline"], r["unit"]), f"{r['ratio']:.3f}",
                  "-" if r["target"] is None else f"<= {r['target']:.{3 if r['target'] < 1 else 2}f}",
                  "-" if r["met"] is None else ("yes" if r["met"] else "NO")))
widths = [max(len(row[c]) for row in table) for c in range(6)]
for row in table:
    print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
print(f"reproduce: {reproduce}")

def git(*args):
    try:
        r = subprocess.run(["git", "-C", root, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except OSError:
        return None
    return r.stdout.strip() if r.returncode == 0 else None

results = {
    "reproduce": reproduce,
    "settings": {"runs": runs, "level": level, "extra_build_args": extra},
    "machine": {"nproc": os.cpu_count(), "kernel": platform.release(),
                "git": git("describe", "--always", "--dirty"),
                "edge_image_version": run([ei, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()},
    "metrics": rows,
    "samples_s": {"build": {"ours": build_ours, "baseline": build_base},
                  "extract": {"ours": extract_ours, "baseline": extract_base}},
    "blocks": blocks,
    "delta_plan": {k: v for k, v in plan.items() if k != "ranges"},
    "casync": {"new_chunks": len(new_chunks), "new_chunk_bytes": casync_bytes - caibx, "caibx_bytes": caibx},
}
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
    f.write("\n")
log(f"wrote {os.path.join(out, 'results.json')}")
PY
