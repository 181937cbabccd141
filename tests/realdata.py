"""Real s390x artifacts from Debian, cached outside the repository (never committed)."""

from __future__ import annotations

import glob
import gzip
import io
import os
import subprocess

import pytest

from tests.conftest import ROOT

CACHE = os.environ.get("S390_DUMPTOOLS_CACHE", os.path.expanduser("~/.cache/s390-dumptools"))


def fetch_debs(*packages: str) -> list[str]:
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch-s390x-debs.sh"), *packages],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"cannot fetch Debian s390x packages {packages}: {proc.stderr.strip()}")
    return proc.stdout.split()


def debian_kernel() -> str:
    """The stock Debian bookworm s390x kernel image (vmlinuz)."""
    root = fetch_debs("linux-image-6.1.0-[0-9]+-s390x")[0]
    found = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))
    if not found:
        pytest.fail(f"no vmlinuz in {root}")
    return found[0]


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
