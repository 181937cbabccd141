"""Scratch files for harnesses whose parser takes a path (on tmpfs, reused for every input)."""

from __future__ import annotations

import atexit
import os
import shutil

from fuzz import sparse
from fuzz.common import scratch_dir

_dir: str | None = None


def paths(n: int = 1, suffix: str = "") -> list[str]:
    global _dir
    if _dir is None:
        _dir = scratch_dir()
        # a replay (tests, --replay) exits normally; libFuzzer workers exit without atexit and the
        # runner removes their directory
        atexit.register(shutil.rmtree, _dir, True)
    return [os.path.join(_dir, f"f{i}{suffix}") for i in range(n)]


def raw_file(data: bytes) -> str:
    """The input as one file, byte for byte."""
    path = paths(1, ".raw")[0]
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def sparse_files(data: bytes, n: int = sparse.MAX_FILES) -> list[str]:
    """The files a fuzz/sparse.py input describes."""
    return sparse.materialize(data, paths(n, ".img"))
