"""Sizes as users type them: 1G, 256M, 512K, 0x10000000, 4096."""

from __future__ import annotations

import re

from meminfo_abi.errors import UsageError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_RE = re.compile(r"^\s*(0x[0-9a-fA-F]+|\d+)\s*([KMGTP]?)(?:i?B)?\s*$", re.IGNORECASE)

MIB = 1 << 20


def parse_size(text: str, what: str = "size") -> int:
    m = _RE.match(str(text))
    if not m:
        raise UsageError(f"{what} {text!r} is not a size (examples: 1G, 256M, 0x10000000)")
    return int(m.group(1), 0) * _UNITS[m.group(2).upper()]


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
