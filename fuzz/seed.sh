#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the golden vectors, for every target or the ones named: the U-Boot environments
# and GRUB boot-state copies of bootctl/tests/vectors and edge-image/tests/boot-state, blocks the bootloaders' own
# tools make (when they are installed), journals, bundles of several chunks, and signed fleet requests. Seeds are
# added beside what a corpus already holds, under fixed names, so seeding again is harmless.
# Usage: fuzz/seed.sh [TARGET...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
corpus="$here/corpus"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Writes a seed: the mode byte given in hex (empty for none), then the files named.
seed() {
    local target=$1 name=$2 mode=$3
    shift 3
    mkdir -p "$corpus/$target"
    {
        if [ -n "$mode" ]; then printf "\\x$mode"; fi
        cat "$@"
    } >"$corpus/$target/seed-$name"
}

# Writes a seed and copies of it cut short at a few places, so the fuzzer starts from every part of the input.
seed_cuts() {
    local target=$1 name=$2 file=$3 size cut
    seed "$target" "$name" "" "$file"
    size=$(wc -c <"$file")
    for cut in "${@:4}"; do
        if [ "$cut" -lt "$size" ]; then
            head -c "$cut" "$file" >"$corpus/$target/seed-$name-cut-$cut"
        fi
    done
}

seed_uboot_env() {
    local v="$root/bootctl/tests/vectors" size
    # Mode byte: bit 0 redundant, bit 1 the boolean flag scheme (fuzz_targets/uboot_env.rs).
    seed uboot_env single 00 "$v/uboot-single.bin"
    seed uboot_env redundant 01 "$v/uboot-redundant.bin"
    seed uboot_env redundant-boolean 03 "$v/uboot-redundant.bin"
    if command -v mkenvimage >/dev/null; then
        # Small blocks with mkenvimage's 0xff padding, and the boot state variables, as U-Boot boards hold them.
        printf 'edge_active=A\nedge_last_good=A\nedge_a_good=1\nedge_a_tries=0\nedge_b_good=0\nedge_b_tries=3\n' >"$tmp/state.txt"
        cat "$v/uboot-env.txt" >>"$tmp/state.txt"
        for size in 512 1024; do
            mkenvimage -s "$size" -o "$tmp/single-$size" "$tmp/state.txt"
            mkenvimage -r -s "$size" -o "$tmp/copy-$size" "$tmp/state.txt"
            seed uboot_env "mkenvimage-single-$size" 00 "$tmp/single-$size"
            seed uboot_env "mkenvimage-redundant-$size" 01 "$tmp/copy-$size" "$tmp/copy-$size"
            seed uboot_env "mkenvimage-boolean-$size" 03 "$tmp/copy-$size" "$tmp/copy-$size"
        done
        mkenvimage -s 64 -o "$tmp/tiny" - <<<"bootcount=1"
        seed uboot_env mkenvimage-tiny 00 "$tmp/tiny"
    else
        echo "seed: mkenvimage is not installed (u-boot-tools): the U-Boot corpus starts from the vectors alone" >&2
    fi
}

seed_grub_state() {
    local s="$root/edge-image/tests/boot-state"
    # The two copies one after the other, as fuzz_targets/grub_state.rs reads its input.
    seed grub_state provisioned "" "$s/state0.env" "$s/state1.env"
    seed grub_state copy0-only "" "$s/state0.env"
    head -c 700 "$s/state1.env" >"$tmp/torn"
    tail -c +701 "$s/state0.env" >>"$tmp/torn"
    seed grub_state torn-copy1 "" "$s/state0.env" "$tmp/torn"
    if command -v grub-editenv >/dev/null; then
        grub-editenv "$tmp/grubenv" create
        grub-editenv "$tmp/grubenv" set next_entry=1 'multi=a\b' edge_active=B
        seed grub_state grub-editenv "" "$tmp/grubenv"
    else
        echo "seed: grub-editenv is not installed (grub-common): the GRUB corpus starts from the vectors alone" >&2
    fi
}

seed_updater_files() {
    local bundle='"bundle": {"manifest_hash": "0ac3d2e0b10e649b98cccc3aeea5af51852c9a9c1e325eb89a35105031b6ca21", "name": "tiny", "version": "1.2.3", "security_version": 4}'
    local update phase mode
    printf '{"format": 1, "security_version": 0}\n' >"$tmp/fresh.json"
    # The mode byte picks the boot state the journal is reconciled with (fuzz_targets/updater_files.rs): 0x00 has
    # slot A booted and active and neither slot good, 0x19 slot B booted with A good and B good, 0x63 slot B booted
    # and active on trial with tries left on both.
    for mode in 00 19 63; do
        seed updater_files "fresh-$mode" "$mode" "$tmp/fresh.json"
    done
    for phase in downloading verified flipped trial committed rolled-back; do
        update="{\"phase\": \"$phase\", \"target\": \"B\", $bundle, \"source\": \"http://127.0.0.1:8080/tiny.bundle\", \"size_bytes\": 40000, \"chunk_size\": 16384, \"n_chunks\": 3, \"chunks_done\": [[0, 1], [2, 3]], \"bytes_fetched\": 2488, \"bytes_reused\": 0, \"reboot\": true, \"started\": \"2026-01-02T03:04:05Z\", \"reason\": \"health check web failed\"}"
        printf '{\n  "format": 1,\n  "security_version": 3,\n  "slot_a": {%s, "size_bytes": 40000},\n  "update": %s\n}\n' \
            "$bundle" "$update" >"$tmp/$phase.json"
        for mode in 00 19 63; do
            seed updater_files "$phase-$mode" "$mode" "$tmp/$phase.json"
        done
    done
    # A slot index cache of three 4096-byte blocks, without its hash, which the target appends.
    printf 'EDGEFPS1\x00\x10\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00' >"$tmp/index"
    printf '\xc2\xe7\x0a\x83\x98\xd5\xda\x23\x61\x80\x59\xd6\x49\xbd\x09\x39\x3b\xad\xb8\xc0\x72\x36\x3c\xe9' >>"$tmp/index"
    seed updater_files slot-index 00 "$tmp/index"
}

# Bundles of several chunks and two payloads, signed with the vectors' test key (seed 0x42 repeated, which the
# parse_bundle target trusts), built by the workspace's edge-image into $tmp/bundles once.
make_bundles() {
    [ -d "$tmp/bundles" ] && return 0
    mkdir -p "$tmp/bundles"
    (cd "$root" && cargo build --quiet --bin edge-image)
    local edge_image="${CARGO_TARGET_DIR:-$root/target}/debug/edge-image" i
    printf 'edge-image-secret-key-v1:%s\n' "$(printf '42%.0s' $(seq 32))" >"$tmp/test.key"
    chmod 600 "$tmp/test.key"
    # A payload of zeros, text that repeats and bytes that do not, so that chunks and frames differ in size.
    head -c 12288 /dev/zero >"$tmp/p1"
    for i in $(seq 400); do echo "line $i of a payload that compresses well"; done >>"$tmp/p1"
    cat "$root/image-layout/tests/vectors/tiny.bundle" "$root/image-layout/tests/vectors/tiny.payload" >>"$tmp/p1"
    tail -c 9000 "$tmp/p1" | tr 'a-z' 'n-za-m' >"$tmp/p2"
    "$edge_image" build --payload "rootfs=$tmp/p1" --version 2.0.0 --security-version 2 --compatible fuzz \
        --created 2026-01-01T00:00:00Z --chunk-size 4K --frame-size 4K --key "$tmp/test.key" \
        --output "$tmp/bundles/several-chunks.bundle" >/dev/null
    "$edge_image" build --payload "rootfs=$tmp/p1" --payload "boot=$tmp/p2" --version 2.0.1 --security-version 2 \
        --compatible fuzz --created 2026-01-01T00:00:00Z --chunk-size 8K --frame-size 4K --key "$tmp/test.key" \
        --output "$tmp/bundles/two-payloads.bundle" >/dev/null
    cp "$root/image-layout/tests/vectors/tiny.bundle" "$tmp/bundles/"
}

seed_parse_bundle() {
    local b name
    make_bundles
    for b in "$tmp/bundles"/*.bundle; do
        name=$(basename "$b" .bundle)
        seed_cuts parse_bundle "$name" "$b" 24 512 1024 2048 4096 8192
    done
}

# The delta_index target's input is an 8-byte head giving the payload's shape, then the index
# (fuzz_targets/delta_index.rs): the stored delta index of every payload of the seed bundles, and the raw index of
# the vectors' tiny bundle as tests/vectors/tiny.json gives it.
seed_delta_index() {
    make_bundles
    mkdir -p "$corpus/delta_index"
    python3 - "$tmp/bundles" "$root/image-layout/tests/vectors/tiny.json" "$corpus/delta_index" <<'PY'
import json, os, struct, sys
bundles, tiny, out = sys.argv[1:]

def head(flags, p):
    exp = lambda big, small: (big // small).bit_length() - 1
    chunk = p["chunk_size"]
    return bytes([flags, exp(p["block_size"], 512), exp(p["frame_size"], p["block_size"]),
                  exp(chunk, p["frame_size"])]) + struct.pack("<I", p["size_bytes"] - 1)

for name in sorted(os.listdir(bundles)):
    b = open(os.path.join(bundles, name), "rb").read()
    mlen, nsig = struct.unpack_from("<II", b, 12)
    m = json.loads(b[24:24 + mlen])
    body = 24 + mlen + nsig * (8 + 64)
    for p in m["payloads"]:
        if p["size_bytes"] > 1 << 20:
            continue
        d = p["delta_index"]
        stored = b[body + d["offset"]:body + d["offset"] + d["size_bytes"]]
        index = b[body + p["index"]["offset"]:body + p["index"]["offset"] + p["index"]["size_bytes"]]
        stem = f"seed-{name.removesuffix('.bundle')}-{p['name']}"
        open(f"{out}/{stem}-stored", "wb").write(head(0, p) + stored)
        open(f"{out}/{stem}-chunk-index", "wb").write(head(4, p) + index)

t = json.load(open(tiny))
p = {"block_size": 4096, "frame_size": 8192, "chunk_size": 16384,
     "size_bytes": sum(c["raw_size"] for c in t["chunks"])}
raw = b"".join(int(f, 16).to_bytes(8, "little") for f in t["block_fingerprints"])
raw += b"".join(struct.pack("<I", s) for s in t["frame_sizes"])
open(f"{out}/seed-tiny-raw", "wb").write(head(1, p) + raw)
open(f"{out}/seed-tiny-raw-claims-more", "wb").write(head(3, p) + raw)
PY
}

# The http_response target's input is a byte picking the parser (fuzz_targets/http_response.rs), then the value: what
# servers send, and the edge cases the parsers' unit tables hold.
seed_http_response() {
    local i=0 line
    mkdir -p "$corpus/http_response"
    while IFS= read -r line; do
        printf '%b' "$line" >"$corpus/http_response/seed-$i"
        i=$((i + 1))
    done <<'SEEDS'
\x00\xce\x00
\x00\x34\x01
\x0125165824
\x01 007 
\x0118446744073709551616
\x02bytes 0-1023/25169538
\x02bytes 24-2047/*
\x02bytes 5-4/10
\x02BYTES 0-0/1
\x03"5f3a-64c1b2e9"
\x03W/"v2"
\x03"a"b"
\x04http://10.0.2.100/v2.edgeb
\x04ftp://x
\x04C:\\bundles\\v2
\x05http://10.0.2.100/a/b\n../c/v2.edgeb
\x05http://10.0.2.100/a/b\nfile:///etc/passwd
\x05http://10.0.2.100/a/b\n//cdn.example/v2
SEEDS
}

# The fleet_headers target's input is a byte picking the mode (fuzz_targets/fleet_headers.rs), then text: header
# fields, a Content-Digest and its body, and whole signed requests: docs/fleet-protocol.md's example and RFC 9421's
# ed25519 example (appendix B.2.6), which the target's keys verify.
seed_fleet_headers() {
    local out="$corpus/fleet_headers" node_input node_sig rfc_input rfc_sig digest
    mkdir -p "$out"
    node_input='sig1=("@method" "@path" "@query" "content-digest");created=1800000000;alg="ed25519";keyid="node-0001"'
    node_sig='sig1=:/e8Hlm/CvFH8oXOq6vjzTNfvKTsByiVWDsheKEXeMBUU+RepiFZPTA3ncbWNpPqxl2vluktnKpE8hK0cjTzbDQ==:'
    digest='sha-256=:T6NU4Wu3FErMXi1HIEGlCct1ZMBDpw0oVIaablz/ECU=:'
    rfc_input='sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"'
    rfc_sig='sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:'
    printf '\x00%s' "$node_input" >"$out/seed-node-input"
    printf '\x00%s' "$node_sig" >"$out/seed-node-signature"
    printf '\x00%s' "$rfc_input" >"$out/seed-rfc-input"
    printf '\x00%s, %s' "$rfc_sig" "$node_sig" >"$out/seed-two-signatures"
    printf '\x00%s' 'a=("x";sf "y";key="k";req=?0);n=-5;t="q\"x", b=:AA==:, c=123456789012345' >"$out/seed-subset"
    printf '\x01%s\n%s' "$digest" '{"seq": 7, "phase": "committed"}' >"$out/seed-digest-node"
    printf '\x01%s\n%s\n' 'sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:, md5=:AA==:' '{"hello": "world"}' \
        >"$out/seed-digest-rfc-9530"
    printf '\x01%s\n%s' 'sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:' \
        '{"hello": "world"}' >"$out/seed-digest-rfc-9421"
    printf '\x02POST\n/v1/nodes/node-0001/reports\nHost: fleet.example:8443\nContent-Type: application/json\n%s\n%s\n%s\n\n%s' \
        "Content-Digest: $digest" "Signature-Input: $node_input" "Signature: $node_sig" '{"seq": 7, "phase": "committed"}' \
        >"$out/seed-node-request"
    printf '\x02POST\n/foo?param=Value&Pet=dog\nHost: example.com\nDate: Tue, 20 Apr 2021 02:07:55 GMT\n%s\n%s\n%s\n%s\n%s\n\n%s' \
        'Content-Type: application/json' \
        'Content-Digest: sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:' \
        'Content-Length: 18' "Signature-Input: $rfc_input" "Signature: $rfc_sig" '{"hello": "world"}' >"$out/seed-rfc-request"
}

# The telemetry_batch target's input is a batch's JSON as a node sends it (before zstd): the protocol doc's example, one
# of each kind with a gap, a lost count and labels, and an empty one.
seed_telemetry_batch() {
    local out="$corpus/telemetry_batch"
    mkdir -p "$out"
    printf '%s' '{"records": [{"seq": 812, "kind": "log", "time_ms": 1800000000250, "source": "app", "level": 6, "text": "order 1182 paid"}, {"seq": 813, "kind": "metrics", "time_ms": 1800000001000, "samples": [{"name": "edge_node_load1", "value": 0.42}, {"name": "edge_node_network_receive_bytes_total", "labels": {"device": "eth0"}, "value": 918233}]}], "counters": {"dropped": {"log": 0, "metrics": 0}, "damaged": 0, "torn_bytes": 0}}' >"$out/seed-protocol-example"
    printf '%s' '{"records": [{"seq": 1, "kind": "log", "time_ms": -5, "source": "kernel", "level": 3, "text": "a\tb\nc", "lost": 12}, {"seq": 9, "kind": "metrics", "time_ms": 7, "samples": [{"name": "x:y_total", "labels": {"a": "1", "b_c": "\u00e9"}, "value": -1e300}]}], "counters": {"dropped": {"log": 4}, "damaged": 2, "torn_bytes": 100}}' >"$out/seed-gap-lost-labels"
    # A value the default float parse of serde_json read one unit in the last place off (found by this target).
    printf '%s' '{"records": [{"seq": 9, "kind": "metrics", "time_ms": 7, "samples": [{"name": "x", "value": 21e300}]}]}' >"$out/seed-inexact-float"
    printf '%s' '{"records": []}' >"$out/seed-empty"
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(uboot_env grub_state updater_files delta_index parse_bundle http_response fleet_headers telemetry_batch)
fi
for t in "${targets[@]}"; do
    case $t in
    uboot_env) seed_uboot_env ;;
    grub_state) seed_grub_state ;;
    updater_files) seed_updater_files ;;
    delta_index) seed_delta_index ;;
    parse_bundle) seed_parse_bundle ;;
    http_response) seed_http_response ;;
    fleet_headers) seed_fleet_headers ;;
    telemetry_batch) seed_telemetry_batch ;;
    *)
        echo "seed: no seeds for target $t" >&2
        exit 2
        ;;
    esac
    echo "seed: $t: $(find "$corpus/$t" -type f | wc -l) inputs in fuzz/corpus/$t" >&2
done
