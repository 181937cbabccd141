"""The one ordered parallel map of the suite: work on all cores, results in their order.

Page compression (kdump writer), inflating dump units and checksumming large ranges all have
the same shape: a stream of items read in order, a function that releases the GIL (zlib,
csum_partial), and a consumer that must see the results in the order of the items, with a
bounded number of items in memory at any time.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, max_in_flight: int | None = None) -> Iterator[R]:
    """fn(item) for every item of `items`, yielded in the order of the items.

    With workers > 1 the calls run on that many threads while the items are still being
    produced (read ahead); at most `max_in_flight` (default 2 * workers) items are taken and
    not yet yielded, so memory stays bounded.  With workers <= 1 it is the plain serial map, no
    thread.  An exception of fn is raised where its result would have been yielded; items not
    yet started are dropped when the consumer stops early (close the generator, or let it go)."""
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    limit = max(1, max_in_flight or 2 * workers)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="ordered-map")
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
