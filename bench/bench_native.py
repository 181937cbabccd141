"""Throughput of the native helpers against the memory-bandwidth limit.

Full run: 1 GiB buffers (about 3 GiB of RAM in all); ``--quick``: 64 MiB.
The limit is memcpy of a buffer of the same size (bench.common.memcpy_throughput):
a scan that reads every byte once cannot beat streaming the buffer through
memory, so ``ratio`` says how close a function gets to the hardware.
"""
from __future__ import annotations

import argparse
import os
import sys

from bench.common import MiB, GiB, Result, main_for, measure, memcpy_throughput, peak_rss_mb, size

TARGET = 0.8  # fraction of memcpy throughput wanted from a full scan


def random_buffer(nbytes: int) -> bytearray:
    """``nbytes`` of random-looking data: one 1 MiB os.urandom block repeated."""
    block = os.urandom(MiB)
    buf = bytearray(nbytes)
    view = memoryview(buf)
    for start in range(0, nbytes, MiB):
        end = min(start + MiB, nbytes)
        view[start:end] = block[: end - start]
    view.release()
    return buf


def run(args: argparse.Namespace) -> list[Result]:
    import native
    from native import reference

    nbytes = size(args, GiB, 64 * MiB)
    ref_bytes = size(args, 4 * MiB, 1 * MiB)
    label = f"{nbytes // MiB} MiB"
    rows: list[Result] = []

    data = random_buffer(nbytes)
    memcpy = memcpy_throughput(data)
    rows.append(Result(f"memcpy {label} (limit)", memcpy, "B/s"))

    # csum_partial: C vs memcpy, and the pure-Python reference (per byte).
    csum = nbytes / measure(lambda: native.csum_partial(data))
    rows.append(Result(f"csum_partial {label}", csum, "B/s", "memcpy", csum / memcpy, TARGET))

    sample = bytes(memoryview(data)[:ref_bytes])
    if reference.csum_partial(sample) != native.csum_partial(sample):
        raise AssertionError("csum_partial: C and reference disagree on the sample")
    ref = ref_bytes / measure(lambda: reference.csum_partial(sample), repeat=1)
    rows.append(Result(
        f"reference csum_partial (pure Python, measured on {ref_bytes // MiB} MiB, "
        f"extrapolated per byte)",
        ref, "B/s", "csum_partial (C)", ref / csum,
    ))

    # Zero scanning.  Random data: every 4 KiB granule exits after 8 bytes.
    zr_random = nbytes / measure(lambda: native.zero_ranges(data))
    rows.append(Result(f"zero_ranges {label} random data (early exit, info)",
                       zr_random, "B/s", "memcpy", zr_random / memcpy))
    del data

    # All-zero buffer: every byte must be read (the worst case).  bytearray()
    # writes its zeros, so the pages are real memory, not the shared zero page.
    zeros = bytearray(nbytes)
    if native.zero_ranges(zeros) != [(0, nbytes)]:
        raise AssertionError("zero_ranges: wrong result on an all-zero buffer")
    zr_zero = nbytes / measure(lambda: native.zero_ranges(zeros))
    rows.append(Result(f"zero_ranges {label} all zero (full scan)",
                       zr_zero, "B/s", "memcpy", zr_zero / memcpy, TARGET))
    iz = nbytes / measure(lambda: native.is_zero(zeros))
    rows.append(Result(f"is_zero {label} all zero (full scan)",
                       iz, "B/s", "memcpy", iz / memcpy, TARGET))

    # Mixed: alternating 1 MiB runs of zero and random data, like a real dump.
    view = memoryview(zeros)
    block = os.urandom(MiB)
    for start in range(MiB, nbytes, 2 * MiB):
        end = min(start + MiB, nbytes)
        view[start:end] = block[: end - start]
    view.release()
    expected = nbytes // (2 * MiB) + (nbytes % (2 * MiB) > 0)
    if len(native.zero_ranges(zeros)) != expected:
        raise AssertionError("zero_ranges: wrong run count on the mixed buffer")
    zr_mixed = nbytes / measure(lambda: native.zero_ranges(zeros))
    rows.append(Result(f"zero_ranges {label} half zero, 1 MiB runs",
                       zr_mixed, "B/s", "memcpy", zr_mixed / memcpy, TARGET))
    nz_mixed = nbytes / measure(lambda: native.nonzero_ranges(zeros))
    rows.append(Result(f"nonzero_ranges {label} half zero, 1 MiB runs",
                       nz_mixed, "B/s", "memcpy", nz_mixed / memcpy, TARGET))
    del zeros

    rows.append(Result("peak RSS of the benchmark process", peak_rss_mb(), "MiB"))
    return rows


if __name__ == "__main__":
    sys.exit(main_for(run, "native"))
