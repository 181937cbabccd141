"""Pure-Python reference implementations of the functions in ``native._native``.

These are deliberately simple and slow: they define the expected results that
the C extension is tested against.  Do not use them on large buffers.
"""
from __future__ import annotations

from itertools import groupby

__all__ = ["csum_partial", "zero_ranges", "nonzero_ranges", "is_zero"]

_MASK32 = 0xFFFFFFFF


def csum_partial(buffer, initial: int = 0) -> int:
    """CKSM checksum, computed one big-endian 32-bit word at a time."""
    if not 0 <= initial <= _MASK32:
        raise ValueError("initial must be in range 0..0xFFFFFFFF")
    data = bytes(memoryview(buffer).cast("B"))
    # Pad with zero bytes on the right up to a whole number of words.
    data += b"\x00" * (-len(data) % 4)
    total = initial
    for offset in range(0, len(data), 4):
        word = int.from_bytes(data[offset:offset + 4], "big")
        total += word
        if total > _MASK32:
            # End-around carry: drop bit 32 and add it back in at bit 0.
            total = (total & _MASK32) + 1
    return total


def _check_granule(granule: int) -> None:
    if granule <= 0:
        raise ValueError("granule must be a positive integer")


def _granule_flags(data: bytes, granule: int) -> list[tuple[int, int, bool]]:
    """(start, end, all_zero) for each granule; the last one may be short."""
    flags = []
    for start in range(0, len(data), granule):
        piece = data[start:start + granule]
        flags.append((start, start + len(piece), piece.count(0) == len(piece)))
    return flags


def _runs(buffer, granule: int, want_zero: bool) -> list[tuple[int, int]]:
    _check_granule(granule)
    data = bytes(memoryview(buffer).cast("B"))
    # consecutive granules of the wanted kind make one run
    groups = groupby(_granule_flags(data, granule), key=lambda flag: flag[2])
    return [(g[0][0], g[-1][1]) for zero, grp in groups if zero == want_zero for g in [list(grp)]]


def zero_ranges(buffer, granule: int = 4096) -> list[tuple[int, int]]:
    """Maximal runs of all-zero granules as (start, end) byte ranges."""
    return _runs(buffer, granule, True)


def nonzero_ranges(buffer, granule: int = 4096) -> list[tuple[int, int]]:
    """Maximal runs of granules containing a non-zero byte."""
    return _runs(buffer, granule, False)


def is_zero(buffer) -> bool:
    """True if every byte is zero (an empty buffer counts as zero)."""
    data = bytes(memoryview(buffer).cast("B"))
    return data.count(0) == len(data)
