"""Real s390x artifacts from Debian, cached outside the repository (never committed)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT
from tests.initrd import make_initrd, newc_cpio  # noqa: F401  (re-exported for the tests)

CACHE = os.environ.get("S390_DUMPTOOLS_CACHE", os.path.expanduser("~/.cache/s390-dumptools"))


def fetch_debs(*packages: str) -> list[str]:
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch-s390x-debs.sh"), *packages],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"cannot fetch Debian s390x packages {packages}: {proc.stderr.strip()}")
    return proc.stdout.split()


def sysroot(name: str, roots: list[str]) -> str:
    """One directory in the cache holding the unpacked package trees `roots` merged (what
    qemu-s390x-static -L takes), rebuilt only when the set of packages changes."""
    path = os.path.join(CACHE, name)
    stamp = os.path.join(path, ".built-from")
    want = "\n".join(sorted(os.path.basename(r) for r in roots))
    if not os.path.exists(stamp) or open(stamp).read() != want:
        tmp = path + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for r in roots:
            shutil.copytree(r, tmp, symlinks=True, dirs_exist_ok=True)
        with open(os.path.join(tmp, ".built-from"), "w") as fh:
            fh.write(want)
        shutil.rmtree(path, ignore_errors=True)
        os.rename(tmp, path)
    return path


def debian_kernel() -> str:
    """The stock Debian bookworm s390x kernel image (vmlinuz)."""
    root = fetch_debs("linux-image-6.1.0-[0-9]+-s390x")[0]
    found = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))
    if not found:
        pytest.fail(f"no vmlinuz in {root}")
    return found[0]


PEERS_SCRIPT = os.path.join(os.path.dirname(ROOT), "shared", "peers", "s390x-peers.sh")


def s390x_peers() -> dict[str, list[str]]:
    """argv prefixes of today's s390x peers under qemu-user: {"ZGETDUMP": [...] (2.35),
    "MAKEDUMPFILE": [...] (1.7.6)}, unpacked once into the cache by shared/peers/s390x-peers.sh
    (shared/ sits beside the repository, for the developers and for CI)."""
    if shutil.which("qemu-s390x-static") is None:
        pytest.fail("qemu-s390x-static is not installed (apt-get install qemu-user-static)")
    root = os.path.join(CACHE, "s390x-peers")
    if not os.path.exists(PEERS_SCRIPT):
        # a clone without shared/ beside it: the peers the script unpacked into the cache before
        tools = {"ZGETDUMP": "usr/sbin/zgetdump", "MAKEDUMPFILE": "usr/bin/makedumpfile"}
        if all(os.access(os.path.join(root, rel), os.X_OK) for rel in tools.values()):
            return {name: ["qemu-s390x-static", "-L", root, os.path.join(root, rel)] for name, rel in tools.items()}
        pytest.fail(f"{PEERS_SCRIPT} is missing: the s390x peers come with shared/, beside the repository")
    proc = subprocess.run(["bash", PEERS_SCRIPT, root], capture_output=True, text=True)
    found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    if proc.returncode or not {"ZGETDUMP", "MAKEDUMPFILE"} <= set(found):
        pytest.fail(f"cannot unpack the s390x peers: {proc.stderr.strip()}")
    return {name: cmd.split() for name, cmd in found.items()}
