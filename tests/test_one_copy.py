"""Issue 17, "one copy": the pieces every reader and writer shares, each proved once here.

Range algebra (dumpkit/ranges.py) against a brute-force set of points; the ordered parallel
map (dumpkit/parallel.py): order, bounded read-ahead, errors; the sparse copy
(dumpkit.fileio.write_sparse, vmcore.model.copy_memory): bytes, holes, progress, writeback;
the kdump swap map (meminfo_abi.parmarea.oldmem_pieces); CPU registers from a lowcore
(meminfo_abi.cpu.cpu_from_lowcore).
"""

from __future__ import annotations

import os
import random
import threading

import pytest

from dumpkit.fileio import Writeback, data_extents, write_sparse
from dumpkit.parallel import ordered_map
from dumpkit.ranges import add_run, clip, intersect, merge, range_text, subtract
from meminfo_abi.cpu import CpuRegs, cpu_from_lowcore
from meminfo_abi.lowcore import LC_EXT_CPU_ADDR, LC_MCESAD, LC_SAVE_AREA, LOWCORE_SIZE
from meminfo_abi.parmarea import oldmem_pieces
from vmcore.model import KIND_RAM, KIND_ZERO, BytesSource, Dump, MemChunk, copy_memory

PAGE = 4096


def _points(runs) -> set[int]:
    return {x for a, b in runs for x in range(a, b)}


def _runs(rng: random.Random) -> list[tuple[int, int]]:
    cuts = sorted(rng.sample(range(200), rng.randrange(0, 10) * 2))
    return [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts), 2)]


@pytest.mark.parametrize("seed", range(200))
def test_range_algebra_is_set_algebra(seed):
    rng = random.Random(seed)
    a, b = _runs(rng), _runs(rng)
    assert _points(subtract(a, b)) == _points(a) - _points(b)
    assert _points(intersect(a, b)) == _points(a) & _points(b)
    merged = merge(a + b)
    assert _points(merged) == _points(a) | _points(b)
    assert all(e < s2 for (_, e), (s2, _) in zip(merged, merged[1:]))        # disjoint, not touching
    assert _points(clip(a, 50, 150)) == {x for x in _points(a) if 50 <= x < 150}
    grown: list[tuple[int, int]] = []
    for s, e in merged:
        add_run(grown, s, e)
    assert grown == merged


def test_range_text_names_at_most_three():
    five = [(i * 0x2000, i * 0x2000 + 0x1000) for i in range(5)]
    assert range_text(five) == "0x0-0xfff, 0x2000-0x2fff, 0x4000-0x4fff and 2 more"
    assert range_text(five[:1], noun="physical") == "physical range 0x0-0xfff"
    assert range_text(five[:2], noun="physical").startswith("physical ranges 0x0-0xfff, ")


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_ordered_map_keeps_the_order_and_bounds_the_read_ahead(workers):
    taken, done = [], []
    lock = threading.Lock()

    def items():
        for i in range(200):
            with lock:
                taken.append(i)
                # never more than max_in_flight items taken and not yet handed out
                assert len(taken) - len(done) <= 5
            yield i

    def slow_square(i: int) -> int:
        if random.random() < 0.1:
            threading.Event().wait(0.001)
        return i * i

    for r in ordered_map(slow_square, items(), workers, 5):
        with lock:
            done.append(r)
    assert done == [i * i for i in range(200)]


def test_ordered_map_raises_where_the_failed_result_would_come():
    def fn(i: int) -> int:
        if i == 7:
            raise OSError(5, "EIO")
        return i

    got = []
    with pytest.raises(OSError):
        for r in ordered_map(fn, range(100), 2, 4):
            got.append(r)
    assert got == list(range(7))


def test_write_sparse_writes_the_bytes_and_leaves_zeros_as_holes(tmp_path):
    path = tmp_path / "out"
    data = bytearray(64 * PAGE)
    for page in (0, 5, 6, 40):
        data[page * PAGE:page * PAGE + 3] = b"abc"
    seen = []
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        blocks = [(off, bytes(data[off:off + 16 * PAGE]), 16 * PAGE) for off in range(0, len(data), 16 * PAGE)]
        write_sparse(fd, blocks, lambda b: [(s, s + PAGE) for s in range(0, len(b), PAGE) if any(b[s:s + PAGE])],
                     progress=seen.append, writeback=Writeback(fd, chunk=PAGE))
        os.ftruncate(fd, len(data))
        assert os.pread(fd, len(data), 0) == bytes(data)
        extents = list(data_extents(fd, len(data)))
    finally:
        os.close(fd)
    assert sum(seen) == len(data)
    written = sum(e - s for s, e in extents)
    assert written < len(data) // 2           # zero pages are holes (where the file system has holes)


def test_copy_memory_puts_each_span_at_its_file_offset(tmp_path):
    ram = bytes(PAGE) + os.urandom(2 * PAGE) + bytes(PAGE)
    d = Dump([MemChunk(0, len(ram), BytesSource(ram), KIND_RAM), MemChunk(len(ram), 4 * PAGE, None, KIND_ZERO)])
    done = []
    path = tmp_path / "img"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        copy_memory(d, fd, [(0, len(ram), 100), (len(ram), d.size, 100 + len(ram))], done.append,
                    block_size=PAGE)
        os.ftruncate(fd, 100 + d.size)
        image = os.pread(fd, 100 + d.size, 0)
    finally:
        os.close(fd)
    assert image == bytes(100) + ram + bytes(4 * PAGE)
    assert sum(done) == d.size


def test_the_swap_map_is_its_own_inverse_and_covers_everything():
    base, size, total = 0x10000, 0x4000, 0x40000
    pieces = list(oldmem_pieces(0, total, base, size, total))
    assert sum(n for _a, _w, n in pieces) == total
    assert [a for a, _w, _n in pieces] == sorted(a for a, _w, _n in pieces)
    for addr, where, n in pieces:
        back = list(oldmem_pieces(where, n, base, size, total))
        assert back == [(where, addr, n)]
    # old [0, size) is at the crashkernel, the crashkernel's content at [0, size)
    assert list(oldmem_pieces(0x100, 0x10, base, size, total)) == [(0x100, base + 0x100, 0x10)]
    assert list(oldmem_pieces(base + 0x100, 0x10, base, size, total)) == [(base + 0x100, 0x100, 0x10)]


class _Mem:
    def __init__(self, size: int):
        self.buf = bytearray(size)
        self.size = size

    def read(self, addr: int, n: int) -> bytes:
        return bytes(self.buf[addr:addr + n])


def test_cpu_from_lowcore_reads_the_save_area_and_the_vector_registers():
    mem = _Mem(8 * LOWCORE_SIZE)
    prefix, vx = 2 * LOWCORE_SIZE, 6 * LOWCORE_SIZE
    regs = CpuRegs(prefix=prefix, psw_mask=0x0705000180000000, psw_addr=0x1234, gprs=list(range(16)))
    mem.buf[prefix + LC_SAVE_AREA:prefix + LC_SAVE_AREA + 512] = regs.to_save_area()
    mem.buf[prefix + LC_EXT_CPU_ADDR:prefix + LC_EXT_CPU_ADDR + 2] = (3).to_bytes(2, "big")
    mem.buf[prefix + LC_MCESAD:prefix + LC_MCESAD + 8] = vx.to_bytes(8, "big")
    mem.buf[vx:vx + 512] = bytes(range(256)) * 2
    got = cpu_from_lowcore(mem, prefix)
    assert (got.address, got.prefix, got.psw_addr, got.gprs) == (3, prefix, 0x1234, list(range(16)))
    assert got.vxrs == bytes(range(256)) * 2
    # the IPL CPU: status stored in the absolute lowcore, its MCESAD in its own prefix page
    mem.buf[LC_SAVE_AREA:LC_SAVE_AREA + 512] = regs.to_save_area()
    boot = cpu_from_lowcore(mem, 0, address=0)
    assert (boot.address, boot.prefix, boot.vxrs) == (0, prefix, bytes(range(256)) * 2)
    assert cpu_from_lowcore(mem, 0, address=0, vector=False).vxrs is None
    with pytest.raises(Exception, match="outside the dumped memory"):
        cpu_from_lowcore(mem, 8 * LOWCORE_SIZE)
