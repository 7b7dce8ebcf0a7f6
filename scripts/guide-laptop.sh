#!/usr/bin/env bash
# Runs the operator guide's laptop walkthrough (docs/operator-guide.md, "Trying it on a laptop") as written, in a
# scratch directory, with the tools of BIN_DIR (default: target/debug) on PATH, then checks that it ended as the guide
# says: 3.0.0 rolled back with its check's stderr as the reason, slot B committed with 2.0.0 and booted.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN_DIR:-$root/target/debug}
for tool in edge-image edge-bootctl edge-update; do
    [ -x "$bin/$tool" ] || { echo "error: $bin/$tool is missing (cargo build, or set BIN_DIR)" >&2; exit 1; }
done
walk=$(awk '/<!-- laptop walkthrough/ { on = 1; next } on && /^```sh/ { next } on && /^```/ { exit } on { print }' \
    "$root/docs/operator-guide.md")
[ -n "$walk" ] || { echo "error: no laptop walkthrough in docs/operator-guide.md" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
PATH=$bin:$PATH bash -euo pipefail -c "$walk" >walk.log 2>&1 || { cat walk.log; echo "error: the walkthrough failed" >&2; exit 1; }
status=$(PATH=$bin:$PATH edge-update --config edge-laptop/update.toml status --json)
python3 - "$status" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
u = s["journal"]["update"]
checks = {
    "3.0.0 rolled back": (u["bundle"]["version"], u["phase"]) == ("3.0.0", "rolled-back"),
    "the reason is the check's stderr": u["reason"].endswith("stderr: app did not start"),
    "slot B booted, good, holding 2.0.0": (s["booted"], s["slots"][1]["good"], s["slots"][1]["bundle"]["version"]) == ("B", True, "2.0.0"),
    "3.0.0 came as a delta": u["fetched_bytes"] < u["size_bytes"] // 10,
    "the last failure is the rollback": s["last_failure"]["event"] == "rolled-back",
}
bad = [name for name, ok in checks.items() if not ok]
if bad:
    sys.exit("error: the walkthrough did not end as the guide says: " + "; ".join(bad) + "\n" + json.dumps(s, indent=1))
print("laptop walkthrough: " + ", ".join(checks))
PY
