"""dumpkit.parallel.ordered_map: the results of a serial map, in order, with bounded memory."""

from __future__ import annotations

import threading
import time

import pytest

from dumpkit.parallel import ordered_map


def _slow_square(x: int) -> int:
    time.sleep(0.001 * (x % 3))          # later items often finish first
    return x * x


@pytest.mark.parametrize("workers,window", [(1, None), (2, 2), (4, 3), (8, None)])
def test_results_in_input_order_as_the_serial_map(workers, window):
    assert list(ordered_map(_slow_square, range(50), workers, window)) == [x * x for x in range(50)]


def test_at_most_max_in_flight_items_taken_ahead_of_the_consumer():
    taken = []

    def items():
        for i in range(100):
            taken.append(i)
            yield i

    it = ordered_map(lambda x: x, items(), workers=4, max_in_flight=5)
    assert next(it) == 0
    assert len(taken) <= 5
    it.close()


def test_an_exception_of_fn_is_raised_in_order_and_no_thread_outlives_the_map():
    def fn(x):
        if x == 3:
            raise ValueError("three")
        return x

    before = threading.active_count()
    got = []
    with pytest.raises(ValueError, match="three"):
        for v in ordered_map(fn, range(10), workers=3, max_in_flight=4):
            got.append(v)
    assert got == [0, 1, 2]
    assert threading.active_count() == before


def test_stopping_early_cancels_the_rest():
    calls = []

    def fn(x):
        calls.append(x)
        return x

    it = ordered_map(fn, range(1000), workers=2, max_in_flight=4)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    assert len(calls) <= 3 + 4
