"""The s390 TOD clock: its epoch and resolution, conversions to Unix time and text.

Bit 51 of the 64-bit TOD clock ticks once a microsecond; the value 0x7D91048BCA000000 is
1970-01-01 00:00:00 UTC (the clock's epoch is 1900).  Dump headers, end markers and the
multi-volume parameter table carry TOD values.
"""

from __future__ import annotations

import datetime as _dt
import time

TOD_UNIX_EPOCH = 0x7D91048BCA000000          # TOD value of 1970-01-01 00:00:00 UTC
TOD_USEC_SHIFT = 12                          # bit 51 of the TOD clock = 1 microsecond
TOD_MAX = (1 << 64) - 1


def unix_to_tod(seconds: float) -> int:
    """Unix time (seconds, may be fractional) -> TOD clock value."""
    usec = round(seconds * 1_000_000)
    return max(0, min(TOD_MAX, TOD_UNIX_EPOCH + (usec << TOD_USEC_SHIFT)))


def unix_ns_to_tod(ns: int) -> int:
    return max(0, min(TOD_MAX, TOD_UNIX_EPOCH + ((ns // 1000) << TOD_USEC_SHIFT)))


def tod_to_unix(tod: int) -> float:
    """TOD clock value -> Unix time in seconds (microsecond resolution)."""
    return ((tod - TOD_UNIX_EPOCH) >> TOD_USEC_SHIFT) / 1_000_000


def tod_now() -> int:
    return unix_ns_to_tod(time.time_ns())


def tod_to_datetime(tod: int) -> _dt.datetime | None:
    """UTC datetime of a TOD value; None for 0 (no time stamp) or out of range."""
    if tod == 0:
        return None
    try:
        return _dt.datetime.fromtimestamp(tod_to_unix(tod), tz=_dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def tod_text(tod: int) -> str:
    when = tod_to_datetime(tod)
    return "none" if when is None else when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
