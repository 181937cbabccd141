"""The checksum API of the s390 dump ABIs: the 32-bit CKSM sum (ref-abi.md §2.4)."""

from native import csum_partial, zero_ranges  # noqa: F401  (re-exported API)

__all__ = ["csum_partial", "zero_ranges"]
