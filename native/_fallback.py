"""Pure-Python stand-ins for ``native._native`` when the C extension could not be built.

Unlike ``native.reference`` (one word or granule at a time, for the tests),
these are meant for real work: they give the same results as the C code and
lean on what CPython does in C (``sum`` over an ``array``, bytes comparison), so
they run at a fraction of the extension's speed rather than a thousandth.

CKSM: the 32-bit words added with end-around carry are their sum modulo
2**32 - 1, with one twist of representation: a non-zero sum that is a
multiple of 2**32 - 1 reads 0xFFFFFFFF, and only an all-zero sum reads 0.
So the big-endian words are summed a block at a time as an ``array`` and reduced once at the end.
"""
from __future__ import annotations

import sys
from array import array

__all__ = ["csum_partial", "zero_ranges", "nonzero_ranges", "is_zero", "page_rows"]

_MASK32 = 0xFFFFFFFF
_BLOCK = 1 << 20                  # bytes summed or compared per step (a multiple of 4)
_ZERO_BLOCK = bytes(_BLOCK)
_WORD = next(code for code in "IL" if array(code).itemsize == 4)
_SWAP = sys.byteorder == "little"


def _bytes_view(buffer) -> memoryview:
    view = memoryview(buffer)
    if not view.c_contiguous:
        raise BufferError("buffer must be C-contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def csum_partial(buffer, initial: int = 0) -> int:
    initial = int.__index__(initial) if not isinstance(initial, int) else initial
    if not 0 <= initial <= _MASK32:
        raise ValueError("initial must be in range 0..0xFFFFFFFF")
    view = _bytes_view(buffer)
    total = initial
    for start in range(0, len(view), _BLOCK):
        piece = view[start:start + _BLOCK]
        words = array(_WORD)
        if len(piece) % 4:                      # the short last word is padded on its right
            piece = bytes(piece) + bytes(-len(piece) % 4)
        words.frombytes(piece)
        if _SWAP:
            words.byteswap()
        total += sum(words)
    if total == 0:
        return 0
    return total % _MASK32 or _MASK32


def _check_granule(granule) -> int:
    granule = int.__index__(granule) if not isinstance(granule, int) else granule
    if granule <= 0:
        raise ValueError("granule must be a positive integer")
    return granule


def _granule_is_zero(view: memoryview, start: int, end: int) -> bool:
    length = end - start
    if length <= _BLOCK:
        return view[start:end] == _ZERO_BLOCK[:length]
    return all(view[p:min(p + _BLOCK, end)] == _ZERO_BLOCK[:min(_BLOCK, end - p)]
               for p in range(start, end, _BLOCK))


def _runs(buffer, granule, want_zero: bool) -> list[tuple[int, int]]:
    granule = _check_granule(granule)
    view = _bytes_view(buffer)
    size = len(view)
    runs: list[tuple[int, int]] = []
    pos = 0
    # whole blocks of zero granules are skipped in one comparison
    step = max(granule, _BLOCK - _BLOCK % granule) if granule < _BLOCK else granule
    while pos < size:
        end = min(pos + step, size)
        if step > granule and view[pos:end] == _ZERO_BLOCK[:end - pos]:
            zero_runs = [(pos, end)]
        else:
            zero_runs = []
            for g in range(pos, end, granule):
                ge = min(g + granule, size)
                if _granule_is_zero(view, g, ge):
                    if zero_runs and zero_runs[-1][1] == g:
                        zero_runs[-1] = (zero_runs[-1][0], ge)
                    else:
                        zero_runs.append((g, ge))
        if want_zero:
            pieces = zero_runs
        else:
            pieces, cursor = [], pos
            for zs, ze in zero_runs:
                if zs > cursor:
                    pieces.append((cursor, zs))
                cursor = ze
            if cursor < end:
                pieces.append((cursor, end))
        for s, e in pieces:
            if runs and runs[-1][1] == s:
                runs[-1] = (runs[-1][0], e)
            else:
                runs.append((s, e))
        pos = end
    return runs


def zero_ranges(buffer, granule: int = 4096) -> list[tuple[int, int]]:
    return _runs(buffer, granule, True)


def nonzero_ranges(buffer, granule: int = 4096) -> list[tuple[int, int]]:
    return _runs(buffer, granule, False)


def is_zero(buffer) -> bool:
    view = _bytes_view(buffer)
    return _granule_is_zero(view, 0, len(view)) if len(view) else True


def page_rows(buffer, size: int, flags_at: int, mapping_at: int, mapcount_at: int, head_at: int,
              hot_flags: int, exact_types, top_types) -> list[int]:
    """The struct pages a dump-level scan decodes (the C function's rules, row by row)."""
    if not (16 <= size <= 4096 and 0 <= flags_at <= size - 8 and 0 <= mapping_at <= size - 8
            and -1 <= mapcount_at <= size - 4 and -1 <= head_at <= size - 8):
        raise ValueError("page_rows: a field lies outside the struct page")
    view = _bytes_view(buffer)
    exact, top = set(exact_types), set(top_types)
    out = []
    for i in range(len(view) // size):
        row = view[i * size:(i + 1) * size]
        if head_at >= 0 and row[head_at + 7] & 1:
            continue
        hit = bool(int.from_bytes(row[flags_at:flags_at + 8], "big") & hot_flags) or bool(row[mapping_at + 7] & 1)
        if not hit and mapcount_at >= 0:
            hit = row[mapcount_at] in top or int.from_bytes(row[mapcount_at:mapcount_at + 4], "big", signed=True) in exact
        if hit:
            out.append(i)
    return out
