"""Fast native helpers: the CKSM checksum and zero-granule scanning.

CKSM (the z/Architecture CHECKSUM instruction, used for the os_info and IPL
parameter block checksums) works like this: read the data as a sequence of
32-bit big-endian words, padding a short final word with zero bytes on its
right.  Starting from a 32-bit value (``initial``, normally 0), add each word;
whenever the sum no longer fits in 32 bits, drop the carry bit and add 1 to
the low 32 bits instead (one's-complement, "end-around carry" addition).  The
answer is that 32-bit sum as it stands: unlike the Internet checksum it is not
inverted, and unlike Linux's generic ``csum_partial`` it is not folded down to
16 bits, so all 32 bits must match.

Functions (all accept any contiguous bytes-like object and do not copy it):

* ``csum_partial(buffer, initial=0) -> int``
* ``zero_ranges(buffer, granule=4096) -> list[tuple[int, int]]``: byte ranges
  of maximal runs of all-zero granules (the last granule may be short).
* ``nonzero_ranges(buffer, granule=4096)``: the complementary runs.
* ``is_zero(buffer) -> bool``

``native.reference`` holds slow pure-Python versions that define the expected
results.
"""
try:
    from ._native import csum_partial, is_zero, nonzero_ranges, zero_ranges
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ImportError("native extension not built: run `make install`") from exc

__all__ = ["csum_partial", "zero_ranges", "nonzero_ranges", "is_zero"]
