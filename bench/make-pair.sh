#!/usr/bin/env bash
# Builds the benchmark's realistic image pair, reproducibly on one machine:
#   v1.img: a 256 MiB ext4 image made with `mke2fs -d` from about 200 MiB of real files sampled from /usr;
#   v2.img: the same tree with every 20th regular file rewritten (same entropy, a different size), as a new image.
# Usage: bench/make-pair.sh OUT_DIR [TARGET_MIB]
set -euo pipefail
out=${1:?usage: make-pair.sh OUT_DIR [TARGET_MIB]}
target_mib=${2:-200}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -s "$out/v1.img" ] && [ -s "$out/v2.img" ] && [ "$(cat "$out/target_mib" 2>/dev/null)" = "$target_mib" ]; then
    echo "pair already in $out" >&2
    exit 0
fi
rm -rf "$out/tree-v1" "$out/tree-v2" "$out/v1.img" "$out/v2.img"

# Sample: every regular file under /usr up to 4 MiB, in a fixed order, taking every Nth (N chosen so that the
# sample spans the whole of /usr) until the blocks they and their
# directories fill reach the target size.
python3 - "$out/tree-v1" "$target_mib" <<'PY'
import os, sys, shutil
dst, target = sys.argv[1], int(sys.argv[2]) << 20
files = []
for root, dirs, names in os.walk('/usr'):
    dirs.sort()
    for n in sorted(names):
        p = os.path.join(root, n)
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if os.path.isfile(p) and not os.path.islink(p) and 0 < st.st_size <= 4 << 20:
            files.append((p, st.st_size))
# A stride over the whole of /usr keeps the sample a cross-section (binaries, libraries, headers, text), not one corner.
stride = max(1, sum(size for _, size in files) // target)
total = 0
for i, (p, size) in enumerate(files):
    if i % stride:
        continue
    q = os.path.join(dst, os.path.relpath(p, '/'))
    d = os.path.dirname(q)
    while not os.path.isdir(d) and d != dst:
        total += 4096
        d = os.path.dirname(d)
    os.makedirs(os.path.dirname(q), exist_ok=True)
    try:
        shutil.copyfile(p, q)
    except OSError:
        continue
    total += (size + 4095) // 4096 * 4096
    if total >= target:
        break
print(f"sampled {total >> 20} MiB", file=sys.stderr)
PY

# v2: every 20th regular file (in sorted order) rewritten: each byte XORed with a per-file constant, which keeps the
# content's entropy and compressibility, and cut to 7/8 of its size plus 1000 bytes, which changes its size.
cp -a "$out/tree-v1" "$out/tree-v2"
python3 - "$out/tree-v2" <<'PY'
import os, sys
root = sys.argv[1]
paths = []
for r, dirs, names in os.walk(root):
    dirs.sort()
    for n in sorted(names):
        paths.append(os.path.join(r, n))
paths.sort()
changed = 0
for i, p in enumerate(paths):
    if i % 20 != 19:
        continue
    data = open(p, 'rb').read()
    key = 0x5a ^ (i & 0xff) or 0x33
    new = bytes(b ^ key for b in data[: len(data) * 7 // 8 + 1000])
    open(p, 'wb').write(new)
    changed += 1
print(f"rewrote {changed} of {len(paths)} files", file=sys.stderr)
PY

# mke2fs -d copies each inode's ctime from the source file, which is the time this script copied it; set every
# in-use inode's ctime to the fixed time so that the images are the same bytes on every run.
pin_ctimes() {
    local img=$1
    /sbin/dumpe2fs "$img" 2>/dev/null | python3 -c '
import re, sys
text = sys.stdin.read()
per_group = int(re.search(r"^Inodes per group:\s+(\d+)", text, re.M).group(1))
groups = re.split(r"^Group \d+:", text, flags=re.M)[1:]
for g, body in enumerate(groups):
    free = set()
    m = re.search(r"^\s+Free inodes: (.*)$", body, re.M)
    for part in (m.group(1).split(",") if m and m.group(1).strip() else []):
        a, _, b = part.strip().partition("-")
        free.update(range(int(a), int(b or a) + 1))
    for ino in range(g * per_group + 1, (g + 1) * per_group + 1):
        if ino not in free:
            print(f"sif <{ino}> ctime 20240101000000")
' >"$img.debugfs"
    E2FSPROGS_FAKE_TIME=1704067200 /sbin/debugfs -w -f "$img.debugfs" "$img" >/dev/null 2>&1
    rm -f "$img.debugfs"
}

for v in v1 v2; do
    find "$out/tree-$v" -exec touch -h -d '2024-01-01 00:00:00' {} +
    E2FSPROGS_FAKE_TIME=1704067200 mke2fs -q -F -t ext4 -b 4096 \
        -U 6f1c3b2a-0000-4000-8000-000000000001 \
        -E hash_seed=6f1c3b2a-0000-4000-8000-000000000002,root_owner=0:0 \
        -d "$out/tree-$v" "$out/$v.img" 256M
    pin_ctimes "$out/$v.img"
done
echo "$target_mib" >"$out/target_mib"
ls -l "$out"/v1.img "$out"/v2.img >&2
