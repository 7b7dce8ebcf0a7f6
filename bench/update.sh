#!/usr/bin/env bash
# Measures `edge-update install` on the bundle benchmark's v1/v2 ext4 pair against baselines measured in the same run
# on the same machine, and prints each figure as a ratio against its baseline:
#   full install time of v1 from a local bundle into a file slot vs `zstd -dc v1.zst > slot && sync`, the same over
#   loopback HTTP vs `curl | zstd -dc > slot && sync`, delta install v1 -> v2 over loopback HTTP in bytes fetched vs
#   the 4 KiB block floor and in time vs the full install, and the peak resident memory of each install.
# Times are the median of BENCH_RUNS runs, the sides interleaved with the order changing every round.
# Usage: bench/update.sh      (as root on Debian 12 to install what is missing; see bench/README.md for the knobs)
set -euo pipefail

# shellcheck source=bench/knobs.sh
source "$(dirname "${BASH_SOURCE[0]}")/knobs.sh"
u=$out/update

# shellcheck source=../scripts/deps.sh
source "$root/scripts/deps.sh"
export PATH=$PATH:/usr/sbin:/sbin

echo "building edge-update, edge-image, edge-bootctl and the serve example" >&2
(cd "$root" && cargo build --release -p edge-update -p edge-image -p edge-bootctl --bins &&
    cargo build --release -p testkit --example serve)
# Private copies: a concurrent cargo build in the same target directory must not swap a binary mid-run.
mkdir -p "$u/bin"
for b in edge-update edge-image edge-bootctl examples/serve; do
    cp "${CARGO_TARGET_DIR:-$root/target}/release/$b" "$u/bin/${b##*/}.tmp"
    mv "$u/bin/${b##*/}.tmp" "$u/bin/${b##*/}"
done

"$bench/make-pair.sh" "$out/pair" >&2

reproduce="cd ${root@Q} && BENCH_RUNS=$runs BENCH_LEVEL=$level"
[ -n "$extra_build_args" ] && reproduce+=" BENCH_EXTRA_BUILD_ARGS=${extra_build_args@Q}"
reproduce+=" bench/update.sh"

export BENCH_BIN=$u/bin BENCH_OUT=$out BENCH_ROOT=$root BENCH_RUNS_N=$runs BENCH_LEVEL_N=$level \
    BENCH_EXTRA=$extra_build_args BENCH_REPRODUCE=$reproduce
exec python3 - <<'PY'
import json, os, platform, shlex, shutil, statistics, subprocess, sys, time

bindir = os.environ["BENCH_BIN"]
out = os.environ["BENCH_OUT"]
root = os.environ["BENCH_ROOT"]
runs = int(os.environ["BENCH_RUNS_N"])
level = int(os.environ["BENCH_LEVEL_N"])
extra = shlex.split(os.environ["BENCH_EXTRA"])
reproduce = os.environ["BENCH_REPRODUCE"]
eu, ei, ebc, serve_bin = (os.path.join(bindir, b) for b in ("edge-update", "edge-image", "edge-bootctl", "serve"))
u = os.path.join(out, "update")
v1, v2 = os.path.join(out, "pair", "v1.img"), os.path.join(out, "pair", "v2.img")
keys, ring, served = os.path.join(u, "keys"), os.path.join(u, "keyring"), os.path.join(u, "serve")
key = os.path.join(keys, "bench.key")
v1_bundle, v2_bundle, v1_zst = (os.path.join(served, f) for f in ("v1.bundle", "v2.bundle", "v1.zst"))
rss_file = os.path.join(u, "rss")
MIB = 1 << 20
# The slot files: the larger image plus headroom, as a slot partition has.
slot_bytes = max(os.path.getsize(v1), os.path.getsize(v2)) + 32 * MIB
BOOTED_INDEX = "slot-A.index"

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(root, "bench"))
import floor as floor_py  # noqa: E402


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(argv, check=True, **kw):
    return subprocess.run(argv, check=check, **kw)


def rmtree(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


# Fresh keys and bundles every run, built as bench/run.sh builds its bundle; the served directory holds only what
# the HTTP runs fetch, because the server keeps every file of it in memory.
for p in (keys, ring, served):
    rmtree(p)
    os.makedirs(p)
run([ei, "keygen", "-o", os.path.join(keys, "bench")], stdout=subprocess.DEVNULL)
shutil.copy(os.path.join(keys, "bench.pub"), ring)
for v, img, bundle in (("1", v1, v1_bundle), ("2", v2, v2_bundle)):
    log(f"building v{v}.bundle")
    run([ei, "build", "--payload", f"rootfs={img}", "--version", v, "--security-version", "1",
         "--compatible", "bench", "--key", key, "--level", str(level), *extra, "-o", bundle], stdout=subprocess.DEVNULL)
log(f"compressing v1.zst (zstd -T0 -{level}, the level of the bundles' chunks)")
run(["zstd", "-T0", f"-{level}", "-q", "-f", v1, "-o", v1_zst])


# Two nodes, each booted from slot A with A good, and B the target: `full` holds unrelated bytes in A, so a full
# install could reuse nothing even without --full; `delta` holds v1 in A.
def fill(path, size, source=None):
    """Writes `size` bytes over `path` in place, as onto a device: random bytes for "random", else the bytes of the
    file `source` (if any) followed by zeros."""
    src = open(source, "rb") if source not in (None, "random") else None
    with open(path, "r+b" if os.path.exists(path) else "wb") as f:
        done = 0
        while done < size:
            n = min(MIB, size - done)
            f.write(os.urandom(n) if source == "random" else (src.read(n) if src else b"").ljust(n, b"\0"))
            done += n
        f.truncate(size)
    if src:
        src.close()


def make_node(name, slot_a):
    d = os.path.join(u, name)
    rmtree(d)
    os.makedirs(os.path.join(d, "esp"))
    fill(os.path.join(d, "a.img"), slot_bytes, slot_a)
    fill(os.path.join(d, "b.img"), slot_bytes)
    with open(os.path.join(d, "cmdline"), "w") as f:
        f.write("quiet edge.slot=A\n")
    bootctl = f'backend = "grub"\ngrub_state_dir = "{d}/esp"\ncmdline = "{d}/cmdline"\nroot = "{d}"\n'
    with open(os.path.join(d, "bootctl.toml"), "w") as f:
        f.write(bootctl)
    with open(os.path.join(d, "update.toml"), "w") as f:
        f.write(f'compatible = "bench"\nkeyring = "{ring}"\ndata_dir = "{d}/data"\nreboot = "none"\n'
                f'[slots]\na = "{d}/a.img"\nb = "{d}/b.img"\n[bootctl]\n{bootctl}')
    return d


log("making the nodes")
full_node = make_node("full", "random")
delta_node = make_node("delta", v1)


def reset(node):
    """Untimed, before every run: no journal or event log (the booted slot's index cache stays, as on a node that
    installed before), the boot state provisioned afresh with A good, and B zeroed in place."""
    data = os.path.join(node, "data")
    if os.path.isdir(data):
        for name in os.listdir(data):
            if name != BOOTED_INDEX:
                rmtree(os.path.join(data, name))
    run([ebc, "--config", os.path.join(node, "bootctl.toml"), "provision", "--good", "A", "--force"],
        stdout=subprocess.DEVNULL)
    fill(os.path.join(node, "b.img"), slot_bytes)


def same_prefix(path, image):
    return run(["cmp", "-s", "-n", str(os.path.getsize(image)), path, image], check=False).returncode == 0


class Side:
    """One command of a race: the node it resets before each run, what it runs, and the image it must leave in B."""

    def __init__(self, name, node, argv, image, ours):
        self.name, self.node, self.argv, self.image, self.ours = name, node, argv, image, ours
        self.samples = []


def install_side(name, node, source, image, full):
    argv = [eu, "--config", os.path.join(node, "update.toml"), "install", *(["--full"] if full else []), source,
            "--json"]
    return Side(name, node, argv, image, True)


def baseline_side(name, node, script, *args):
    return Side(name, node, ["bash", "-c", f"set -o pipefail; {script}", "bash", *args], v1, False)


server = None


def served_bytes():
    """Response body bytes the server has sent so far."""
    server.stdin.write("\n")
    server.stdin.flush()
    return json.loads(server.stdout.readline())["bytes_sent"]


def timed(side):
    """One run after a reset and a sync (both untimed), so no run pays for another's writeback. GNU time around every
    side measures the peak resident memory (a child forked from this python process would inherit its high-water
    mark across exec) and costs both sides the same."""
    reset(side.node)
    os.sync()
    before = served_bytes() if server else 0
    t0 = time.perf_counter()
    r = run(["/usr/bin/time", "-f", "%M", "-o", rss_file, *side.argv], check=False,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{side.name}: exit {r.returncode}: {shlex.join(side.argv)}\n{r.stderr}")
    with open(rss_file) as f:
        sample = {"s": seconds, "rss_bytes": int(f.read().split()[-1]) * 1024}
    if server:
        sample["served_bytes"] = served_bytes() - before
    if side.ours:
        report = json.loads(r.stdout.strip().splitlines()[-1])
        if report.get("result") != "flipped" or report.get("target") != "B":
            sys.exit(f"{side.name}: unexpected result {report}")
        sample.update({k: report[k] for k in ("fetched_bytes", "reused_bytes", "image_bytes")})
    side.samples.append(sample)
    return sample


def race(what, sides):
    """One untimed warm-up of each side (which also checks what it wrote), then `runs` rounds with the order rotated
    every round, so that neither side always runs first."""
    log(f"{what}: warm-up, then {runs} interleaved runs")
    for s in sides:
        timed(s)
        if not same_prefix(os.path.join(s.node, "b.img"), s.image):
            sys.exit(f"{s.name}: slot B does not hold {s.image}")
        s.samples.clear()
    for i in range(runs):
        k = i % len(sides)
        for s in sides[k:] + sides[:k]:
            timed(s)


zstd_local = 'zstd -dc "$1" 1<>"$2" && sync'
full_b = os.path.join(full_node, "b.img")

# 1. Full install from a local bundle. The baseline writes the same slot file in place: `1<>` opens it without
# truncating, as `>` onto a device does.
local_ours = install_side("full install, local", full_node, v1_bundle, v1, True)
local_base = baseline_side("zstd -dc > slot && sync", full_node, zstd_local, v1_zst, full_b)
race("full install, local", [local_ours, local_base])

# 2 and 3. Over loopback HTTP, from the test server serving the bundles from memory; the delta install runs in the
# same race as the full install it is compared with.
server = subprocess.Popen([serve_bin, served], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
try:
    base_url = server.stdout.readline().strip()
    if not base_url.startswith("http://127.0.0.1:"):
        sys.exit(f"serve printed {base_url!r}, not a loopback URL")
    http_ours = install_side("full install, HTTP", full_node, base_url + "v1.bundle", v1, True)
    if shutil.which("curl"):
        http_base_label = "curl | zstd -dc > slot && sync"
        http_base = baseline_side(http_base_label, full_node, 'curl -sS --fail "$1" | zstd -dc 1<>"$2" && sync',
                                  base_url + "v1.zst", full_b)
    else:
        http_base_label = "zstd -dc > slot && sync (no curl)"
        http_base = baseline_side(http_base_label, full_node, zstd_local, v1_zst, full_b)
    delta_ours = install_side("delta install, HTTP", delta_node, base_url + "v2.bundle", v2, False)
    race("full and delta install, HTTP", [http_ours, http_base, delta_ours])
finally:
    server.kill()
    server.wait()
    server = None
index_cached = os.path.exists(os.path.join(delta_node, "data", BOOTED_INDEX))

log("floor")
blocks = floor_py.floor(v1, v2, level)
floor = blocks.pop("floor_bytes")


# The report.
def fig(name, unit, ours, base, target=None, limit=None):
    """`target` bounds the ratio ours / baseline; `limit` bounds ours itself."""
    ratio = ours / base if base else float("inf")
    met = None if target is None and limit is None else (ratio <= target if target is not None else ours <= limit)
    return {"metric": name, "unit": unit, "ours": ours, "baseline": base, "ratio": ratio, "target": target,
            "limit": limit, "met": met}


def med(side, key):
    return statistics.median(s[key] for s in side.samples)


def same(side, key):
    values = {s[key] for s in side.samples}
    if len(values) != 1:
        log(f"warning: {side.name}: {key} differs between runs: {sorted(values)}")
    return statistics.median(s[key] for s in side.samples)


RSS_LIMIT = 16 * MIB
delta_fetched = same(delta_ours, "fetched_bytes")
rows = [
    fig(f"full install time, local bundle, vs zstd -dc > slot && sync, median of {runs}", "s",
        med(local_ours, "s"), med(local_base, "s"), 1.15),
    fig(f"full install time, loopback HTTP, vs {http_base_label}, median of {runs}", "s",
        med(http_ours, "s"), med(http_base, "s"), 1.15),
    fig("delta install bytes v1->v2, loopback HTTP, vs floor (new 4K blocks, zstd)", "bytes",
        delta_fetched, floor, 2.0),
    fig(f"delta install time v1->v2 vs full install of v1, loopback HTTP, median of {runs}", "s",
        med(delta_ours, "s"), med(http_ours, "s")),
    fig("delta install bytes fetched vs full install bytes fetched", "bytes",
        delta_fetched, same(http_ours, "fetched_bytes")),
    fig("delta install bytes reused from slot A vs image bytes", "bytes",
        same(delta_ours, "reused_bytes"), same(delta_ours, "image_bytes")),
    fig("delta install bytes served (server count) vs fetched_bytes", "bytes",
        same(delta_ours, "served_bytes"), delta_fetched),
    fig("peak RSS of full install, local, vs zstd -dc", "MiB",
        med(local_ours, "rss_bytes"), med(local_base, "rss_bytes"), limit=RSS_LIMIT),
    fig(f"peak RSS of full install, HTTP, vs {http_base_label.split(' >')[0]}", "MiB",
        med(http_ours, "rss_bytes"), med(http_base, "rss_bytes"), limit=RSS_LIMIT),
    fig("peak RSS of delta install, HTTP, vs full install, HTTP", "MiB",
        med(delta_ours, "rss_bytes"), med(http_ours, "rss_bytes"), limit=RSS_LIMIT),
]


def show(v, unit):
    if unit == "s":
        return f"{v:.3f} s"
    if unit == "MiB":
        return f"{v / MIB:.1f} MiB"
    return f"{v} B"


def show_target(r):
    if r["target"] is not None:
        return f"<= {r['target']:.2f}"
    if r["limit"] is not None:
        return f"ours <= {r['limit'] / MIB:.0f} MiB"
    return "-"


table = [("metric", "ours", "baseline", "ratio", "target", "met?")]
for r in rows:
    table.append((r["metric"], show(r["ours"], r["unit"]), show(r["baseline"], r["unit"]), f"{r['ratio']:.3f}",
                  show_target(r), "-" if r["met"] is None else ("met" if r["met"] else "MISSED")))
widths = [max(len(row[c]) for row in table) for c in range(6)]
lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
lines.append(f"reproduce: {reproduce}")
text = "\n".join(lines) + "\n"
sys.stdout.write(text)
with open(os.path.join(out, "update.txt"), "w") as f:
    f.write(text)


def git(*args):
    try:
        r = subprocess.run(["git", "-C", root, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except OSError:
        return None
    return r.stdout.strip() if r.returncode == 0 else None


results = {
    "reproduce": reproduce,
    "settings": {"runs": runs, "level": level, "extra_build_args": extra, "slot_bytes": slot_bytes, "booted_index_cached": index_cached},
    "machine": {"nproc": os.cpu_count(), "kernel": platform.release(),
                "git": git("describe", "--always", "--dirty"),
                "edge_update_version": run([eu, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()},
    "metrics": rows,
    "samples": {s.name: s.samples for s in (local_ours, local_base, http_ours, http_base, delta_ours)},
    "blocks": blocks,
    "floor_bytes": floor,
}
with open(os.path.join(out, "update.json"), "w") as f:
    json.dump(results, f, indent=2)
    f.write("\n")
log(f"wrote {os.path.join(out, 'update.txt')} and {os.path.join(out, 'update.json')}")
PY
