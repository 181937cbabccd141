"""Sizes as users type them: 1G, 256M, 512K, 0x10000000, 4096."""

from __future__ import annotations

import re

from dumpkit.errors import UsageError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_RE = re.compile(r"^\s*(0x[0-9a-fA-F]+|\d+)\s*([KMGTP]?)(?:i?B)?\s*$", re.IGNORECASE)

MIB = 1 << 20
SIZE_LIMIT = 1 << 64            # addresses and sizes of s390x storage are 64-bit
# the most storage an s390x Linux system can have: CONFIG_MAX_PHYSMEM_BITS is at most 53
MEMORY_LIMIT = 1 << 53
_SHOWN = 24                     # characters of a bad value quoted in a message


def _quoted(text: str) -> str:
    """The value as typed, shortened when long (a 5000-digit number stays a one-line message)."""
    text = str(text)
    if len(text) <= _SHOWN:
        return repr(text)
    return repr(text[:_SHOWN] + "...") + f" ({len(text)} characters)"


def parse_size(text: str, what: str = "size", limit: int = SIZE_LIMIT) -> int:
    """A size or address as users type it, below `limit` (2^64 unless the caller knows better)."""
    m = _RE.match(str(text))
    if not m:
        raise UsageError(f"{what} {_quoted(text)} is not a size (examples: 1G, 256M, 0x10000000)")
    digits = m.group(1)
    hexa = digits[:2].lower() == "0x"
    significant = (digits[2:] if hexa else digits).lstrip("0")
    # never convert more digits than any 64-bit value has (int() of 5000 digits is an error)
    if len(significant) > (16 if hexa else 20):
        raise UsageError(f"{what} {_quoted(text)} is too large (more than 64 bits)")
    value = int(digits, 0) * _UNITS[m.group(2).upper()]
    if value >= limit:
        bound = "more than 64 bits" if limit == SIZE_LIMIT else f"must be below {human(limit)}"
        raise UsageError(f"{what} {_quoted(text)} is too large ({bound})")
    return value


def parse_memory_size(text: str, what: str = "memory size") -> int:
    """A storage size (create --memory, hotplug --add-memory), below MEMORY_LIMIT (8 PiB)."""
    return parse_size(text, what, MEMORY_LIMIT)


def parse_crashkernel(text: str) -> tuple[int, int | None]:
    """'SIZE[@BASE]' as on the kernel command line."""
    size, _, base = str(text).partition("@")
    return parse_size(size, "crashkernel size"), (parse_size(base, "crashkernel base") if base else None)


def human(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"
