"""Issue 6 acceptance, round trips: for every reader/writer pair of the registry, a dump converted
and converted back has identical pages and identical CPU registers (all but the breaking-event
address, which no ELF or kdump dump carries: the s390 kdump kernel's note set has no
NT_S390_LAST_BREAK, and our writers follow it).

The dump is a stand-alone dump of a synthetic machine (zlib ECKD device).  It is first written
in every format (each must hold the machine's memory and CPUs), then every format A is
converted to every format B with `vmcore convert` and back to A; the pages (page_digests) and
the CPU registers of the result equal A's.  Raw memory images carry no registers: they are read
with their CPUs from the ELF copy of the same dump (what --cpus-from is for).
"""

import hashlib
import os

import pytest

from tests.conftest import run_cli
from vmcore.formats import READERS, WRITERS, open_dump, write_dump
from vmcore.model import page_digests

FORMATS = [name for name in ("elf", "s390", "kdump", "raw") if name in WRITERS and name in {r.name for r in READERS}]
PAGE = 4096


def _open(path: str, fmt: str, originals: dict):
    if fmt == "raw":
        return open_dump(path, fmt="raw", cpus_from=originals["elf"][0])
    return open_dump(path)


def _regs(cpu) -> dict:
    """The registers every format carries: all but the breaking-event address, which the s390
    kdump kernel's ELF note set (and so ELF and kdump dumps) leaves out."""
    j = cpu.to_json() if hasattr(cpu, "to_json") else dict(cpu)
    j.pop("last_break")
    return j


def _state(path: str, fmt: str, originals: dict) -> tuple[dict, list]:
    with _open(path, fmt, originals) as d:
        assert d.attrs.format == fmt and d.attrs.complete, d.attrs.incomplete_reason
        return page_digests(d), [_regs(c) for c in d.cpus]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 128 MiB, 3-CPU machine dumped by the stand-alone dumper (zlib ECKD); its memory pages."""
    d = tmp_path_factory.mktemp("matrix")
    m = str(d / "m")
    run_cli("s390_machine.cli", "create", m, "--memory", "128M", "--cpus", "3", "--crashkernel", "32M",
            "--fill", "0.25", check=True)
    dev = str(d / "dev.img")
    run_cli("zipl_sadump.cli", "build", "--device", dev, "--type", "eckd", "--size", "256M", check=True)
    run_cli("zipl_sadump.cli", "ipl", "--device", dev, "--machine", m, "--kdump", "off", "--no-map", check=True)
    pages = {}
    with open(os.path.join(m, "memory.img"), "rb") as fh:
        addr = 0
        while block := fh.read(1 << 22):
            for off in range(0, len(block), PAGE):
                page = block[off:off + PAGE]
                if page.count(0) != PAGE:
                    pages[addr + off] = hashlib.sha256(page).hexdigest()
            addr += len(block)
    from s390_machine.machine import Machine
    with Machine.open(m, "read") as mm:
        cpus = [_regs(c) for c in mm.cpus]
    return {"dir": d, "device": dev, "pages": pages, "cpus": cpus}


@pytest.fixture(scope="module")
def originals(source):
    """The dump written in every format: path, pages, CPUs."""
    out = {}
    with open_dump(source["device"]) as d:
        for fmt in FORMATS:
            p = str(source["dir"] / f"orig.{fmt}")
            write_dump(d, p, fmt)
            out[fmt] = (p,)
    for fmt in FORMATS:
        out[fmt] = (out[fmt][0], *_state(out[fmt][0], fmt, out))
    return out


def test_formats_in_the_matrix():
    assert {"elf", "s390"} <= set(FORMATS)
    if os.path.exists(os.path.join(os.path.dirname(__file__), "..", "vmcore", "formats", "kdump", "__init__.py")):
        assert "kdump" in FORMATS


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_holds_the_machine(source, originals, fmt):
    _path, pages, cpus = originals[fmt]
    assert pages == source["pages"]
    assert cpus == source["cpus"]


@pytest.mark.parametrize("a,b", [(a, b) for a in FORMATS for b in FORMATS])
def test_convert_and_back(source, originals, a, b, tmp_path):
    src, pages, cpus = originals[a]
    there = str(tmp_path / f"there.{b}")
    back = str(tmp_path / f"back.{a}")
    cpus_from = ["--cpus-from", originals["elf"][0]] if a == "raw" else []
    run_cli("vmcore.cli", "convert", src, "-f", b, "-o", there, *(["--from", "raw"] if a == "raw" else []),
            *cpus_from, check=True)
    there_pages, there_cpus = _state(there, b, originals)
    assert there_pages == pages
    if b != "raw":
        assert there_cpus == cpus
    cpus_from = ["--cpus-from", originals["elf"][0]] if b == "raw" else []
    run_cli("vmcore.cli", "convert", there, "-f", a, "-o", back, *(["--from", "raw"] if b == "raw" else []),
            *cpus_from, check=True)
    back_pages, back_cpus = _state(back, a, originals)
    assert back_pages == pages
    assert back_cpus == cpus
