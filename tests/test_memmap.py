"""Issue 10: `vmcore map` draws physical memory; a small dump with known regions gives a known picture."""

import shutil
import subprocess

import pytest

from meminfo_abi.lowcore import LC_OS_INFO
from meminfo_abi.meminfo import MemInfo
from tests.conftest import cli_json
from vmcore.memmap import build_map, render_svg, render_text
from vmcore.model import BytesSource, Dump, DumpAttrs, MemChunk, ZeroSource

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
    # [0,4M) holds data and is [0, crashkernel size) of a kdump dump: the data stays visible,
    # the swap is an overlay on it
    assert m.cells == ["data"] * 4 + ["zero"] * 4 + ["absent"] * 4 + ["crashkernel"] * 4
    assert m.overlays == ["swapped"] * 4 + [None] * 12
    assert m.marks == {0: "L", 2: "M"}
    assert ("crashkernel", 12 * MIB, 16 * MIB) in m.regions
    text = render_text(m, 40).plain
    assert text.splitlines()[0] == "0000000000000000  L█M█░░░░····▓▓▓▓"
    assert "swapped with the crashkernel" in text


def full_dump_with_zero_pages_and_a_filtered_range() -> Dump:
    """16 MiB full dump (the crashkernel 4M@12M is in it, with data at 13M), zero pages at
    [4M,8M) as a zero chunk, and [8M,12M) filtered out by dump level 31."""
    low = bytearray(4 * MIB)
    mi = MemInfo(crashkernel_addr=12 * MIB, crashkernel_size=4 * MIB)
    low[0x200000:0x201000] = mi.to_bytes()
    low[LC_OS_INFO:LC_OS_INFO + 8] = (0x200000).to_bytes(8, "big")
    ck = bytearray(4 * MIB)
    ck[MIB:MIB + 8] = b"S390PAGE"
    return Dump([MemChunk(0, 4 * MIB, BytesSource(bytes(low))),
                 MemChunk(4 * MIB, 4 * MIB, None, "zero"),
                 MemChunk(8 * MIB, 4 * MIB, None, "absent"),
                 MemChunk(12 * MIB, 4 * MIB, BytesSource(bytes(ck)))],
                attrs=DumpAttrs(dump_level=31, excluded=[(8 * MIB, 12 * MIB)]))


def test_full_dump_crashkernel_is_data_zero_pages_are_zero_filtered_pages_excluded():
    d = full_dump_with_zero_pages_and_a_filtered_range()
    assert d.attrs.complete                       # filtered is not incomplete
    m = build_map(d, 16)
    assert m.cells[4:8] == ["zero"] * 4           # zero pages are zero, not "excluded"
    assert m.cells[8:12] == ["excluded"] * 4      # what the dump level left out
    # the crashkernel of a full dump is in the dump: zero and data cells under the overlay
    assert m.cells[12:16] == ["zero", "data", "zero", "zero"]
    assert m.overlays[12:16] == ["crashkernel"] * 4 and m.overlays[:12] == [None] * 12
    text = render_text(m, 40).plain
    assert text.splitlines()[0].endswith("░░░░▒▒▒▒░█░░")
    assert "in the crashkernel (its data is in the dump)" in text


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
    assert d["size"] == 1 << 30 and set(d["cells"]) >= {"data", "zero"}
    # a machine's memory holds its crashkernel: shown as what it holds, under the overlay
    assert "crashkernel" not in d["cells"] and "crashkernel" in d["overlays"]
    assert {a["name"] for a in d["anchors"]} == {"lowcore", "meminfo", "vmcoreinfo"}
    assert svg.read_text().startswith("<svg")
