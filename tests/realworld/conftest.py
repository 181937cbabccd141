"""Fixtures for the realworld tests: the artifacts of tests/realworld/harness.py (real s390x
kernels under qemu-system-s390x), cached outside the repository.

The realworld tests run only when selected (`pytest -m realworld`, as `make realworld`
does, or S390_DUMPTOOLS_REALWORLD=1); a plain `pytest` skips them instead of starting a
15-minute build.  When selected and an artifact is missing, the harness is run first; a
harness failure fails the tests with the harness's one-line reason.
"""

from __future__ import annotations

import json
import os
import random
import struct
from dataclasses import dataclass, field

import pytest
from typer.testing import CliRunner

from tests.realworld import harness, initramfs
from tests.realworld.qemu import parse_info_registers

PAGE = 4096


def _selected(config) -> bool:
    return "realworld" in (config.option.markexpr or "") or os.environ.get("S390_DUMPTOOLS_REALWORLD") == "1"


def pytest_collection_modifyitems(config, items):
    if _selected(config):
        return
    skip = pytest.mark.skip(reason="realworld: run with `make realworld` (pytest -m realworld)")
    for item in items:
        if "realworld" in item.keywords:
            item.add_marker(skip)


@dataclass
class Run:
    """One guest configuration's artifacts (harness.step_run)."""

    name: str
    dir: str
    manifest: dict = field(repr=False)
    _pattern: dict[int, int] | None = field(default=None, repr=False, compare=False)

    @property
    def config(self) -> harness.Config:
        return harness.Config(**self.manifest["config"])

    def path(self, key: str) -> str:
        return os.path.join(self.dir, self.manifest["files"][key])

    def qemu_registers(self, key: str = "registers") -> list[dict]:
        """`info registers -a` of a snapshot, parsed anew (manifests of older harness runs lack
        the condition-code state that psw_masks_agree needs)."""
        with open(self.path(key)) as fh:
            return parse_info_registers(fh.read())

    def has(self, key: str) -> bool:
        return key in self.manifest["files"]

    @property
    def size(self) -> int:
        return self.manifest["memory_size"]

    @property
    def release(self) -> str:
        return self.manifest["release"]

    @property
    def crash(self) -> tuple[int, int] | None:
        """(base, size) of /proc/iomem's Crash kernel line."""
        ck = self.manifest.get("crash_kernel")
        return None if ck is None else (ck["start"], ck["end"] - ck["start"] + 1)

    @property
    def text(self) -> tuple[int, int]:
        """[_stext, _etext) from the guest's /proc/kallsyms: read-only after boot."""
        s = self.manifest["symbols"]
        return s["_stext"], s["_etext"]

    def read_image(self, key: str, addr: int, length: int) -> bytes:
        with open(self.path(key), "rb") as fh:
            return os.pread(fh.fileno(), length, addr)

    def pattern_pages(self) -> dict[int, int]:
        """Physical address -> index of each /pattern page found intact in the pre-crash memory
        image; an index seen at two addresses (a stale copy) is left out."""
        if self._pattern is None:
            self._pattern = self._find_pattern_pages()
        return self._pattern

    def _find_pattern_pages(self) -> dict[int, int]:
        tag = self.manifest["pattern"]["tag"]
        found: dict[int, list[int]] = {}
        head = b"S390DT-PAGE "
        with open(self.path("memory"), "rb") as fh:
            fd = fh.fileno()
            for base in range(0, self.size, 1 << 24):
                block = os.pread(fd, 1 << 24, base)
                for off in range(0, len(block), PAGE):
                    if block[off:off + len(head)] != head:
                        continue
                    try:
                        idx = int(block[off + 12:off + 18])
                    except ValueError:
                        continue
                    if block[off:off + PAGE] == initramfs.pattern_page(idx, tag):
                        found.setdefault(idx, []).append(base + off)
        return {addrs[0]: idx for idx, addrs in found.items() if len(addrs) == 1}


def _load_runs() -> list[Run] | None:
    runs = []
    for cfg in harness.CONFIGS:
        d = harness.run_dir(cfg.name)
        try:
            with open(os.path.join(d, "manifest.json")) as fh:
                m = json.load(fh)
        except FileNotFoundError:
            return None
        if any(not os.path.isfile(os.path.join(d, f)) for f in m["files"].values()):
            return None
        runs.append(Run(cfg.name, d, m))
    return runs


def load_run(cfg) -> Run:
    """One configuration's artifacts (of EXTRA_CONFIGS or SUITE_CONFIG), running its harness steps
    first when its manifest is missing."""
    d = harness.run_dir(cfg.name)
    path = os.path.join(d, "manifest.json")
    if not os.path.exists(path):
        try:
            harness.build_all(only=cfg.name)
        except harness.StepError as exc:
            pytest.fail(f"realworld harness FAILED at step {exc.step}: {exc}")
    with open(path) as fh:
        return Run(cfg.name, d, json.load(fh))


@pytest.fixture(scope="session")
def runs() -> list[Run]:
    """Every configuration's artifacts (running the harness first when some are missing)."""
    loaded = _load_runs()
    if loaded is None:
        try:
            harness.build_all()
        except harness.StepError as exc:
            pytest.fail(f"realworld harness FAILED at step {exc.step}: {exc}")
        loaded = _load_runs()
    assert loaded is not None and len(loaded) == len(harness.CONFIGS)
    return loaded


@pytest.fixture(scope="session")
def kdump_runs(runs) -> list[Run]:
    out = [r for r in runs if r.config.kdump]
    assert len(out) >= 2, "the harness defines two kdump configurations"
    return out


class Cli:
    """A suite CLI run in this process (the real command code; no interpreter start per call)."""

    def __init__(self, app):
        self.app = app
        self.runner = CliRunner()

    def __call__(self, *args: str) -> str:
        res = self.runner.invoke(self.app, list(args), catch_exceptions=True)
        if res.exit_code != 0:
            raise AssertionError(f"{' '.join(args)} failed ({res.exit_code}): {res.output.strip()} "
                                 f"{res.exception!r}")
        return res.output

    def json(self, *args: str):
        return json.loads(self(*args, "--json"))


@pytest.fixture(scope="session")
def vmcore_cli() -> Cli:
    from vmcore.cli import app
    return Cli(app)


def sample_addresses(rng: random.Random, ranges: list[tuple[int, int]], n: int, align: int = 8) -> list[int]:
    """n addresses spread over [start, end) ranges (weighted by size), aligned."""
    total = sum(e - s for s, e in ranges)
    out = []
    for _ in range(n):
        x = rng.randrange(total)
        for s, e in ranges:
            if x < e - s:
                out.append((s + x) & ~(align - 1))
                break
            x -= e - s
    return out


def kdump_reader_available() -> bool:
    from vmcore.formats import READERS
    return any("kdump" in r.name for r in READERS)


def u64(data: bytes, off: int = 0) -> int:
    return struct.unpack_from(">Q", data, off)[0]
