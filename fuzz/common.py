"""What every harness asserts, wrapped around one input.

A harness is a module in fuzz/harnesses/ with
    MAX_LEN          largest input libFuzzer generates (bytes)
    target(data)     feed the bytes to the parser(s); may raise DumpToolError
    seeds(ctx)       (optional) seed inputs built from the suite's own outputs
    (fuzz/harnesses/__init__.py REQUIRES: files that must exist, for parsers others are writing)

`run_one(target, data)` turns the three promises into exceptions libFuzzer reports:
  * only the suite's typed errors (DumpToolError) escape - anything else propagates;
  * an input takes at most LIMITS.seconds (SlowInput; libFuzzer's -timeout and the runner's
    wall clock kill a worker that never comes back);
  * the process' peak RSS stays below its level after warm-up + LIMITS.rss_growth_mb
    (MemoryBound), and the address space is capped (RLIMIT_AS, set by the worker), so a
    parser that believes a length field and allocates for it fails with MemoryError.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

from dumpkit.errors import DumpToolError


class FuzzViolation(AssertionError):
    """An input broke a harness promise other than 'only DumpToolError escapes'."""


class SlowInput(FuzzViolation):
    pass


class MemoryBound(FuzzViolation):
    pass


@dataclass
class Limits:
    seconds: float = float(os.environ.get("FUZZ_INPUT_SECONDS", "5.0"))
    rss_growth_mb: int = int(os.environ.get("FUZZ_RSS_GROWTH_MB", "384"))
    baseline_mb: float | None = None      # peak RSS after the warm-up inputs


LIMITS = Limits()
_count = 0
WARMUP = 16


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(target, data: bytes) -> float:
    """Seconds `target(data)` took; DumpToolError is the one allowed outcome besides success."""
    start = time.monotonic()
    try:
        target(data)
    except DumpToolError:
        pass
    return time.monotonic() - start


def run_one(target, data: bytes) -> None:
    """Run one input through `target` and check the promises (raises on a violation)."""
    global _count
    elapsed = _timed(target, data)
    _count += 1
    if _count == WARMUP or (LIMITS.baseline_mb is None and _count > WARMUP):
        LIMITS.baseline_mb = peak_rss_mb()
    if elapsed > LIMITS.seconds and _count > 1:
        raise SlowInput(f"input of {len(data)} bytes took {elapsed:.2f} s (bound {LIMITS.seconds} s)")
    if LIMITS.baseline_mb is not None:
        peak = peak_rss_mb()
        if peak > LIMITS.baseline_mb + LIMITS.rss_growth_mb:
            raise MemoryBound(f"input of {len(data)} bytes raised peak RSS to {peak:.0f} MiB "
                              f"(bound {LIMITS.baseline_mb:.0f} + {LIMITS.rss_growth_mb} MiB)")


def replay(target, data: bytes) -> None:
    """run_one without the warm-up bookkeeping: for regression tests."""
    elapsed = _timed(target, data)
    if elapsed > LIMITS.seconds * 5:
        raise SlowInput(f"input of {len(data)} bytes took {elapsed:.2f} s")


def scratch_dir() -> str:
    """A per-process directory on tmpfs (when there is one) for harnesses that need files."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    import tempfile
    return tempfile.mkdtemp(prefix=f"s390fuzz-{os.getpid()}-", dir=base)
