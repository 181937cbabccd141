"""Issue 10: `vmcore map` draws physical memory; a small dump with known regions gives a known picture."""

import shutil
import subprocess

import pytest

from meminfo_abi.lowcore import LC_OS_INFO
from meminfo_abi.meminfo import MemInfo
from tests.conftest import cli_json, run_cli
from vmcore.memmap import build_map, render_svg, render_text
from vmcore.model import BytesSource, Dump, MemChunk, ZeroSource

MIB = 1 << 20


def known_dump() -> Dump:
    """16 MiB: [0,4M) data with the lowcore and a meminfo page naming crashkernel 4M@12M,
    [4M,8M) zero, [8M,12M) absent, [12M,16M) crashkernel (not in the dump)."""
    low = bytearray(4 * MIB)
    for page in range(0x100000, 4 * MIB, 0x100000):
        low[page:page + 8] = b"S390PAGE"
    mi = MemInfo(crashkernel_addr=12 * MIB, crashkernel_size=4 * MIB)
    low[0x200000:0x201000] = mi.to_bytes()
    low[LC_OS_INFO:LC_OS_INFO + 8] = (0x200000).to_bytes(8, "big")
    return Dump([MemChunk(0, 4 * MIB, BytesSource(bytes(low))),
                 MemChunk(4 * MIB, 4 * MIB, ZeroSource(4 * MIB)),
                 MemChunk(8 * MIB, 4 * MIB, None, "absent")])


def test_known_regions_give_a_known_picture():
    m = build_map(known_dump(), 16)
    assert m.cell_size == MIB
    # [0,4M) holds data but is [0, crashkernel size) of a kdump dump: read through the swap
    assert m.cells == ["swapped"] * 4 + ["zero"] * 4 + ["absent"] * 4 + ["crashkernel"] * 4
    assert m.marks == {0: "L", 2: "M"}
    assert ("crashkernel", 12 * MIB, 16 * MIB) in m.regions
    text = render_text(m, 40).plain
    assert text.splitlines()[0] == "0000000000000000  L▚M▚░░░░····▓▓▓▓"


def test_svg_opens_in_a_real_renderer(tmp_path):
    svg = tmp_path / "map.svg"
    svg.write_text(render_svg(build_map(known_dump(), 16), "known"))
    rsvg = shutil.which("rsvg-convert")
    if rsvg is None:
        pytest.fail("rsvg-convert (librsvg2-bin) is not installed")
    png = tmp_path / "map.png"
    subprocess.run([rsvg, str(svg), "-o", str(png)], check=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_map_of_a_machine(machine_1g, tmp_path):
    svg = tmp_path / "m.svg"
    d = cli_json("vmcore.cli", "map", machine_1g, "--svg", str(svg))
    assert d["size"] == 1 << 30 and set(d["cells"]) >= {"data", "zero", "crashkernel"}
    assert {a["name"] for a in d["anchors"]} == {"lowcore", "meminfo", "vmcoreinfo"}
    assert svg.read_text().startswith("<svg")
