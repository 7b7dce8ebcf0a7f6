#!/usr/bin/env python3
"""Writes a newc cpio archive (the initramfs format) of a directory, every entry owned by root.

Usage: mkcpio.py DIR OUT. Besides DIR's files it adds /dev/console (char 5:1), which the kernel opens for init's
stdin, stdout and stderr before anything has mounted /dev; a plain user cannot make that node in a directory, so it
is written into the archive directly. Entries are sorted and timestamps zeroed, so the same tree gives the same bytes.
"""
import os
import stat
import sys


def header(name, mode, size, ino, nlink=1, rdev=(0, 0)):
    fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = head + name.encode() + b"\0"
    return out + b"\0" * (-len(out) % 4)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    entries = []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(root, name)
            entries.append((os.path.relpath(path, src), path))
    entries.sort()
    ino = 1
    with open(dst + ".tmp", "wb") as out:
        names = {rel for rel, _ in entries}
        if "dev" not in names:
            out.write(header("dev", stat.S_IFDIR | 0o755, 0, ino, nlink=2))
            ino += 1
        out.write(header("dev/console", stat.S_IFCHR | 0o600, 0, ino, rdev=(5, 1)))
        ino += 1
        for rel, path in entries:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                data = os.readlink(path).encode()
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    data = f.read()
            elif stat.S_ISDIR(st.st_mode):
                data = b""
            else:
                sys.exit(f"mkcpio: {path}: only files, directories and symbolic links are archived")
            mode = stat.S_IFMT(st.st_mode) | stat.S_IMODE(st.st_mode)
            nlink = 2 if stat.S_ISDIR(st.st_mode) else 1
            out.write(header(rel, mode, len(data), ino, nlink=nlink))
            out.write(data + b"\0" * (-len(data) % 4))
            ino += 1
        out.write(header("TRAILER!!!", 0, 0, 0))
        out.write(b"\0" * (-out.tell() % 512))
    os.replace(dst + ".tmp", dst)


main()
