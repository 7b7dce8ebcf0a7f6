#!/usr/bin/env bash
# Measures the fleet endpoint on this machine, with the load generator on the same cores, against baselines measured
# in the same run:
#   polls: simulated nodes (testkit's fleet_load: each node's own ed25519 key, every request signed as edge-agent
#     signs it) poll their desired state every 60 s, spread evenly, with If-None-Match, and 1 % of polls also post a
#     report; for each fleet size of BENCH_FLEET_NODES, the p99 latency (from when each request was due, so a
#     generator that falls behind counts against the endpoint) of BENCH_FLEET_SECONDS measured seconds after
#     BENCH_FLEET_WARMUP; the largest size whose median p99 stays under 50 ms is the figure, with SQLite and with
#     PostgreSQL (started here by initdb as nobody on loopback, PostgreSQL's defaults, stopped at the end);
#   download: a bundle of BENCH_FLEET_BUNDLE_MIB fetched by curl from the endpoint's bundle store and from Debian's
#     nginx serving the same file on loopback (its defaults: sendfile, one worker per core), as a ratio;
#   rollout: BENCH_ROLLOUT_NODES (100,000) nodes in a deployment in progress (canary 100, waves 1%, 10%, 100%, at
#     most 5,000 updating and 10 per site, a brake at 5 %): the time to create it (every node placed), then the p99
#     of the same polls as above while it runs; then the deployment aborted and one without limits created, and the
#     p99 while every node's first poll is a start (a decision in a synced transaction of its own), with the starts
#     made; with SQLite and with PostgreSQL;
#   agent memory: bench/agent.sh (edge-agent's peak RSS over a cycle of contacts and installs).
# Each figure is the median of BENCH_RUNS runs. BENCH_FLEET_PARTS picks the parts (default: "polls rollout download
# agent"; "polls-sqlite", "polls-postgres", "rollout-sqlite" or "rollout-postgres" for one backend's).
# Servers listen on 127.0.0.1 only.
# Usage: bench/fleet.sh      (as root on Debian 12; see bench/README.md, "The fleet endpoint")
set -euo pipefail

# Each run of the poll ladder takes warmup + seconds per fleet size and backend: 3 runs unless told otherwise.
BENCH_RUNS=${BENCH_RUNS:-3}
# shellcheck source=bench/knobs.sh
source "$(dirname "${BASH_SOURCE[0]}")/knobs.sh"
f=$out/fleet
nodes_ladder=${BENCH_FLEET_NODES:-"25000 50000 100000 150000"}
seconds=${BENCH_FLEET_SECONDS:-30}
warmup=${BENCH_FLEET_WARMUP:-10}
bundle_mib=${BENCH_FLEET_BUNDLE_MIB:-256}
parts=${BENCH_FLEET_PARTS:-"polls rollout download agent"}
rollout_nodes=${BENCH_ROLLOUT_NODES:-100000}
for p in $parts; do
    case $p in polls | polls-sqlite | polls-postgres | rollout | rollout-sqlite | rollout-postgres | download | agent) ;;
    *) echo "bench/fleet.sh: BENCH_FLEET_PARTS: unknown part ${p@Q} (polls, polls-sqlite, polls-postgres, rollout, rollout-sqlite, rollout-postgres, download, agent)" >&2; exit 2 ;;
    esac
done
for n in $nodes_ladder $seconds $warmup $bundle_mib $rollout_nodes; do
    case $n in '' | *[!0-9]* | 0) echo "bench/fleet.sh: expected positive numbers in the BENCH_FLEET_* knobs, got ${n@Q}" >&2; exit 2 ;; esac
done

export EDGE_DEPS_BENCH=1
# shellcheck source=../scripts/deps.sh
source "$root/scripts/deps.sh"
export PATH=$PATH:/usr/sbin:/sbin

echo "building edge-cloud, edge-image and fleet_load" >&2
(cd "$root" && cargo build --quiet --release --locked -p edge-cloud -p edge-image &&
    cargo build --quiet --release --locked -p testkit --example fleet_load)
rm -rf "$f" && mkdir -p "$f/bin"
for b in edge-cloud edge-image examples/fleet_load; do
    cp "${CARGO_TARGET_DIR:-$root/target}/release/$b" "$f/bin/${b##*/}"
done

export BENCH_F=$f BENCH_ROOT=$root BENCH_RUNS_N=$runs BENCH_LADDER=$nodes_ladder BENCH_SECONDS=$seconds \
    BENCH_WARMUP=$warmup BENCH_BUNDLE_MIB=$bundle_mib BENCH_PARTS=$parts BENCH_ROLLOUT_NODES=$rollout_nodes
python3 - <<'PY'
import json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(os.environ["BENCH_ROOT"], "bench"))
from benchlib import free_port, run, wait_port

f = os.environ["BENCH_F"]
bindir = os.path.join(f, "bin")
runs = int(os.environ["BENCH_RUNS_N"])
ladder = [int(n) for n in os.environ["BENCH_LADDER"].split()]
seconds, warmup = os.environ["BENCH_SECONDS"], os.environ["BENCH_WARMUP"]
bundle_mib = int(os.environ["BENCH_BUNDLE_MIB"])
parts = os.environ["BENCH_PARTS"].split()
if "polls" in parts:
    parts += ["polls-sqlite", "polls-postgres"]
if "rollout" in parts:
    parts += ["rollout-sqlite", "rollout-postgres"]
rollout_nodes = int(os.environ["BENCH_ROLLOUT_NODES"])
cloud, image, load = (os.path.join(bindir, b) for b in ("edge-cloud", "edge-image", "fleet_load"))


# A bundle signed by a key the endpoint trusts: random bytes (so zstd leaves it as large as it is).
keys = os.path.join(f, "keys")
os.makedirs(keys)
run([image, "keygen", "-o", os.path.join(keys, "fleet")])
payload = os.path.join(f, "payload.img")
with open(payload, "wb") as out:
    for _ in range(bundle_mib):
        out.write(os.urandom(1 << 20))
bundle = os.path.join(f, "bench.bundle")
run([image, "build", "--payload", f"rootfs={payload}", "--version", "1.0.0", "--security-version", "1",
     "--compatible", "bench-board", "--key", os.path.join(keys, "fleet.key"), "--output", bundle])
os.remove(payload)
# The rollout's bundle: a small one (what is measured is the endpoint's decisions, not the download).
small = os.path.join(f, "small.img")
with open(small, "wb") as out:
    out.write(os.urandom(1 << 20))
rollout_bundle = os.path.join(f, "rollout.bundle")
run([image, "build", "--payload", f"rootfs={small}", "--version", "2.0.0", "--security-version", "2",
     "--compatible", "bench-board", "--key", os.path.join(keys, "fleet.key"), "--output", rollout_bundle])

class Endpoint:
    """edge-cloud serve on a loopback port, over SQLite in its data directory or over a PostgreSQL URL."""
    def __init__(self, name, database_url=None):
        self.data = os.path.join(f, name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        out = run([cloud, "admin-token", "create", "--data", self.data, "--name", "bench", "--role", "admin",
                   *(["--database-url", database_url] if database_url else [])])
        self.admin = [l for l in out.splitlines() if l.strip()][-1].strip()
        self.proc = subprocess.Popen(
            [cloud, "serve", "--data", self.data, "--listen", f"127.0.0.1:{self.port}", "--log-level", "warn",
             "--public-url", self.url, "--keyring", os.path.join(keys, "fleet.pub"),
             *(["--database-url", database_url] if database_url else [])],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(f, f"{name}.log"), "w"))
        wait_port(self.port, self.proc, "edge-cloud")
        self.env = dict(os.environ, EDGE_CLOUD_URL=self.url, EDGE_CLOUD_TOKEN=self.admin)

    def cli(self, *args):
        return json.loads(run([cloud, *args, "--json"], env=self.env))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

def polls(name, database_url=None):
    ep = Endpoint(name, database_url)
    try:
        token = ep.cli("tokens", "create", "--name", "bench", "--policy", "accept")["secret"]
        enrolled = json.loads(run([load, "enroll", "--url", ep.url, "--token", token, "--nodes", str(max(ladder)),
                                   "--connections", "16"]).splitlines()[-1])
        print(f"{name}: enrolled {max(ladder)} nodes at {enrolled['per_second']:.0f}/s", file=sys.stderr)
        results = {}
        for n in ladder:
            p99s, samples = [], []
            for r in range(runs):
                out = subprocess.run([load, "run", "--url", ep.url, "--nodes", str(n), "--interval", "60",
                                      "--seconds", seconds, "--warmup", warmup, "--connections", "32"],
                                     capture_output=True, text=True)
                s = json.loads(out.stdout.splitlines()[-1])
                samples.append(s)
                p99s.append(s["p99_ms"])
                print(f"{name}: {n} nodes, run {r + 1}: p99 {s['p99_ms']:.1f} ms, p50 {s['p50_ms']:.2f} ms, "
                      f"status {s['status']}", file=sys.stderr)
            results[n] = {"p99_ms_median": statistics.median(p99s), "p99_ms": p99s,
                          "p50_ms_median": statistics.median(x["p50_ms"] for x in samples),
                          "errors": sum(x["total"] - x["ok"] for x in samples)}
        return results
    finally:
        ep.stop()

def load_run(ep, n):
    out = subprocess.run([load, "run", "--url", ep.url, "--nodes", str(n), "--interval", "60", "--seconds", seconds,
                          "--warmup", warmup, "--connections", "32"], capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[-1])

def rollout(name, database_url=None):
    ep = Endpoint(name, database_url)
    try:
        token = ep.cli("tokens", "create", "--name", "bench", "--policy", "accept")["secret"]
        run([load, "enroll", "--url", ep.url, "--token", token, "--nodes", str(rollout_nodes), "--connections", "16"])
        bundle_hash = json.loads(run(["curl", "-sf", "-H", f"Authorization: Bearer {ep.admin}", "--data-binary",
                                      f"@{rollout_bundle}", f"{ep.url}/v1/admin/bundles"]))["manifest_hash"]
        t0 = time.monotonic()
        d = ep.cli("deployments", "create", "bench-2", "--bundle", bundle_hash, "--canary", "100", "--waves",
                   "1%,10%,100%", "--max-concurrent", "5000", "--max-per-site", "10", "--brake", "5%")
        create_s = time.monotonic() - t0
        print(f"{name}: a deployment of {d['n_nodes']} nodes created in {create_s:.1f} s", file=sys.stderr)
        p99s = []
        for r in range(runs):
            s = load_run(ep, rollout_nodes)
            p99s.append(s["p99_ms"])
            print(f"{name}: {rollout_nodes} nodes in a rollout, run {r + 1}: p99 {s['p99_ms']:.1f} ms, "
                  f"status {s['status']}", file=sys.stderr)
        shown = ep.cli("deployments", "show", d["id"])
        ep.cli("deployments", "abort", d["id"])
        # Every node's first poll a start: no canary, no limit, one wave.
        t0 = time.monotonic()
        d2 = ep.cli("deployments", "create", "bench-3", "--bundle", bundle_hash)
        create2_s = time.monotonic() - t0
        s = load_run(ep, rollout_nodes)
        after = ep.cli("deployments", "show", d2["id"])
        print(f"{name}: every first poll a start: p99 {s['p99_ms']:.1f} ms, {after['n_updating']} started, "
              f"status {s['status']}", file=sys.stderr)
        return {"nodes": d["n_nodes"], "create_s": create_s, "create_us_per_node": create_s * 1e6 / max(d["n_nodes"], 1),
                "p99_ms_median": statistics.median(p99s), "p99_ms": p99s, "updating": shown["n_updating"],
                "storm": {"create_s": create2_s, "p99_ms": s["p99_ms"], "p50_ms": s["p50_ms"],
                          "started": after["n_updating"], "polls": s["total"], "errors": s["total"] - s["ok"],
                          "seconds": float(seconds) + float(warmup)}}
    finally:
        ep.stop()

def sustained(results):
    ok = [n for n, r in results.items() if r["p99_ms_median"] < 50 and r["errors"] == 0]
    return max(ok) if ok else 0

report = {"machine": {"cpus": os.cpu_count()}, "runs": runs}
if "polls-sqlite" in parts:
    report["polls_sqlite"] = polls("sqlite")
def with_postgres(fn):
    """PostgreSQL from Debian's package: initdb in a temporary directory as nobody, on a loopback port; `fn` gets its
    URL, and the server is stopped after it."""
    pgbin = sorted((d for d in os.listdir("/usr/lib/postgresql") if d.isdigit()), key=int)[-1]
    pgbin = f"/usr/lib/postgresql/{pgbin}/bin"
    pgdir = tempfile.mkdtemp(prefix="edge-bench-pg-")
    os.chown(pgdir, 65534, 65534)
    as_nobody = dict(user=65534, group=65534, cwd=pgdir)
    pgport = free_port()
    run([f"{pgbin}/initdb", "-D", f"{pgdir}/data", "-U", "postgres", "--auth=trust", "--locale=C", "-E", "UTF8"],
        **as_nobody)
    with open(f"{pgdir}/data/postgresql.auto.conf", "a") as conf:
        conf.write(f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{pgdir}'\nmax_connections = 100\n")
    pg = subprocess.Popen([f"{pgbin}/postgres", "-D", f"{pgdir}/data", "-p", str(pgport)], stdout=subprocess.DEVNULL,
                          stderr=open(os.path.join(f, "postgres.log"), "a"), **as_nobody)
    try:
        wait_port(pgport, pg, "postgres")
        time.sleep(1)
        run([f"{pgbin}/createdb", "-h", "127.0.0.1", "-p", str(pgport), "-U", "postgres", "fleet"], **as_nobody)
        return fn(f"postgres://postgres@127.0.0.1:{pgport}/fleet")
    finally:
        pg.send_signal(signal.SIGINT)
        pg.wait()
        shutil.rmtree(pgdir, ignore_errors=True)

if "polls-postgres" in parts:
    report["polls_postgres"] = with_postgres(lambda url: polls("postgres", url))
if "rollout-sqlite" in parts:
    report["rollout_sqlite"] = rollout("rollout-sqlite")
if "rollout-postgres" in parts:
    report["rollout_postgres"] = with_postgres(lambda url: rollout("rollout-postgres", url))

# Download: the endpoint's bundle store against nginx, the same file, the same client, interleaved.
if "download" in parts:
    ep = Endpoint("download")
    try:
        uploaded = json.loads(run(["curl", "-sf", "-H", f"Authorization: Bearer {ep.admin}", "--data-binary",
                                   f"@{bundle}", f"{ep.url}/v1/admin/bundles"]))
        cloud_url = f"{ep.url}/v1/bundles/{uploaded['manifest_hash']}.bundle"
        www = os.path.join(f, "www")
        os.makedirs(www)
        shutil.copy(bundle, os.path.join(www, "bench.bundle"))
        nport = free_port()
        nconf = os.path.join(f, "nginx.conf")
        with open(nconf, "w") as c:
            c.write(f"""daemon off; worker_processes auto; pid {f}/nginx.pid; error_log {f}/nginx.err;
    events {{}}
    http {{ access_log off; sendfile on; tcp_nopush on;
      client_body_temp_path {f}/nb; proxy_temp_path {f}/np; fastcgi_temp_path {f}/nf; uwsgi_temp_path {f}/nu; scgi_temp_path {f}/ns;
      server {{ listen 127.0.0.1:{nport}; root {www}; }} }}
    """)
        nginx = subprocess.Popen(["nginx", "-c", nconf, "-p", f], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(nport, nginx, "nginx")
            nginx_url = f"http://127.0.0.1:{nport}/bench.bundle"
            def speed(url):
                return float(run(["curl", "-sf", "-o", "/dev/null", "-w", "%{speed_download}", url]))
            sides = {"edge-cloud": [], "nginx": []}
            for r in range(max(runs, 5)):
                order = [("edge-cloud", cloud_url), ("nginx", nginx_url)]
                for side, url in (order if r % 2 == 0 else order[::-1]):
                    sides[side].append(speed(url))
            med = {k: statistics.median(v) for k, v in sides.items()}
            report["download"] = {"bundle_bytes": os.path.getsize(bundle),
                                  "edge_cloud_mib_s": med["edge-cloud"] / 2**20, "nginx_mib_s": med["nginx"] / 2**20,
                                  "ratio": med["edge-cloud"] / med["nginx"]}
        finally:
            nginx.terminate()
            nginx.wait()
    finally:
        ep.stop()

print(json.dumps(report, indent=2))
if "polls-sqlite" in parts:
    print(f"polls, SQLite: {sustained(report['polls_sqlite'])} nodes every 60 s with p99 < 50 ms "
          f"(at 100,000: {report['polls_sqlite'].get(100000, {}).get('p99_ms_median', 'not measured')} ms; target 100,000)")
if "polls-postgres" in parts:
    print(f"polls, PostgreSQL: {sustained(report['polls_postgres'])} nodes every 60 s with p99 < 50 ms "
          f"(at 100,000: {report['polls_postgres'].get(100000, {}).get('p99_ms_median', 'not measured')} ms; target 100,000)")
for key, label in (("rollout_sqlite", "SQLite"), ("rollout_postgres", "PostgreSQL")):
    if key in report:
        r = report[key]
        print(f"rollout, {label}: {r['nodes']} nodes placed in {r['create_s']:.1f} s ({r['create_us_per_node']:.0f} us a node); "
              f"polls p99 {r['p99_ms_median']:.1f} ms with it in progress (target < 50 ms); every first poll a start: "
              f"p99 {r['storm']['p99_ms']:.1f} ms, {r['storm']['started']} starts in {r['storm']['seconds']:.0f} s")
if "download" in parts:
    d = report["download"]
    print(f"download: edge-cloud {d['edge_cloud_mib_s']:.0f} MiB/s, nginx {d['nginx_mib_s']:.0f} MiB/s, "
          f"ratio {d['ratio']:.2f} (target >= 0.9)")
PY
case " $parts " in *" agent "*)
    echo "agent memory (bench/agent.sh):" >&2
    bash "$root/bench/agent.sh" ;;
esac
