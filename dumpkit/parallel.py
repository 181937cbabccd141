"""An ordered parallel map with bounded memory: the one pipeline every "all cores" loop uses.

``ordered_map(fn, items, workers, max_in_flight)`` yields ``fn(item)`` for each item in
the order of `items`, computing up to `max_in_flight` of them ahead on a thread pool of
`workers` threads.  Threads pay where `fn` releases the GIL (zlib-ng inflate and deflate,
hashing, pread).  `items` is consumed lazily, so a stream of any length costs at most
`max_in_flight` results (and their inputs) at a time.  With one worker, or one item in
flight, `fn` runs inline: the serial result, no thread.

An exception of `fn` is raised where its result would have been yielded; stopping the
generator early (close, break, an exception in the consumer) cancels what has not
started and waits for what has, so no thread outlives the map.
"""

from __future__ import annotations

import collections
import concurrent.futures
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                max_in_flight: int | None = None) -> Iterator[R]:
    """`fn` over `items` on `workers` threads, results in input order, at most `max_in_flight`
    (default 2 x workers) submitted and not yet yielded."""
    window = max(1, max_in_flight if max_in_flight is not None else 2 * workers)
    if workers <= 1 or window <= 1:
        for item in items:
            yield fn(item)
        return
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="ordered-map")
    pending: collections.deque = collections.deque()
    try:
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3          # mallopt parameters (glibc malloc.h)


def reuse_large_buffers() -> bool:
    """Let freed MiB-sized buffers be reused rather than handed back to the kernel (glibc's
    malloc maps each one afresh and unmaps it when freed, or trims its heaps soon, so every
    inflated unit or read block lands on new pages that fault in one by one: a tenth of a
    pipeline's CPU).  For the CLI processes; True where it took (glibc)."""
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1
    # 64 MiB kept free at most on top of a heap: a crashkernel of a few hundred MiB has room
    return mallopt(_M_TRIM_THRESHOLD, 64 << 20) == 1 and ok


__all__ = ["ordered_map", "reuse_large_buffers"]
