"""Boot inputs the demo and the tests make themselves: an initramfs, and the smallest s390x
kernel image kexec-s390 accepts (for machines that cannot fetch Debian's real kernel).
No pytest here: `make demo` runs without the test extras."""

from __future__ import annotations

import gzip
import io
import os
import struct
import sys


def newc_cpio(files: dict[str, tuple[int, bytes]]) -> bytes:
    """An initramfs: a 'newc' cpio archive (name -> (mode, data)), as the kernel unpacks it."""
    out = io.BytesIO()
    ino = 1
    for name, (mode, data) in list(files.items()) + [("TRAILER!!!", (0, b""))]:
        nameb = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nameb), 0]
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.write(nameb + b"\0" * ((-(110 + len(nameb))) % 4))
        out.write(data + b"\0" * ((-len(data)) % 4))
        ino += 1
    return out.getvalue()


def make_initrd(path: str, payload_size: int = 0) -> str:
    """A gzip'd initramfs with an /init script (and optional filler to reach a size)."""
    files = {
        "init": (0o100755, b"#!/bin/sh\necho s390-dumptools kdump initrd\n"
                           b"cp /proc/vmcore /mnt/vmcore 2>/dev/null\n"),
        "dev": (0o040755, b""),
        "proc": (0o040755, b""),
    }
    if payload_size:
        files["filler"] = (0o100644, os.urandom(payload_size))
    with open(path, "wb") as fh:
        fh.write(gzip.compress(newc_cpio(files), compresslevel=1))
    return path


def minimal_kernel(path: str) -> str:
    """An IPL PSW at 0 and an empty parameter area: enough for kexec-s390 to plan and load it;
    it is never executed (the simulated kdump kernel is the suite's own)."""
    image = bytearray(0x20000)
    struct.pack_into(">II", image, 0, 0x00080000, 0x80010000)
    with open(path, "wb") as fh:
        fh.write(image)
    return path


if __name__ == "__main__":   # python -m tests.initrd initrd|kernel PATH [SIZE]
    what, path = sys.argv[1], sys.argv[2]
    if what == "initrd":
        print(make_initrd(path, int(sys.argv[3]) if len(sys.argv) > 3 else 0))
    elif what == "kernel":
        print(minimal_kernel(path))
    else:
        raise SystemExit("usage: python -m tests.initrd initrd|kernel PATH [SIZE]")
