"""The delta floor that bench/run.sh and bench/update.sh measure delta bytes against (bench/README.md, "The ratios").

The floor is the 4 KiB blocks of the new image found at no 4 KiB-aligned offset of the old one, concatenated in the
new image's order and compressed as one zstd stream at the benchmark's level.
No block-based delta can fetch fewer new blocks.
It is one module so that both benchmarks compare against the same number.

Usage as a script: python3 bench/floor.py OLD NEW LEVEL   (prints the figures as one JSON object)
"""

import hashlib
import json
import subprocess
import sys
import threading

BLOCK = 4096


def block_hashes(path):
    """(hash, bytes) of each 4 KiB block of `path`, in order; the last one may be short."""
    with open(path, "rb") as f:
        while b := f.read(BLOCK):
            yield hashlib.blake2b(b, digest_size=16).digest(), b


def floor(old, new, level):
    """The floor's compressed size in bytes, with the block counts that explain it."""
    old_hashes = [h for h, _ in block_hashes(old)]
    old_set = set(old_hashes)
    n_blocks = n_same_offset_diff = n_missing = 0
    missing_distinct = set()
    zc = subprocess.Popen(["zstd", f"-{level}", "-q", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    zout = []
    reader = threading.Thread(target=lambda: zout.append(len(zc.stdout.read())))
    reader.start()
    for i, (h, b) in enumerate(block_hashes(new)):
        n_blocks += 1
        if i >= len(old_hashes) or old_hashes[i] != h:
            n_same_offset_diff += 1
        if h not in old_set:
            n_missing += 1
            missing_distinct.add(h)
            zc.stdin.write(b)
    zc.stdin.close()
    reader.join()
    if zc.wait() != 0:
        sys.exit("zstd failed compressing the floor")
    return {"floor_bytes": zout[0], "block_size": BLOCK, "n_blocks": n_blocks,
            "same_offset_differs": n_same_offset_diff, "missing_from_v1": n_missing,
            "missing_from_v1_distinct": len(missing_distinct)}


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: floor.py OLD NEW LEVEL")
    print(json.dumps(floor(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
