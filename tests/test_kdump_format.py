"""vmcore.formats.kdump + meminfo_abi.diskdump: kdump-compressed dumps written and read.

Peers on the other side: libkdumpfile (Debian python3-libkdumpfile) and drgn
read what we write; a file laid out by QEMU's conventions (dump-guest-memory
-z, guest byte order, flattened and not) is built here and read by us.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import zlib

import pytest

from tests.conftest import exercise_dump, peer_drgn, peer_kdumpfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meminfo_abi import diskdump as dd
from dumpkit.errors import BadInputError, DumpToolError, IncompleteDumpError
from dumpkit.fileio import sparse_copy
from s390_machine.memory import PhysicalMemory
from s390_machine.state import load_state
from tests.test_elf_format import (
    assert_drgn_reads_the_same, qemu_cpu_notes, regs_without_last_break, sample_addresses, small_dump,
)
from vmcore.formats import READERS, WRITERS, open_dump, probe_format, reader_for, write_dump
from vmcore.formats import kdump as kc
from vmcore.formats.flattened import FlatFile
from vmcore.model import BytesSource, Dump, MappedSource, MemChunk, page_digests

MiB, GiB = 1 << 20, 1 << 30
PS = 4096
TS = 1_700_000_000.25


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def header_of(path: str):
    with open(path, "rb") as fh:
        head = fh.read(PS + dd.KDUMP_SUB_HEADER_SIZE)
    order = dd.detect_byte_order(head)
    L = dd.layouts(order)
    return order, L.disk_dump_header.parse(head[:dd.DISK_DUMP_HEADER_SIZE]), L.kdump_sub_header.parse(head[PS:])


# ---------------------------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------------------------

def test_layout_sizes_and_offsets():
    for L in (dd.BE, dd.LE):
        assert L.disk_dump_header.sizeof() == dd.DISK_DUMP_HEADER_SIZE == 0x1D0
        assert L.kdump_sub_header.sizeof() == dd.KDUMP_SUB_HEADER_SIZE == 0x68
        assert L.page_desc.sizeof() == L.page_desc_struct.size == dd.PAGE_DESC_SIZE == 24
    assert dd.new_utsname.sizeof() == 6 * 65
    assert dd.makedumpfile_header.sizeof() == dd.MDF_HEADER_SIZE == 4096
    assert dd.makedumpfile_data_header.sizeof() == dd.MDF_DATA_HEADER.size == 16
    raw = dd.BE.disk_dump_header.build(dict(
        signature=dd.KDUMP_SIGNATURE, header_version=6,
        utsname=dict(sysname="Linux", nodename="n", release="r", version="v", machine="s390x", domainname="d"),
        timestamp=dict(tv_sec=0x1122334455667788, tv_usec=0x99), status=0x21, block_size=4096, sub_hdr_size=2,
        bitmap_blocks=16, max_mapnr=0xAABBCCDD, total_ram_blocks=0, device_blocks=0, written_blocks=0,
        current_cpu=0, nr_cpus=0x77))
    assert raw[0xC:0x11] == b"Linux" and raw[0x110:0x115] == b"s390x" and raw[0x151:0x152] == b"d"
    assert raw[0x198:0x1A0] == bytes.fromhex("1122334455667788")
    assert raw[0x1A8:0x1AC] == (0x21).to_bytes(4, "big") and raw[0x1AC:0x1B0] == (4096).to_bytes(4, "big")
    assert raw[0x1B8:0x1BC] == bytes.fromhex("aabbccdd") and raw[0x1CC:0x1D0] == (0x77).to_bytes(4, "big")
    sub = dd.LE.kdump_sub_header.build(dict(
        phys_base=1, dump_level=31, split=1, start_pfn=2, end_pfn=3, offset_vmcoreinfo=4, size_vmcoreinfo=5,
        offset_note=6, size_note=7, offset_eraseinfo=8, size_eraseinfo=9, start_pfn_64=10, end_pfn_64=11,
        max_mapnr_64=12))
    assert sub[8:12] == (31).to_bytes(4, "little") and sub[0x30:0x38] == (6).to_bytes(8, "little")
    assert sub[0x60:0x68] == (12).to_bytes(8, "little")
    # the hot-path packer is derived from the declaration and agrees with it
    for L in (dd.BE, dd.LE):
        d = dict(offset=0x123456789, size=4000, flags=dd.DUMP_DH_COMPRESSED_ZLIB, page_flags=0)
        assert L.page_desc.build(d) == L.page_desc_struct.pack(*d.values())
    assert dd.flat_record_header(5, 7) == dd.MDF_DATA_HEADER.pack(5, 7) == (5).to_bytes(8, "big") + (7).to_bytes(8, "big")
    assert dd.FLAT_END_RECORD == b"\xff" * 16
    assert dd.flat_header_bytes()[:16] == b"makedumpfile\0\0\0\0"
    assert (dd.DUMP_DH_COMPRESSED_ZLIB, dd.DUMP_DH_COMPRESSED_LZO, dd.DUMP_DH_COMPRESSED_SNAPPY,
            dd.DUMP_DH_COMPRESSED_INCOMPLETE, dd.DUMP_DH_COMPRESSED_ZSTD) == (1, 2, 4, 8, 0x20)


def test_bitmaps_are_lsb_first():
    buf = bytearray(4)
    dd.bitmap_set_run(buf, 0, 3, 13)
    assert buf == bytes([0b11111000, 0b00011111, 0, 0])
    assert list(dd.bitmap_runs(buf)) == [(3, 13)]
    assert list(dd.bitmap_runs(bytes([0x01, 0x80]), 8)) == [(8, 9), (23, 24)]


def test_registry_has_kdump():
    assert "kdump" in WRITERS and "kdump" in [r.name for r in READERS]


# ---------------------------------------------------------------------------------------------
# round trip from a created machine
# ---------------------------------------------------------------------------------------------

VARIANTS = {
    "zlib": dict(compress="zlib"),
    "none": dict(compress="none"),
    "zlib-flat": dict(compress="zlib", flattened=True),
    "none-flat": dict(compress="none", flattened=True),
}


@pytest.fixture(scope="module")
def machine_ref(machine_1g):
    """(machine dir, its page digests, its CPUs, its VMCOREINFO)."""
    with open_dump(machine_1g) as m:
        return machine_1g, page_digests(m), m.cpus, m.attrs.vmcoreinfo_raw


@pytest.fixture(scope="module")
def written(machine_1g, tmp_path_factory):
    """name -> (path, layout, progress total, present bytes) for every variant."""
    out = {}
    base = tmp_path_factory.mktemp("kdump")
    with open_dump(machine_1g) as d:
        for name, opts in VARIANTS.items():
            path = str(base / f"{name}.kdump")
            done = []
            lay = write_dump(d, path, "kdump", progress=done.append, timestamp=TS, **opts)
            out[name] = (path, lay, sum(done), d.present_bytes)
    return out


@pytest.mark.parametrize("name", list(VARIANTS))
def test_round_trip_pages_cpus_vmcoreinfo(written, machine_ref, name):
    machine, digests, cpus, vmcoreinfo = machine_ref
    path, lay, progress_total, present = written[name]
    assert progress_total == present == 1 * GiB
    assert probe_format(path).name == "kdump"
    with open_dump(path) as k:
        assert k.attrs.format == "kdump" and k.attrs.complete, k.attrs.incomplete_reason
        assert k.attrs.extra["flattened"] == name.endswith("flat")
        assert [(c.start, c.size, c.kind) for c in k.chunks] == [(0, 1 * GiB, "ram")]
        assert page_digests(k) == digests
        assert len(k.cpus) == len(cpus) == 2
        for a, b in zip(cpus, k.cpus):
            assert a.vxrs is not None and b.vxrs == a.vxrs
            assert regs_without_last_break(b) == regs_without_last_break(a)
        assert k.attrs.vmcoreinfo_raw == vmcoreinfo
        assert k.attrs.vmcoreinfo_source == "kdump sub header"
        assert k.attrs.extra["compression"] == [VARIANTS[name]["compress"]]
        assert k.attrs.extra["utsname"]["release"] == "6.1.0-s390dumptools"
        # a spot check of raw bytes against the machine (digests skip zero pages)
        with open_dump(machine) as m:
            for a in (0, 0x400000, 0x30000000 - 64, 1 * GiB - 4096):
                assert k.read(a, 64) == m.read(a, 64)


def test_header_fields_as_makedumpfile_writes_them(written):
    path, lay, _, _ = written["zlib"]
    order, h, sub = header_of(path)
    assert order == ">" and h.signature == b"KDUMP   " and h.header_version == 6
    assert (h.utsname.sysname, h.utsname.release, h.utsname.machine) == ("Linux", "6.1.0-s390dumptools", "s390x")
    assert h.utsname.nodename == "s390-sim"                # from init_uts_ns in memory
    assert (h.timestamp.tv_sec, h.timestamp.tv_usec) == (1_700_000_000, 250000)
    assert h.status == dd.DUMP_DH_COMPRESSED_ZLIB and h.block_size == PS and h.nr_cpus == 2
    assert h.max_mapnr == sub.max_mapnr_64 == GiB // PS
    assert h.bitmap_blocks == 2 * (GiB // PS // 8 // PS) == 16
    # zero pages kept (on the one shared zero page): nothing was left out, so level 0 as makedumpfile
    # -d 0 records; exclude_zero writes level 1 (test_exclude_zero_leaves_zero_pages_out_of_bitmap_2)
    assert sub.dump_level == 0 and sub.split == 0 and sub.offset_note == PS + 0x68
    assert sub.offset_note < sub.offset_vmcoreinfo < sub.offset_note + sub.size_note
    assert h.sub_hdr_size == -(-(0x68 + sub.size_note) // PS)
    with open(path, "rb") as fh:
        fh.seek(sub.offset_vmcoreinfo)
        assert fh.read(sub.size_vmcoreinfo).startswith(b"OSRELEASE=6.1.0-s390dumptools\n")
        fh.seek((1 + h.sub_hdr_size) * PS)
        bitmaps = fh.read(h.bitmap_blocks * PS)
        half = len(bitmaps) // 2
        assert bitmaps[:half] == bitmaps[half:] == b"\xff" * half      # every page, all dumped
        # zero pages share one descriptor: a raw zero page right after the table
        offset_data = lay.offset_desc + lay.num_dumpable * 24
        fh.seek(lay.offset_desc)
        descs = list(dd.BE.page_desc_struct.iter_unpack(fh.read(lay.num_dumpable * 24)))
    zero = (offset_data, PS, 0, 0)
    assert sum(d == zero for d in descs) == lay.pages_zero > 200000
    data = [d for d in descs if d != zero]
    assert all(d[2] in (0, 1) and (d[2] == 0) == (d[1] == PS) for d in data)
    assert [d[0] for d in data] == sorted(d[0] for d in data) and data[0][0] == offset_data + PS
    assert lay.file_size == os.path.getsize(path) == data[-1][0] + data[-1][1]


def test_none_is_uncompressed(written):
    path, lay, _, _ = written["none"]
    _, h, _ = header_of(path)
    assert h.status == 0 and lay.pages_compressed == 0 and lay.pages_raw > 0


def test_uncompressed_layout_is_known_without_reading_memory(tmp_path):
    """compress="none" with zero pages kept: a page is data where a data range touches it (a zero
    page read from a file's data stays raw), so LazyKdump, which reads no memory, and the mount's
    view of it give the written file byte for byte, bitmaps and descriptors served from the page
    runs at any offset; unaligned chunks, zero chunks and gaps (allow_incomplete) included."""
    from vmcore.formats.kdump.lazy import LazyKdump
    from vmcore.mount import KdumpView
    from vmcore.model import FileSource
    rng = random.Random(20)
    img = tmp_path / "mem.img"
    img.write_bytes(bytes(0x3000) + os.urandom(0x1000) + bytes(0x2000) + b"y" * 0x2000)
    data = bytes(range(256)) * 40
    files = FileSource(str(img))
    dumps = {
        "mixed": Dump([MemChunk(0x100, len(data), BytesSource(data)),
                       MemChunk(0x100 + len(data), 0x1000, None, "zero"),
                       MemChunk(0x5010, 0x20, BytesSource(b"x" * 0x20)),
                       MemChunk(0x9000, 0x8000, files.region(0, 0x8000))], resources=[files]),
        "gaps": Dump([MemChunk(0, 8192, BytesSource(b"a" * 8192)), MemChunk(8192, 8192, None, "absent"),
                      MemChunk(16384, 8192, BytesSource(os.urandom(8192))), MemChunk(24576, 8192, None, "absent")]),
    }
    for name, d in dumps.items():
        for order in (">", "<"):
            path = str(tmp_path / f"{name}.kdump")
            lay = write_dump(d, path, "kdump", timestamp=0, compress="none", allow_incomplete=True, byteorder=order)
            ref = open(path, "rb").read()
            lazy = LazyKdump(d, timestamp=0, allow_incomplete=True, byteorder=order)
            assert lazy.size == len(ref) == lay.file_size and lazy.lay.num_dumpable == lay.num_dumpable
            assert (lazy.lay.pages_raw, lazy.lay.pages_zero) == (lay.pages_raw, lay.pages_zero)
            view = KdumpView.__new__(KdumpView)       # the mount's view, with this plan
            view.__dict__.update(dump=d, plan=lazy, size=lazy.size)
            from vmcore.mount import _Memory
            view.memory = _Memory([c for c in d.chunks if c.kind == "ram"], 1 << 20)
            assert view.read(0, lazy.size) == ref, (name, order)
            for _ in range(200):
                off, n = rng.randrange(len(ref)), rng.choice([1, 7, 24, 4096, 5000, 20000])
                assert view.read(off, n) == ref[off:off + n], (name, order, off, n)
    with open_dump(str(tmp_path / "mixed.kdump")) as k:
        # the image holds no holes: its zero pages are data, written raw, and read back as zeros
        assert k.read(0x9000, 0x8000) == img.read_bytes()[:0x8000]
    files.close()


def test_flattened_is_the_same_file_as_records(written, tmp_path):
    """Rebuilding the -F stream (what makedumpfile -R does) gives the plain file byte for byte."""
    flat_path, _, _, _ = written["zlib-flat"]
    plain_path, _, _, _ = written["zlib"]
    with open(flat_path, "rb") as fh:
        assert fh.read(16) == b"makedumpfile\0\0\0\0"
    f = FlatFile(flat_path)
    try:
        assert not f.truncated and f.size == os.path.getsize(plain_path)
        rebuilt = str(tmp_path / "rebuilt")
        with open(rebuilt, "wb") as out:
            for pos in range(0, f.size, 1 << 22):
                out.write(f.pread(1 << 22, pos))
    finally:
        f.close()
    assert sha256_file(rebuilt) == sha256_file(plain_path)


def test_serial_and_parallel_output_are_identical(machine_1g, tmp_path):
    outs = []
    with open_dump(machine_1g) as d:
        for threads, batch, window in ((1, 256, None), (4, 7, 3), (2, 256, None)):
            p = str(tmp_path / f"t{threads}-{batch}.kdump")
            write_dump(d, p, "kdump", timestamp=TS, threads=threads, batch_pages=batch, window=window)
            outs.append(sha256_file(p))
        for threads in (1, 3):
            p = str(tmp_path / f"x{threads}.kdump")
            write_dump(d, p, "kdump", timestamp=TS, threads=threads, batch_pages=5, exclude_zero=True,
                       flattened=True)
            outs.append(sha256_file(p))
    assert outs[0] == outs[1] == outs[2]
    assert outs[3] == outs[4]


def test_the_batch_compressor_writes_the_file_page_by_page_would(machine_1g, tmp_path, monkeypatch):
    """native.deflate_pages (a batch without the GIL) makes byte for byte the file zlib-ng's
    compress() page by page makes: the same streams, the same raw pages, the same descriptors."""
    import native
    from vmcore.formats.kdump import writer
    assert native.zlib_ng_deflate(), "the extension and zlib-ng are installed for the tests"
    outs = []
    with open_dump(machine_1g) as d:
        for batched in (True, False):
            if not batched:
                monkeypatch.setattr(writer, "batch_compressor", lambda name, level: None)
            p = str(tmp_path / f"b{batched}.kdump")
            lay = write_dump(d, p, "kdump", timestamp=TS, threads=2, batch_pages=37)
            outs.append((sha256_file(p), lay.pages_compressed, lay.pages_raw))
    assert outs[0] == outs[1]
    assert outs[0][1] > 0


def test_exclude_zero_leaves_zero_pages_out_of_bitmap_2(written, machine_ref, tmp_path):
    machine, digests, _, _ = machine_ref
    p = str(tmp_path / "ez.kdump")
    with open_dump(machine) as d:
        lay = write_dump(d, p, "kdump", exclude_zero=True, timestamp=TS)
    assert lay.num_dumpable == len(digests) < lay.desc_slots + 1
    assert os.path.getsize(p) < os.path.getsize(written["zlib"][0])
    _, h, sub = header_of(p)
    assert sub.dump_level == 1
    with open_dump(p) as k:
        assert k.attrs.complete and page_digests(k) == digests
        assert k.read(0x30000000, 16) == bytes(16)            # crashkernel memory: zero, not absent


def test_unaligned_chunks_zero_chunks_and_streams(tmp_path):
    """Chunks that start or end inside a page fill whole pages; a zero chunk is present and zero;
    absent ranges are refused unless allowed (then carried as missing and flagged); the flattened form
    can go to any binary stream."""
    import io
    data = bytes(range(256)) * 40
    d = Dump([MemChunk(0x100, len(data), BytesSource(data)), MemChunk(0x100 + len(data), 0x1000, None, "zero"),
              MemChunk(0x5010, 0x20, BytesSource(b"x" * 0x20))])
    for opts in ({}, {"exclude_zero": True}, {"compress": "none"}):
        p = str(tmp_path / "u.kdump")
        write_dump(d, p, "kdump", timestamp=0, **opts)
        with open_dump(p) as k:
            assert [(c.start, c.size) for c in k.chunks] == [(0, 0x4000), (0x5000, 0x1000)]
            assert k.read(0, 0x4000) == bytes(0x100) + data + bytes(0x4000 - 0x100 - len(data))
            assert k.read(0x5000, 0x1000) == bytes(0x10) + b"x" * 0x20 + bytes(0xFD0)
    gap = Dump([MemChunk(0, 8192, BytesSource(b"a" * 8192)), MemChunk(8192, 8192, None, "absent"),
                MemChunk(16384, 4096, BytesSource(b"b" * 4096))])
    with pytest.raises(IncompleteDumpError, match="0x2000-0x3fff"):
        write_dump(gap, str(tmp_path / "g.kdump"), "kdump")
    write_dump(gap, str(tmp_path / "g.kdump"), "kdump", allow_incomplete=True)
    with open_dump(str(tmp_path / "g.kdump")) as k:
        # the gap travels as a gap: in bitmap 2 with empty descriptors, read back as missing
        assert [(c.start, c.size, c.kind) for c in k.chunks] == [(0, 8192, "ram"), (8192, 8192, "absent"),
                                                                  (16384, 4096, "ram")]
        assert k.missing_ranges() == [(8192, 16384)]
        assert not k.attrs.complete and "status flag" in k.attrs.incomplete_reason
        assert "never written" in k.attrs.incomplete_reason and k.read(16384, 4) == b"bbbb"
    # gaps in the middle and at the end, the file then cut inside the page data: the pages
    # between the gaps stay readable, everything missing is named
    gaps = Dump([MemChunk(0, 8192, BytesSource(b"a" * 8192)), MemChunk(8192, 8192, None, "absent"),
                 MemChunk(16384, 8192, BytesSource(os.urandom(8192))), MemChunk(24576, 8192, None, "absent")])
    g2 = str(tmp_path / "g2.kdump")
    write_dump(gaps, g2, "kdump", allow_incomplete=True, compress="none")
    with open_dump(g2) as k:
        assert k.missing_ranges() == [(8192, 16384), (24576, 32768)]
        assert k.read(16384, 8192) == gaps.read(16384, 8192)
    os.truncate(g2, os.path.getsize(g2) - 4096)          # the last data page is lost
    with open_dump(g2) as k:
        assert k.missing_ranges() == [(8192, 16384), (20480, 32768)]
        assert k.read(16384, 4096) == gaps.read(16384, 4096)
    buf = io.BytesIO()
    write_dump(d, buf, "kdump", flattened=True, timestamp=0)
    write_dump(d, str(tmp_path / "f.kdump"), "kdump", flattened=True, timestamp=0)
    assert buf.getvalue() == (tmp_path / "f.kdump").read_bytes()
    with pytest.raises(DumpToolError, match="stream"):
        write_dump(d, io.BytesIO(), "kdump")
    with open_dump(str(tmp_path / "f.kdump")) as k:
        assert k.read(0x100, len(data)) == data
    with Dump([]) as empty:
        write_dump(empty, str(tmp_path / "e.kdump"), "kdump")
    with open_dump(str(tmp_path / "e.kdump")) as k:
        assert k.chunks == [] and k.attrs.complete


def test_other_codecs_round_trip(tmp_path):
    with small_dump() as d:
        want = page_digests(d)
        for name in ("lzo", "snappy", "zstd"):      # all three are test dependencies: none may be missing
            kc.compressor(name)
            p = str(tmp_path / f"{name}.kdump")
            lay = write_dump(d, p, "kdump", compress=name, timestamp=TS)
            assert lay.pages_compressed > 0
            with open_dump(p) as k:
                assert page_digests(k) == want and k.attrs.extra["compression"] == [name]
                assert k.read(0, 32768) == d.read(0, 32768)


def test_missing_decompressor_names_the_module(tmp_path, monkeypatch):
    import lzo  # noqa: F401  (python-lzo, a test dependency)
    p = str(tmp_path / "lzo.kdump")
    with small_dump() as d:
        write_dump(d, p, "kdump", compress="lzo", timestamp=TS)
    monkeypatch.setitem(sys.modules, "lzo", None)
    with open_dump(p) as k:
        with pytest.raises(BadInputError, match="python-lzo"):
            page_digests(k)


# ---------------------------------------------------------------------------------------------
# peers: libkdumpfile, drgn
# ---------------------------------------------------------------------------------------------

def kdumpfile_module():
    return peer_kdumpfile()


@pytest.mark.parametrize("byteorder", [">", "<"])
def test_libkdumpfile_reads_the_same_bytes(machine_1g, written, tmp_path, byteorder):
    """libkdumpfile takes the byte order from the header's sanity (either works), the
    architecture from utsname.machine and VMCOREINFO from the notes."""
    kdumpfile = kdumpfile_module()
    if byteorder == ">":
        path = written["zlib"][0]
    else:
        path = str(tmp_path / "le.kdump")
        with open_dump(machine_1g) as d:
            write_dump(d, path, "kdump", byteorder="<", timestamp=TS)
    k = kdumpfile.kdumpfile(path)
    assert k.attr["file.format"] == "diskdump" and k.attr["arch.name"] == "s390x"
    assert k.attr["linux.uts.release"] == "6.1.0-s390dumptools"
    with open_dump(path) as d:
        assert d.attrs.extra["byte_order"] == ("big-endian" if byteorder == ">" else "little-endian")
        addrs = sample_addresses(d, 120)
        assert len(addrs) >= 100
        for a in addrs:
            assert bytes(k.read(kdumpfile.KDUMP_KPHYSADDR, a, 64)) == d.read(a, 64), hex(a)


def test_libkdumpfile_and_the_flattened_form(written):
    """libkdumpfile reads -F streams since 0.5.2; Debian's 0.5.1 refuses them as an unknown format."""
    kdumpfile = kdumpfile_module()
    path = written["zlib-flat"][0]
    try:
        k = kdumpfile.kdumpfile(path)
    except kdumpfile.exceptions.NotImplementedException as exc:
        assert "Unknown file format" in str(exc)
        pytest.skip(f"this libkdumpfile cannot read flattened files: {exc}")
    with open_dump(path) as d:
        for a in sample_addresses(d, 100, seed=3):
            assert bytes(k.read(kdumpfile.KDUMP_KPHYSADDR, a, 64)) == d.read(a, 64), hex(a)


@pytest.mark.parametrize("flattened", [False, True])
def test_drgn_reads_the_same_bytes(machine_1g, tmp_path, flattened):
    """drgn opens kdump files through its libkdumpfile (flattened ones too, with a warning).
    As for ELF, the synthetic VMCOREINFO needs SYMBOL(swapper_pg_dir) for drgn."""
    drgn = peer_drgn()
    path = str(tmp_path / "drgn.kdump")
    with open_dump(machine_1g) as d:
        d.attrs.set_vmcoreinfo(d.attrs.vmcoreinfo_raw + b"SYMBOL(swapper_pg_dir)=800000\n", "machine + test")
        write_dump(d, path, "kdump", flattened=flattened, timestamp=TS)
    assert_drgn_reads_the_same(drgn, path)


# ---------------------------------------------------------------------------------------------
# QEMU dump-guest-memory -z (kdump-zlib / kdump-raw-zlib) conventions
# ---------------------------------------------------------------------------------------------

def build_qemu_kdump(machine: str, path: str, size: int, order: str = ">", flattened: bool = False) -> dict:
    """A kdump-compressed file as QEMU writes it for an s390x guest of `size` bytes (ref §4):
    header version 6 in the guest's byte order, utsname with only machine set, timestamp 0,
    dump_level 1, nr_cpus, sub header with offset_note right after it and no VMCOREINFO
    (s390x guests have no vmcoreinfo device), QEMU's per-CPU note order, identical bitmaps,
    one shared zero page, zlib level 1 per page with raw fallback.  flattened=True is the
    kdump-zlib stream: records as QEMU's write_buffer emits them, header first."""
    state = load_state(machine)
    mem = PhysicalMemory(os.path.join(machine, "memory.img"))
    L = dd.layouts(order)
    notes = b"".join(qemu_cpu_notes(c, i) for i, c in enumerate(state.cpus))
    npages = size // PS
    sub_hdr_size = -(-(0x68 + len(notes)) // PS)
    half = dd.bitmap_half_blocks(npages, PS)
    off_bitmap = (1 + sub_hdr_size) * PS
    off_desc = off_bitmap + 2 * half * PS
    off_data = off_desc + npages * 24
    head = L.disk_dump_header.build(dict(
        signature=b"KDUMP   ", header_version=6,
        utsname=dict(sysname="", nodename="", release="", version="", machine="s390x", domainname=""),
        timestamp=dict(tv_sec=0, tv_usec=0), status=dd.DUMP_DH_COMPRESSED_ZLIB, block_size=PS,
        sub_hdr_size=sub_hdr_size, bitmap_blocks=2 * half, max_mapnr=npages, total_ram_blocks=0,
        device_blocks=0, written_blocks=0, current_cpu=0, nr_cpus=len(state.cpus)))
    sub = L.kdump_sub_header.build(dict(
        phys_base=0, dump_level=1, split=0, start_pfn=0, end_pfn=0, offset_vmcoreinfo=0, size_vmcoreinfo=0,
        offset_note=PS + 0x68, size_note=len(notes), offset_eraseinfo=0, size_eraseinfo=0, start_pfn_64=0,
        end_pfn_64=0, max_mapnr_64=npages))
    bitmap = bytearray(half * PS)
    dd.bitmap_set_run(bitmap, 0, 0, npages)
    zero = L.page_desc_struct.pack(off_data, PS, 0, 0)
    descs, data = bytearray(), bytearray(PS)           # the shared zero page comes first
    pos = off_data + PS
    raw_pages = 0
    rnd = random.Random(5).randbytes(PS)
    for pfn in range(npages):
        page = mem.read(pfn * PS, PS)
        if pfn == npages - 3:
            page = rnd                                   # one page that does not compress
        if not any(page):
            descs += zero
            continue
        c = zlib.compress(page, 1)
        if len(c) < PS:
            descs += L.page_desc_struct.pack(pos, len(c), dd.DUMP_DH_COMPRESSED_ZLIB, 0)
        else:
            c = page
            raw_pages += 1
            descs += L.page_desc_struct.pack(pos, PS, 0, 0)
        data += c
        pos += len(c)
    mem.close()
    pieces = [(0, head), (PS, sub + notes), (off_bitmap, bytes(bitmap)), (off_bitmap + half * PS, bytes(bitmap))]
    # QEMU flushes its descriptor and data caches as they fill: interleaved records
    step = 64 * 1024
    for i in range(0, max(len(descs), len(data)), step):
        if i < len(descs):
            pieces.append((off_desc + i, bytes(descs[i:i + step])))
        if i < len(data):
            pieces.append((off_data + i, bytes(data[i:i + step])))
    with open(path, "wb") as fh:
        if flattened:
            fh.write(dd.flat_header_bytes())
            for off, b in pieces:
                fh.write(dd.flat_record_header(off, len(b)) + b)
            fh.write(dd.FLAT_END_RECORD)
        else:
            for off, b in pieces:
                fh.seek(off)
                fh.write(b)
    return dict(raw_pages=raw_pages, random_page=(npages - 3) * PS, random=rnd)


@pytest.mark.parametrize("order,flattened", [(">", False), (">", True), ("<", False)])
def test_qemu_kdump_is_read(machine_1g, tmp_path, order, flattened):
    size = 64 * MiB
    path = str(tmp_path / "qemu.kdump")
    info = build_qemu_kdump(machine_1g, path, size, order, flattened)
    assert info["raw_pages"] >= 1
    assert probe_format(path).name == "kdump"
    with open_dump(path) as q, open_dump(machine_1g) as m:
        assert q.attrs.complete and [(c.start, c.size, c.kind) for c in q.chunks] == [(0, size, "ram")]
        assert q.attrs.extra["utsname"]["machine"] == "s390x" and q.attrs.extra["utsname"]["release"] == ""
        assert q.attrs.timestamp is None                     # QEMU writes 0
        # no VMCOREINFO in the file: found in memory through lowcore (0xE18 meminfo, 0xE0C note)
        assert q.attrs.vmcoreinfo_raw.rstrip(b"\0") == m.attrs.vmcoreinfo_raw.rstrip(b"\0")
        assert q.attrs.vmcoreinfo_source != "kdump sub header"
        for a, b in zip(m.cpus, q.cpus):
            assert regs_without_last_break(b) == regs_without_last_break(a)
        assert q.read(info["random_page"], PS) == info["random"]
        qd, md = page_digests(q), page_digests(m, 0, size)
        qd.pop(info["random_page"])
        md.pop(info["random_page"], None)
        assert qd == md


def test_flattened_records_out_of_order_and_overwritten(tmp_path):
    """makedumpfile -F rewrites the header at the end; later records win."""
    with small_dump() as d:
        plain = str(tmp_path / "p.kdump")
        write_dump(d, plain, "kdump", timestamp=TS)
    blob = open(plain, "rb").read()
    recs = [(0, bytes(PS))]                                             # placeholder header first
    cut = [PS, 3 * PS, len(blob)]
    recs += [(cut[i], blob[cut[i]:cut[i + 1]]) for i in (1, 0)]         # out of order
    recs += [(0, blob[:PS]), (100, blob[100:50000])]                    # header rewritten, overlap
    flat = str(tmp_path / "f.kdump")
    with open(flat, "wb") as fh:
        fh.write(dd.flat_header_bytes())
        for off, b in recs:
            fh.write(dd.flat_record_header(off, len(b)) + b)
        fh.write(dd.FLAT_END_RECORD)
    f = FlatFile(flat)
    try:
        assert f.pread(len(blob), 0) == blob and f.records == 5
    finally:
        f.close()
    with open_dump(flat) as k, small_dump() as d:
        assert page_digests(k) == page_digests(d)


@pytest.mark.parametrize("seed", range(12))
def test_flattened_index_of_random_records_is_the_rebuilt_file(tmp_path, seed):
    """Issue 16: the O(N log N) index gives what writing the records in order into a file gives
    (last writer wins, holes are zeros), for records in any order, overlapping or not, few out of
    order (spliced into the index) or many (merged with it)."""
    rnd = random.Random(seed)
    size = 3000
    rebuilt = bytearray(size)
    covered = 0
    flat = tmp_path / "r.flat"
    with open(flat, "wb") as fh:
        fh.write(dd.flat_header_bytes())
        ascending = seed % 3 == 0             # mostly in order, as makedumpfile writes
        for i in range(rnd.choice((5, 60, 400, 3000))):
            off = rnd.randrange(size - 1)
            if ascending and rnd.random() < 0.9:
                off = min(size - 2, i * size // 3000)
            n = rnd.randrange(1, min(size - off, rnd.choice((4, 40, 700))) + 1)
            data = rnd.randbytes(n)
            rebuilt[off:off + n] = data
            covered = max(covered, off + n)
            fh.write(dd.flat_record_header(off, n) + data)
        fh.write(dd.FLAT_END_RECORD)
    f = FlatFile(str(flat))
    try:
        assert f.size == covered
        assert f.pread(size, 0) == bytes(rebuilt[:covered])
        assert all(e <= s for e, s in zip(f.ends, f.starts[1:]))      # sorted, no overlap
        for _ in range(50):
            a = rnd.randrange(covered)
            n = rnd.randrange(1, 200)
            assert f.pread(n, a) == bytes(rebuilt[a:min(a + n, covered)])
    finally:
        f.close()


def test_too_many_flattened_records_out_of_order_are_refused(tmp_path, monkeypatch):
    """Issue 16: records out of order are bounded (MAX_LATE_RECORDS, 1 Mi; 10 here)."""
    from vmcore.formats import flattened as fl
    monkeypatch.setattr(fl, "MAX_LATE_RECORDS", 10)
    flat = tmp_path / "late.flat"
    with open(flat, "wb") as fh:
        fh.write(dd.flat_header_bytes())
        for off in range(100, 0, -1):
            fh.write(dd.flat_record_header(off * 8, 8) + bytes(8))
        fh.write(dd.FLAT_END_RECORD)
    with pytest.raises(BadInputError, match="more than 10 flattened records out of order"):
        FlatFile(str(flat))


def test_a_flattened_elf_is_not_claimed(tmp_path):
    p = tmp_path / "flat.elf"
    p.write_bytes(dd.flat_header_bytes() + dd.flat_record_header(0, 64) + b"\x7fELF" + bytes(60) + dd.FLAT_END_RECORD)
    assert probe_format(p) is None


# ---------------------------------------------------------------------------------------------
# split dumps
# ---------------------------------------------------------------------------------------------

def test_split_dump_is_assembled(machine_ref, tmp_path):
    machine, digests, cpus, _ = machine_ref
    paths = [str(tmp_path / f"part{i}") for i in range(3)]
    with open_dump(machine) as d:
        lays = kc.write_split(d, paths, timestamp=TS)
    assert [(l.start_pfn, l.end_pfn) for l in lays] == [(0, 87381), (87381, 174762), (174762, 262144)]
    for p, l in zip(paths, lays):
        _, h, sub = header_of(p)
        assert sub.split == 1 and (sub.start_pfn_64, sub.end_pfn_64) == (l.start_pfn, l.end_pfn)
    reader = reader_for("kdump")
    assert reader.probe_paths(paths) and not reader.probe_paths([paths[0], machine])
    with reader.open(list(reversed(paths))) as k:
        assert k.attrs.complete and page_digests(k) == digests
    with reader.open(paths=list(reversed(paths))) as k:
        assert k.attrs.complete, k.attrs.incomplete_reason
        assert page_digests(k) == digests and len(k.cpus) == 2
        assert [s["start_pfn"] for s in k.attrs.extra["split"]] == [0, 87381, 174762]
    with open_dump(paths[1], paths=[paths[0], paths[1]]) as k:
        assert not k.attrs.complete
        assert "0x2aaaa000-0x3fffffff" in k.attrs.incomplete_reason
        with pytest.raises(IncompleteDumpError):
            k.read(0x30000000, 8)
        assert k.read(0x100000, 64) == open_dump(machine).read(0x100000, 64)


# ---------------------------------------------------------------------------------------------
# filtering levels, incomplete flag
# ---------------------------------------------------------------------------------------------

def _patch_sub(path: str, **fields) -> None:
    order, _, sub = header_of(path)
    L = dd.layouts(order)
    vals = dict(sub)
    vals.pop("_io", None)
    vals.update(fields)
    with open(path, "r+b") as fh:
        fh.seek(PS)
        fh.write(L.kdump_sub_header.build(vals))


def test_pages_filtered_by_dump_level_31_are_absent_and_the_dump_complete(tmp_path):
    """Filtered is not incomplete: a dump level 31 file is complete at its level, its excluded
    pages are absent (read as 'filtered out', never as zeros) and named by the dump level."""
    with small_dump() as d:
        p = str(tmp_path / "ez.kdump")
        write_dump(d, p, "kdump", exclude_zero=True, timestamp=TS)
    with open_dump(p) as k:                                # level 1: excluded pages are zero
        assert k.attrs.complete and k.read(0x1000, 16) == bytes(16)
    _patch_sub(p, dump_level=31)
    with open_dump(p) as k:
        assert k.attrs.complete and k.missing_ranges() == []
        assert k.attrs.filtered_text().startswith("dump level 31, ")
        assert "(zero, cache, cache private, user, free)" in k.attrs.filtered_text()
        assert k.read(0x6000, 16) == b"low memory data!"
        with pytest.raises(BadInputError, match="filtered out"):
            k.read(0x1000, 16)
        assert any(c.kind == "absent" and c.start <= 0x1000 < c.end for c in k.chunks)


def test_incomplete_status_flag_and_unwritten_descriptors(tmp_path):
    with small_dump() as d:
        p = str(tmp_path / "inc.kdump")
        lay = write_dump(d, p, "kdump", timestamp=TS)
    order, h, _ = header_of(p)
    L = dd.layouts(order)
    vals = dict(h)
    vals.pop("_io", None)
    vals["status"] |= dd.DUMP_DH_COMPRESSED_INCOMPLETE
    with open(p, "r+b") as fh:
        fh.write(L.disk_dump_header.build(vals))
        # makedumpfile stopped after 5 descriptors: the rest were never written
        fh.seek(lay.offset_desc + 5 * 24)
        fh.write(bytes((lay.num_dumpable - 5) * 24))
    with open_dump(p) as k:
        assert not k.attrs.complete and "status flag" in k.attrs.incomplete_reason
        assert k.read(0, 5 * PS) == small_dump().read(0, 5 * PS)
        with pytest.raises(IncompleteDumpError):
            k.read(6 * PS, 16)


# ---------------------------------------------------------------------------------------------
# truncated files
# ---------------------------------------------------------------------------------------------

def test_truncated_file_is_incomplete_and_names_the_missing_range(written, tmp_path):
    path, lay, _, _ = written["zlib"]
    cut = str(tmp_path / "cut.kdump")
    with open(cut, "wb") as fh:
        sparse_copy(path, fh)
    with open(path, "rb") as fh:
        fh.seek(lay.offset_desc)
        descs = list(dd.BE.page_desc_struct.iter_unpack(fh.read(lay.num_dumpable * 24)))
    # cut in the middle of the data of the page at 0x20000000 (a data page: find the next one)
    zero = (lay.offset_data, PS, 0, 0)
    pfn = next(p for p in range(0x20000, len(descs)) if descs[p] != zero)
    os.truncate(cut, descs[pfn][0] + 10)
    with open_dump(cut) as k, open_dump(path) as whole:
        assert not k.attrs.complete
        assert f"0x{pfn * PS:x}-0x3fffffff" in k.attrs.incomplete_reason
        assert k.read(0x100000, 64) == whole.read(0x100000, 64)
        assert k.read(pfn * PS - 64, 64) == whole.read(pfn * PS - 64, 64)
        with pytest.raises(IncompleteDumpError, match=f"0x{pfn * PS:x}"):
            k.read(pfn * PS, 16)
        assert page_digests(k, 0, pfn * PS) == page_digests(whole, 0, pfn * PS)
    # cut inside the descriptor table, inside bitmap 2, inside the notes
    # (all page data follows the table, so every page is gone; the bitmaps still say which exist)
    for at in (lay.offset_desc + 1000 * 24 + 5, lay.offset_bitmap2 + 100, lay.offset_bitmap1 + 10):
        os.truncate(cut, at)
        with open_dump(cut) as k:
            assert not k.attrs.complete and "physical 0x0-0x3fffffff missing" in k.attrs.incomplete_reason
            assert [c.kind for c in k.chunks] == ["absent"]
            with pytest.raises(IncompleteDumpError):
                k.read(0x3FFFF000, 8)
    os.truncate(cut, PS + 50)                                  # inside the sub header: nothing to read
    with pytest.raises(IncompleteDumpError, match="kdump_sub_header"):
        open_dump(cut)


def test_truncated_flattened_stream(written, tmp_path):
    path = written["zlib-flat"][0]
    cut = str(tmp_path / "cut.flat")
    shutil.copyfile(path, cut)
    os.truncate(cut, os.path.getsize(path) // 2)
    with open_dump(cut) as k:
        assert not k.attrs.complete and "end record" in k.attrs.incomplete_reason
        assert k.read(0x100000, 64) == open_dump(written["zlib"][0]).read(0x100000, 64)
        assert any(c.kind == "absent" for c in k.chunks)


def test_output_is_atomic(tmp_path):
    size = 8 * MiB

    def read(off, n):
        if off >= 4 * MiB:
            raise BadInputError("source broke")
        return bytes([1]) * n

    p = tmp_path / "out.kdump"
    with Dump([MemChunk(0, size, MappedSource(read, size))]) as d:
        with pytest.raises(BadInputError, match="source broke"):
            write_dump(d, str(p), "kdump", timestamp=TS)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# a 1 TiB sparse machine: streaming, bounded memory
# ---------------------------------------------------------------------------------------------

HUGE = """
import json, sys
from vmcore.model import Dump, MappedSource, MemChunk, page_digests
from vmcore.formats import open_dump, write_dump
size, step = 1 << 40, 1 << 30
def read(off, n):
    out = bytearray(n)
    for a in range(off // step * step, off + n, step):
        if off <= a < off + n:
            out[a - off:a - off + 4096] = (a + 1).to_bytes(8, "big") * 512
    return bytes(out)
src = MappedSource(read, size, lambda s, e: [(a, a + 4096) for a in range(s // step * step, e, step)
                                             if a + 4096 > s and a < e])
with Dump([MemChunk(0, size, src)]) as d:
    lay = write_dump(d, sys.argv[1], "kdump", exclude_zero=True, timestamp=0)
# VmHWM, not ru_maxrss: the latter keeps the parent's peak across vfork + exec
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
with open_dump(sys.argv[1]) as k:
    ok = k.read(5 * step, 8) == (5 * step + 1).to_bytes(8, "big") and len(page_digests(k)) == 1024
print(json.dumps(dict(rss_kib=rss, pages=lay.num_dumpable, ok=ok, complete=k.attrs.complete)))
"""


@pytest.mark.slow
def test_one_tib_sparse_machine_streams_in_bounded_memory(tmp_path):
    p = str(tmp_path / "huge.kdump")
    out = subprocess.run([sys.executable, "-c", HUGE, p], capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["ok"] and r["complete"] and r["pages"] == 1024
    assert r["rss_kib"] < 150 * 1024, r
    st_ = os.stat(p)
    assert st_.st_blocks * 512 < 80 * MiB                   # 2 x 32 MiB of bitmaps, little else


# ---------------------------------------------------------------------------------------------
# fuzz: corrupted headers, bitmaps and descriptors raise only the suite's errors
# ---------------------------------------------------------------------------------------------

_FUZZ_DIR = tempfile.mkdtemp(prefix="kdump-fuzz-")
_FUZZ_SRC = os.path.join(_FUZZ_DIR, "base.kdump")
with small_dump() as _d:
    _FUZZ_LAYOUT = write_dump(_d, _FUZZ_SRC, "kdump", timestamp=TS)
with open(_FUZZ_SRC, "rb") as _fh:
    _FUZZ_BYTES = _fh.read()
_FUZZ_HEAD = _FUZZ_LAYOUT.offset_data + 64
# where the interesting bytes are: main header, sub header + notes, bitmaps, descriptors
_FUZZ_SPOTS = st.one_of(st.integers(0, dd.DISK_DUMP_HEADER_SIZE - 1),
                        st.integers(PS, PS + 0x68 + 64),
                        st.integers(_FUZZ_LAYOUT.offset_bitmap1, _FUZZ_LAYOUT.offset_desc - 1),
                        st.integers(_FUZZ_LAYOUT.offset_desc, _FUZZ_HEAD - 1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(_FUZZ_SPOTS, st.integers(0, 255)), min_size=1, max_size=8),
    words=st.lists(st.tuples(_FUZZ_SPOTS, st.sampled_from(
        [0, 1, 0xFFFF, 1 << 31, (1 << 63) - 1, (1 << 64) - 1, 1 << 40, 4096, 24])), max_size=3),
    truncate=st.one_of(st.none(), st.integers(0, len(_FUZZ_BYTES))),
    flat=st.booleans(),
)
def test_fuzzed_files_raise_only_suite_errors(edits, words, truncate, flat):
    data = bytearray(_FUZZ_BYTES)
    for pos, val in edits:
        data[pos] = val
    for pos, val in words:
        pos = min(pos, len(data) - 8)
        data[pos:pos + 8] = val.to_bytes(8, random.Random(pos).choice(["big", "little"]))
    if truncate is not None:
        del data[truncate:]
    fd, path = tempfile.mkstemp(dir=_FUZZ_DIR)
    with os.fdopen(fd, "wb") as fh:
        if flat:
            fh.write(dd.flat_header_bytes())
            for at in range(0, len(data), 3000):
                fh.write(dd.flat_record_header(at, len(data[at:at + 3000])) + data[at:at + 3000])
            fh.write(dd.FLAT_END_RECORD)
        else:
            fh.write(data)
    try:
        exercise_dump(path)
    except DumpToolError:
        pass
    finally:
        os.unlink(path)


def test_no_room_for_the_descriptors_is_refused_before_writing(tmp_path, monkeypatch):
    """A machine far larger than the free space (16 TiB keeps ~100 GiB of descriptors with zero
    pages kept) is refused at once, with the way out, and nothing is left in the directory."""
    real = os.statvfs

    class Tiny:
        f_bavail, f_frsize = 0, 4096          # a full file system

    monkeypatch.setattr(os, "statvfs", lambda p: Tiny() if os.fspath(p) == str(tmp_path) else real(p))
    out = tmp_path / "out.kdump"
    for exclude_zero in (False, True):
        with pytest.raises(DumpToolError) as exc:
            write_dump(small_dump(), out, "kdump", exclude_zero=exclude_zero)
        msg = str(exc.value)
        assert "page descriptors" in msg and "0 B free" in msg, msg
        assert ("--exclude-zero" in msg) is (not exclude_zero), msg
        assert "\n" not in msg
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(os, "statvfs", real)
    write_dump(small_dump(), out, "kdump")          # with the real free space it is written
    assert open_dump(out).size == small_dump().size
