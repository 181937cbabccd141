"""vmcore.model: the one dump model (chunks, sources, reads, data ranges, vmcoreinfo lookup)."""

from __future__ import annotations

import os

import pytest

from meminfo_abi.elfnotes import vmcoreinfo_note
from dumpkit.errors import BadInputError, DumpIOError, IncompleteDumpError
from meminfo_abi.lowcore import LC_VMCORE_INFO
from vmcore.model import (
    ADDRESS_LIMIT,
    MAX_READ,
    BytesSource,
    Dump,
    DumpAttrs,
    FileSource,
    MappedSource,
    MemChunk,
    MemoryImageSource,
    ZeroSource,
    page_digests,
)

KiB, MiB = 1 << 10, 1 << 20


def pattern(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed) % 251 + 1 for i in range(n))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- chunk validation ---------------------------------------------------------------------------
@pytest.mark.parametrize("start,size,kind,source", [
    (-1, 4096, "ram", BytesSource(bytes(4096))),       # negative start
    (0, 0, "zero", None),                              # empty chunk
    (ADDRESS_LIMIT - 4096, 8192, "zero", None),        # passes 2**64
    (0, 4096, "swap", None),                           # unknown kind
    (0, 4096, "ram", None),                            # ram without a source
    (0, 8192, "ram", BytesSource(bytes(4096))),        # source smaller than the chunk
    (0.5, 4096, "zero", None),                         # not an integer
])
def test_bad_chunks_are_rejected(start, size, kind, source):
    with pytest.raises(BadInputError):
        MemChunk(start, size, source, kind)


def test_chunks_must_be_sorted_and_not_overlap():
    a = MemChunk(0, 8192, None, "zero")
    b = MemChunk(4096, 8192, None, "zero")
    with pytest.raises(BadInputError, match="overlaps"):
        Dump([a, b])
    c = MemChunk(16384, 4096, None, "zero")
    with pytest.raises(BadInputError, match="comes before"):
        Dump([c, a])
    Dump([a, MemChunk(8192, 4096, None, "zero"), c])     # adjacent and gaps are fine


# -- reads ----------------------------------------------------------------------------------
def three_chunk_dump() -> tuple[Dump, bytes]:
    """[0,8K) ram, [8K,12K) zero, [12K,20K) ram, gap [20K,24K), [24K,28K) absent, [28K,32K) ram."""
    a, b, c = pattern(8192, 1), pattern(8192, 2), pattern(4096, 3)
    chunks = [
        MemChunk(0, 8192, BytesSource(a)),
        MemChunk(8192, 4096, None, "zero"),
        MemChunk(12288, 8192, BytesSource(b)),
        MemChunk(24576, 4096, None, "absent"),
        MemChunk(28672, 4096, BytesSource(c)),
    ]
    flat = a + bytes(4096) + b
    return Dump(chunks), flat


def test_reads_cross_chunk_borders():
    d, flat = three_chunk_dump()
    assert d.size == 32768
    assert d.read(0, 20480) == flat
    assert d.read(8000, 5000) == flat[8000:13000]       # ram -> zero -> ram
    assert d.read(20479, 1) == flat[-1:]
    assert d.read(28672 + 10, 6) == pattern(4096, 3)[10:16]
    assert d.read(5, 0) == b""


def test_gap_and_absent_reads_name_the_address():
    d, _ = three_chunk_dump()
    with pytest.raises(BadInputError, match="0x5000 is not in the dump"):
        d.read(20480, 16)
    with pytest.raises(BadInputError, match="0x5000 is not"):  # starts in ram, runs into the gap
        d.read(20470, 16)
    with pytest.raises(IncompleteDumpError, match="0x6010-0x601f"):
        d.read(24576 + 16, 16)
    with pytest.raises(BadInputError, match="not in the dump"):
        d.read(32768, 1)                                      # past the end
    assert not d.attrs.complete
    assert "0x6000-0x6fff" in d.attrs.incomplete_reason
    assert d.absent_ranges() == [(24576, 28672)]


def test_sizes_and_offsets_are_bounded():
    d, _ = three_chunk_dump()
    for addr, length in [(-1, 1), (0, -1), (ADDRESS_LIMIT - 1, 2), (0, MAX_READ + 1)]:
        with pytest.raises(BadInputError):
            d.read(addr, length)
    with pytest.raises(BadInputError):
        BytesSource(b"abc").read(2, 2)
    with pytest.raises(BadInputError):
        ZeroSource(4096).read(4000, 100)
    with pytest.raises(BadInputError):
        d.iter_data(block_size=1000).__next__()


def test_data_ranges_skip_zero_and_absent_chunks():
    d, _ = three_chunk_dump()
    assert list(d.data_ranges()) == [(0, 8192), (12288, 20480), (28672, 32768)]
    assert list(d.data_ranges(4096, 14000)) == [(4096, 8192), (12288, 14000)]
    # adjacent ram chunks merge into one range
    d2 = Dump([MemChunk(0, 4096, BytesSource(pattern(4096))), MemChunk(4096, 4096, BytesSource(pattern(4096)))])
    assert list(d2.data_ranges()) == [(0, 8192)]
    # zero pages inside a bytes source are not data
    d3 = Dump([MemChunk(0, 3 * 4096, BytesSource(bytes(4096) + pattern(4096) + bytes(4096)))])
    assert list(d3.data_ranges()) == [(4096, 8192)]


def test_file_source_reports_holes_and_shares_one_descriptor(tmp_path):
    path = tmp_path / "sparse.img"
    with open(path, "wb") as fh:
        fh.truncate(8 * MiB)
        fh.seek(1 * MiB)
        fh.write(pattern(4096))
        fh.seek(5 * MiB)
        fh.write(pattern(8192))
    before = open_fds()
    src = FileSource(path)
    assert open_fds() == before + 1
    part = src.region(4 * MiB, 4 * MiB)                  # file [4M, 8M) as source [0, 4M)
    assert open_fds() == before + 1
    assert list(src.data_ranges(0, src.size)) == [(MiB, MiB + 4096), (5 * MiB, 5 * MiB + 8192)]
    assert list(part.data_ranges(0, part.size)) == [(MiB, MiB + 8192)]
    assert part.read(MiB, 16) == pattern(16)
    src.close()
    assert part.read(MiB, 4) == pattern(4)               # still open for the other region
    part.close()
    assert open_fds() == before


def test_file_source_shorter_file_is_incomplete_not_a_crash(tmp_path):
    path = tmp_path / "short.img"
    path.write_bytes(pattern(4096))
    src = FileSource(path, 0, 8192)                       # claims more than the file has
    assert src.read(0, 16) == pattern(16)
    with pytest.raises(IncompleteDumpError, match="0x1000"):
        src.read(4000, 200)
    src.close()
    with pytest.raises(BadInputError, match="does not exist"):
        FileSource(tmp_path / "nope")
    with pytest.raises(BadInputError):
        FileSource(path, 1 << 62, 1 << 62)


def test_mapped_source_checks_its_read_function():
    src = MappedSource(lambda off, n: bytes(n - 1), 8192, name="broken view")
    with pytest.raises(DumpIOError, match="broken view"):
        src.read(0, 10)
    closed = []
    src = MappedSource(lambda off, n: bytes(n), 8192, lambda s, e: [(0, 100), (4000, 9000)],
                       close_fn=lambda: closed.append(1))
    assert list(src.data_ranges(50, 5000)) == [(50, 100), (4000, 5000)]
    src.close()
    src.close()
    assert closed == [1]


def test_iter_data_reads_only_data_ranges_in_bounded_blocks():
    reads = []
    size = 64 * MiB
    data_at = {10 * MiB + 100: b"A" * 10, 40 * MiB: b"B" * (9 * MiB)}

    def read(off, n):
        reads.append((off, n))
        out = bytearray(n)
        for a, blob in data_at.items():
            lo, hi = max(a, off), min(a + len(blob), off + n)
            if lo < hi:
                out[lo - off:hi - off] = blob[lo - a:hi - a]
        return bytes(out)

    ranges = [(a, a + len(b)) for a, b in data_at.items()]
    src = MappedSource(read, size, lambda s, e: ranges)
    d = Dump([MemChunk(0, size, src)])
    blocks = list(d.iter_data(block_size=4 * MiB))
    assert all(len(b) <= 4 * MiB for _, b in blocks)
    assert all(a % 4096 == 0 for a, _ in blocks)
    covered = sum(len(b) for _, b in blocks)
    assert covered == 4096 + 9 * MiB                      # the page around A, all of B
    for off, n in reads:                                   # never read outside the (page-widened) ranges
        assert any(s // 4096 * 4096 <= off and off + n <= -(-e // 4096) * 4096 for s, e in ranges)
    pages = dict(d.iter_pages())
    assert sorted(pages) == [10 * MiB] + list(range(40 * MiB, 49 * MiB, 4096))
    assert pages[10 * MiB][100:110] == b"A" * 10


def test_page_digests_ignore_how_memory_is_cut():
    mem = bytearray(64 * KiB)
    mem[4096:4100] = b"abcd"
    mem[40000:40010] = b"0123456789"
    one = Dump([MemChunk(0, len(mem), BytesSource(mem))])
    cut = Dump([
        MemChunk(0, 8192, BytesSource(mem[:8192])),
        MemChunk(8192, 24576, None, "zero"),
        MemChunk(32768, 32768, BytesSource(mem[32768:])),
    ])
    assert page_digests(one) == page_digests(cut)
    assert sorted(page_digests(one)) == [4096, 36864]
    assert page_digests(one, 0, 8192).keys() == {4096}


def test_vmcoreinfo_is_found_through_lowcore_0xe0c():
    text = b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\nCRASHTIME=1700000000\n"
    mem = bytearray(1 * MiB)
    note_addr = 0x20000
    note = vmcoreinfo_note(text)
    mem[note_addr:note_addr + len(note)] = note
    mem[LC_VMCORE_INFO:LC_VMCORE_INFO + 8] = note_addr.to_bytes(8, "big")
    with Dump([MemChunk(0, len(mem), BytesSource(mem))], attrs=DumpAttrs(format="test")) as d:
        assert d.fill_vmcoreinfo_from_memory()
        assert d.attrs.vmcoreinfo_raw == text
        assert d.attrs.vmcoreinfo_source == f"lowcore 0xE0C note at 0x{note_addr + 24:x}"
        assert d.attrs.vmcoreinfo.osrelease == "6.1.0-test"
        assert d.attrs.timestamp.year == 2023
    # no pointer: not found, the reason is kept, nothing raised
    d = Dump([MemChunk(0, MiB, None, "zero")])
    assert not d.fill_vmcoreinfo_from_memory()
    assert "vmcoreinfo_error" in d.attrs.extra
    # a pointer into a gap of the dump is not an error either
    mem2 = bytearray(8192)
    mem2[LC_VMCORE_INFO:LC_VMCORE_INFO + 8] = (1 * MiB).to_bytes(8, "big")
    d = Dump([MemChunk(0, 8192, BytesSource(mem2)), MemChunk(2 * MiB, 4096, None, "zero")])
    assert not d.fill_vmcoreinfo_from_memory()


def test_memory_image_source_and_close(machine_1g):
    from s390_machine.memory import PhysicalMemory

    mem = PhysicalMemory(os.path.join(machine_1g, "memory.img"))
    src = MemoryImageSource(mem, owns=True)
    with Dump([MemChunk(0, src.size, src)]) as d:
        ranges = list(d.data_ranges())
        assert ranges and sum(e - s for s, e in ranges) < d.size // 4
        assert d.read(0x100000, 64) == bytes(mem.read(0x100000, 64))
        assert d.fill_vmcoreinfo_from_memory()
        assert d.attrs.vmcoreinfo_source.startswith("meminfo entry 0")
    assert mem._map is None                               # closed with the dump
