"""Real s390x artifacts from Debian, cached outside the repository (never committed)."""

from __future__ import annotations

import glob
import os
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


def debian_kernel() -> str:
    """The stock Debian bookworm s390x kernel image (vmlinuz)."""
    root = fetch_debs("linux-image-6.1.0-[0-9]+-s390x")[0]
    found = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))
    if not found:
        pytest.fail(f"no vmlinuz in {root}")
    return found[0]
