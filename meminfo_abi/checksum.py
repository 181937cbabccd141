"""The checksum API of the s390 dump ABIs: the 32-bit CKSM sum (the CHECKSUM instruction, z/Architecture Principles of Operation).

CKSM adds big-endian 32-bit words with an end-around carry, which is addition modulo
2**32 - 1 (the result is 0 only when every word and the initial value are 0).  So the sum
of a range is the sum of the sums of its pieces, in any grouping, as long as every piece but
the last is a whole number of words: `csum_range` uses that to checksum large kexec segments
on all cores, with the same result as the serial `csum_partial`.
"""

from __future__ import annotations

import os
from typing import Callable

from dumpkit.parallel import ordered_map
from native import csum_partial, zero_ranges  # noqa: F401  (re-exported API)

__all__ = ["csum_partial", "zero_ranges", "csum_add", "csum_range"]

_MASK32 = 0xFFFFFFFF
PARALLEL_PIECE = 16 << 20     # bytes per task: large enough that a task outweighs its overhead


def csum_add(a: int, b: int) -> int:
    """The CKSM sum of two partial sums (end-around carry)."""
    s = a + b
    return s if s <= _MASK32 else s - _MASK32


def csum_range(read: Callable[[int, int], object], addr: int, length: int, initial: int = 0, *,
               threads: int | None = None, piece: int = PARALLEL_PIECE) -> int:
    """CKSM of the `length` bytes at `addr` that `read(addr, n)` returns (a buffer).

    Pieces of `piece` bytes (a multiple of 4) are summed on `threads` threads (default: every
    core; csum_partial releases the GIL), at most 2 * threads pieces in flight, so memory stays
    bounded; the result equals csum_partial over the whole range (tested)."""
    if piece <= 0 or piece % 4:
        raise ValueError(f"piece {piece} is not a positive multiple of 4")
    threads = threads or os.cpu_count() or 1
    if threads == 1 or length <= piece:
        total, pos, end = initial, addr, addr + length
        while pos < end:
            n = min(piece, end - pos)
            total = csum_partial(read(pos, n), total)
            pos += n
        return total
    total = initial
    pieces = ((pos, min(piece, addr + length - pos)) for pos in range(addr, addr + length, piece))
    for part in ordered_map(lambda pk: csum_partial(read(*pk)), pieces, threads, 2 * threads):
        total = csum_add(total, part)
    return total
