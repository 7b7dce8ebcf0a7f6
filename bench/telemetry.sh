#!/usr/bin/env bash
# Measures the telemetry path on this machine (bench/README.md, "Telemetry"), each figure the median of BENCH_RUNS runs:
#   agent: BENCH_TELEMETRY_LINES kernel log records of a busy service through the agent's collector into its spool
#     (numbered, framed, synced), against the same lines appended to a plain file and synced once (the baseline, in the
#     same process); the peak RSS of the real edge-agent (the static musl release build, as on a node) while it spools
#     them with the endpoint unreachable (target: 8 MiB); and the bytes on the wire per log line (batches as the
#     shipper sends them) against the line's raw text (agent/examples/telemetry_bench.rs).
#   ingest: edge-cloud serve (release, SQLite; and PostgreSQL started here by initdb as nobody on loopback) with
#     BENCH_TELEMETRY_NODES simulated nodes (testkit's fleet_load, every request signed as the agent signs it), each
#     polling every 60 s and sending a telemetry batch of BENCH_TELEMETRY_RECORDS records after each poll: the records
#     stored a second over BENCH_TELEMETRY_SECONDS measured seconds (target: 50,000 a second sustained) and the polls'
#     p99 meanwhile (target: under 50 ms, as in bench/fleet.sh); the endpoint forwards the metric records to a
#     VictoriaMetrics started here, so the queue's writes and deletes are in the figure.
# BENCH_TELEMETRY_PARTS picks "agent", "ingest-sqlite", "ingest-postgres" (default: all three).
# Servers listen on 127.0.0.1 only. Usage: bash bench/telemetry.sh
set -euo pipefail
BENCH_RUNS=${BENCH_RUNS:-3}
# shellcheck source=bench/knobs.sh
source "$(dirname "${BASH_SOURCE[0]}")/knobs.sh"
f=$out/telemetry
lines=${BENCH_TELEMETRY_LINES:-1000000}
nodes=${BENCH_TELEMETRY_NODES:-10000}
records=${BENCH_TELEMETRY_RECORDS:-300}
seconds=${BENCH_TELEMETRY_SECONDS:-60}
warmup=${BENCH_TELEMETRY_WARMUP:-20}
parts=${BENCH_TELEMETRY_PARTS:-"agent ingest-sqlite ingest-postgres"}
for n in $lines $nodes $records $seconds $warmup; do
    case $n in '' | *[!0-9]* | 0) echo "bench/telemetry.sh: expected positive numbers in the BENCH_TELEMETRY_* knobs, got ${n@Q}" >&2; exit 2 ;; esac
done
for p in $parts; do
    case $p in agent | ingest-sqlite | ingest-postgres) ;;
    *) echo "bench/telemetry.sh: BENCH_TELEMETRY_PARTS: unknown part ${p@Q} (agent, ingest-sqlite, ingest-postgres)" >&2; exit 2 ;;
    esac
done

# shellcheck source=../scripts/deps.sh
source "$root/scripts/deps.sh"
export PATH=$PATH:/usr/sbin:/sbin
rm -rf "$f" && mkdir -p "$f/bin"

if [[ " $parts " == *" agent "* ]]; then
    echo "building edge-agent (static musl release) and telemetry_bench" >&2
    (cd "$root" && cargo build --quiet --release --locked --target x86_64-unknown-linux-musl -p edge-agent &&
        cargo build --quiet --release --locked -p edge-agent --example telemetry_bench)
    agent=${CARGO_TARGET_DIR:-$root/target}/x86_64-unknown-linux-musl/release/edge-agent
    for r in $(seq 1 "$runs"); do
        "${CARGO_TARGET_DIR:-$root/target}/release/examples/telemetry_bench" "$agent" "$lines" | tail -n 1 >>"$f/agent.jsonl"
        echo "agent, run $r: $(tail -n 1 "$f/agent.jsonl")" >&2
    done
fi

if [[ " $parts " == *" ingest"* ]]; then
    echo "building edge-cloud and fleet_load" >&2
    (cd "$root" && cargo build --quiet --release --locked -p edge-cloud &&
        cargo build --quiet --release --locked -p testkit --example fleet_load)
    for b in edge-cloud examples/fleet_load; do
        cp "${CARGO_TARGET_DIR:-$root/target}/release/$b" "$f/bin/${b##*/}"
    done
fi

export BENCH_F=$f BENCH_ROOT=$root BENCH_RUNS_N=$runs BENCH_NODES=$nodes BENCH_RECORDS=$records \
    BENCH_SECONDS=$seconds BENCH_WARMUP=$warmup BENCH_PARTS=$parts
python3 - <<'PY'
import json, os, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(os.environ["BENCH_ROOT"], "bench"))
from benchlib import free_port, run, stop, wait_port

f = os.environ["BENCH_F"]
runs = int(os.environ["BENCH_RUNS_N"])
parts = os.environ["BENCH_PARTS"].split()
nodes, records = int(os.environ["BENCH_NODES"]), int(os.environ["BENCH_RECORDS"])
seconds, warmup = os.environ["BENCH_SECONDS"], os.environ["BENCH_WARMUP"]
results = {}

if "agent" in parts:
    samples = [json.loads(l) for l in open(os.path.join(f, "agent.jsonl"))]
    med = lambda k: statistics.median(s[k] for s in samples)
    results["agent"] = {k: med(k) for k in samples[0] if k != "lines"} | {"lines": samples[0]["lines"], "runs": samples}


cloud, load = (os.path.join(f, "bin", b) for b in ("edge-cloud", "fleet_load"))

def ingest(name, database_url=None):
    vm_port = free_port()
    vm_dir = tempfile.mkdtemp(dir=f)
    vm = subprocess.Popen(["victoria-metrics", f"-httpListenAddr=127.0.0.1:{vm_port}", f"-storageDataPath={vm_dir}",
                           "-retentionPeriod=100y", "-dedup.minScrapeInterval=1ms"],
                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(f, f"{name}-vm.log"), "w"))
    wait_port(vm_port, vm, "victoria-metrics")
    data = os.path.join(f, name)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db = ["--database-url", database_url] if database_url else []
    out = run([cloud, "admin-token", "create", "--data", data, "--name", "bench", "--role", "admin", *db])
    admin = [l for l in out.splitlines() if l.strip()][-1].strip()
    ep = subprocess.Popen([cloud, "serve", "--data", data, "--listen", f"127.0.0.1:{port}", "--log-level", "warn",
                           "--remote-write-url", f"http://127.0.0.1:{vm_port}/api/v1/write", *db],
                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(f, f"{name}.log"), "w"))
    try:
        wait_port(port, ep, "edge-cloud")
        env = dict(os.environ, EDGE_CLOUD_URL=url, EDGE_CLOUD_TOKEN=admin)
        token = json.loads(run([cloud, "tokens", "create", "--name", "bench", "--policy", "accept", "--json"],
                               env=env))["secret"]
        run([load, "enroll", "--url", url, "--token", token, "--nodes", str(nodes), "--connections", "16"])
        samples = []
        for r in range(runs):
            out = subprocess.run([load, "run", "--url", url, "--nodes", str(nodes), "--interval", "60",
                                  "--seconds", seconds, "--warmup", warmup, "--connections", "64",
                                  "--telemetry", str(records), "--run-id", str(r + 1)],
                                 capture_output=True, text=True)
            s = json.loads(out.stdout.splitlines()[-1])
            samples.append(s)
            print(f"{name}: run {r + 1}: {s['telemetry_records_per_second']:.0f} records/s stored, poll p99 "
                  f"{s['p99_ms']:.1f} ms, batch p99 {s['telemetry_p99_ms']:.1f} ms, status {s['status']}",
                  file=sys.stderr)
        metrics = subprocess.run(["curl", "-sf", "-H", f"Authorization: Bearer {admin}", f"{url}/metrics"],
                                 capture_output=True, text=True).stdout
        queue = [l for l in metrics.splitlines() if l.startswith("edge_cloud_metric_queue_records")]
        return {
            "records_per_second_median": statistics.median(s["telemetry_records_per_second"] for s in samples),
            "poll_p99_ms_median": statistics.median(s["p99_ms"] for s in samples),
            "batch_p99_ms_median": statistics.median(s["telemetry_p99_ms"] for s in samples),
            "wire_bytes_per_record": statistics.median(s["telemetry_wire_bytes_per_record"] for s in samples),
            "errors": sum(s["total"] - s["ok"] for s in samples),
            "metric_queue_at_end": queue[0].split()[-1] if queue else None,
            "runs": samples,
        }
    finally:
        stop(ep)
        stop(vm)

if "ingest-sqlite" in parts:
    results["ingest_sqlite"] = ingest("ingest-sqlite")
if "ingest-postgres" in parts:
    pg_dir = tempfile.mkdtemp(dir=f)
    os.chmod(pg_dir, 0o777)
    bindir = sorted(d for d in os.listdir("/usr/lib/postgresql"))[-1]
    bindir = os.path.join("/usr/lib/postgresql", bindir, "bin")
    as_nobody = ["runuser", "-u", "nobody", "--"] if os.getuid() == 0 else []
    data = os.path.join(pg_dir, "data")
    subprocess.run([*as_nobody, os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)
    pg_port = free_port()
    pg = subprocess.Popen([*as_nobody, os.path.join(bindir, "postgres"), "-D", data, "-p", str(pg_port), "-k", pg_dir,
                           "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(f, "postgres.log"), "w"))
    try:
        wait_port(pg_port, pg, "postgres")
        time.sleep(1)
        subprocess.run([*as_nobody, os.path.join(bindir, "createdb"), "-h", "127.0.0.1", "-p", str(pg_port), "-U",
                        "postgres", "bench"], check=True, capture_output=True)
        results["ingest_postgres"] = ingest("ingest-postgres", f"postgres://postgres@127.0.0.1:{pg_port}/bench")
    finally:
        stop(pg)

print(json.dumps(results, indent=2))
with open(os.path.join(f, "results.json"), "w") as out:
    json.dump(results, out, indent=2)
PY
