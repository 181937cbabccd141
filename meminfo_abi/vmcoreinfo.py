"""The VMCOREINFO note text: KEY=VALUE lines describing the crashed kernel.

the VMCOREINFO note: Documentation/admin-guide/kdump/vmcoreinfo.rst, arch/s390/kernel/crash_dump.c.  The kernel writes one line per item into a VMCOREINFO_BYTES
buffer, with these value formats:
  SYMBOL(name)=%lx   OFFSET(struct.member)=%lu   SIZE(name)=%lu
  LENGTH(name)=%lu   NUMBER(name)=%ld            KERNELOFFSET=%lx
plus OSRELEASE=, PAGESIZE=, BUILD-ID=, CONFIG_X=y and CRASHTIME= (appended at crash time).

Parsing never fails on odd lines (they are kept in `unparsed`); the typed
accessors raise BadInputError when the value of an existing key does not parse.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

from dumpkit.errors import BadInputError

VMCOREINFO_BYTES = 4096                 # the kernel's vmcoreinfo_data buffer
VMCOREINFO_NOTE_NAME = "VMCOREINFO"
MAX_VMCOREINFO_INPUT = 1 << 20          # what parse_vmcoreinfo accepts at most

_U64_MAX = (1 << 64) - 1
_S64_MIN = -(1 << 63)
_S64_MAX = (1 << 63) - 1
_HEX = re.compile(r"(?:0[xX])?[0-9a-fA-F]+")
_UDEC = re.compile(r"[0-9]+")
_SDEC = re.compile(r"-?[0-9]+")


def _show(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:64] + "...")


class VmcoreInfo:
    """Ordered KEY=VALUE entries of a VMCOREINFO text."""

    def __init__(self, entries: Mapping[str, str] | None = None, unparsed: Iterable[str] = ()) -> None:
        self.entries: dict[str, str] = {}
        self.unparsed: list[str] = list(unparsed)
        for k, v in (entries or {}).items():
            self.set(k, v)

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_pairs(cls, pairs: Mapping[str, str | int] | Iterable[tuple[str, str | int]] = ()) -> "VmcoreInfo":
        """Entries from (key, value) pairs or a mapping; int values are written in decimal."""
        info = cls()
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        for k, v in items:
            info.set(k, v)
        return info

    def set(self, key: str, value: str | int) -> None:
        """Set KEY=VALUE (a new key goes last, an existing one keeps its place)."""
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise BadInputError(f"vmcoreinfo: value of {key!r} must be str or int, not {type(value).__name__}")
        value = str(value)
        if not isinstance(key, str) or not key or "=" in key or "\n" in key:
            raise BadInputError(f"vmcoreinfo: bad key {key!r}")
        if "\n" in value:
            raise BadInputError(f"vmcoreinfo: value of {key} contains a newline: {_show(value)}")
        try:
            (key + value).encode("utf-8")
        except UnicodeEncodeError:
            raise BadInputError(f"vmcoreinfo: {key!r}={_show(value)} is not valid UTF-8 text") from None
        self.entries[key] = value

    @staticmethod
    def _check(value: int, lo: int, hi: int, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise BadInputError(f"vmcoreinfo: value {value!r} for {key} out of range")
        return value

    def set_symbol(self, name: str, addr: int) -> None:
        key = f"SYMBOL({name})"
        self.set(key, f"{self._check(addr, 0, _U64_MAX, key):x}")

    def set_size(self, name: str, value: int) -> None:
        key = f"SIZE({name})"
        self.set(key, str(self._check(value, 0, _U64_MAX, key)))

    def set_offset(self, name: str, value: int) -> None:
        """name is "struct.member"."""
        key = f"OFFSET({name})"
        self.set(key, str(self._check(value, 0, _U64_MAX, key)))

    def set_length(self, name: str, value: int) -> None:
        key = f"LENGTH({name})"
        self.set(key, str(self._check(value, 0, _U64_MAX, key)))

    def set_number(self, name: str, value: int) -> None:
        key = f"NUMBER({name})"
        self.set(key, str(self._check(value, _S64_MIN, _S64_MAX, key)))

    def set_kerneloffset(self, value: int) -> None:
        self.set("KERNELOFFSET", f"{self._check(value, 0, _U64_MAX, 'KERNELOFFSET'):x}")

    # -- output -----------------------------------------------------------------------
    def text(self) -> str:
        """KEY=VALUE\\n for every entry, in order (unparsed lines are not written)."""
        return "".join(f"{k}={v}\n" for k, v in self.entries.items())

    def to_bytes(self) -> bytes:
        return self.text().encode("utf-8")

    # -- raw access ---------------------------------------------------------------------
    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VmcoreInfo):
            return NotImplemented
        return list(self.entries.items()) == list(other.entries.items()) and self.unparsed == other.unparsed

    def __repr__(self) -> str:
        return f"VmcoreInfo({len(self.entries)} entries, {len(self.unparsed)} unparsed lines)"

    # -- typed access -------------------------------------------------------------------
    def _num(self, key: str, pattern: re.Pattern, base: int, lo: int, hi: int, what: str) -> int | None:
        value = self.entries.get(key)
        if value is None:
            return None
        if not pattern.fullmatch(value):
            raise BadInputError(f"vmcoreinfo: {key}={_show(value)} is not a {what} number")
        n = int(value, base)
        if not lo <= n <= hi:
            raise BadInputError(f"vmcoreinfo: {key}={_show(value)} does not fit 64 bits")
        return n

    def _hex(self, key: str) -> int | None:
        return self._num(key, _HEX, 16, 0, _U64_MAX, "hexadecimal")

    def _udec(self, key: str) -> int | None:
        return self._num(key, _UDEC, 10, 0, _U64_MAX, "decimal")

    def _sdec(self, key: str) -> int | None:
        return self._num(key, _SDEC, 10, _S64_MIN, _S64_MAX, "signed decimal")

    def symbol(self, name: str) -> int | None:
        """SYMBOL(name): an address (hex without 0x)."""
        return self._hex(f"SYMBOL({name})")

    def size(self, name: str) -> int | None:
        return self._udec(f"SIZE({name})")

    def offset(self, name: str) -> int | None:
        """OFFSET(struct.member)."""
        return self._udec(f"OFFSET({name})")

    def length(self, name: str) -> int | None:
        return self._udec(f"LENGTH({name})")

    def number(self, name: str) -> int | None:
        """NUMBER(name): decimal, may be negative."""
        return self._sdec(f"NUMBER({name})")

    def config(self, name: str) -> str | None:
        """CONFIG_<name> value ("y"), name given with or without the CONFIG_ prefix."""
        return self.entries.get(name if name.startswith("CONFIG_") else f"CONFIG_{name}")

    @property
    def osrelease(self) -> str | None:
        return self.entries.get("OSRELEASE")

    @property
    def build_id(self) -> str | None:
        return self.entries.get("BUILD-ID")

    @property
    def page_size(self) -> int | None:
        return self._udec("PAGESIZE")

    @property
    def kerneloffset(self) -> int:
        """KERNELOFFSET (hex, the KASLR offset); 0 when absent."""
        v = self._hex("KERNELOFFSET")
        return 0 if v is None else v

    @property
    def crashtime(self) -> int | None:
        """CRASHTIME: seconds since the epoch at the crash."""
        return self._sdec("CRASHTIME")


def parse_vmcoreinfo(text: bytes | bytearray | memoryview | str) -> VmcoreInfo:
    """Parse a VMCOREINFO text.

    Empty lines are skipped, lines without '=' are kept in `unparsed`, trailing
    NUL bytes (a zero-padded buffer) are dropped, invalid UTF-8 is replaced.
    A duplicated key keeps its first position and takes the last value.
    """
    if isinstance(text, str):
        if len(text) > MAX_VMCOREINFO_INPUT:
            raise BadInputError(f"vmcoreinfo text has {len(text)} characters, more than {MAX_VMCOREINFO_INPUT}")
        s = text
    else:
        if not isinstance(text, (bytes, bytearray, memoryview)):
            raise BadInputError(f"vmcoreinfo must be bytes or str, not {type(text).__name__}")
        raw = bytes(text)
        if len(raw) > MAX_VMCOREINFO_INPUT:
            raise BadInputError(f"vmcoreinfo text has {len(raw)} bytes, more than {MAX_VMCOREINFO_INPUT}")
        s = raw.decode("utf-8", errors="replace")
    s = s.rstrip("\0")
    info = VmcoreInfo()
    for line in s.split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            info.unparsed.append(line)
            continue
        info.entries[key] = value
    return info
