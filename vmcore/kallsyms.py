"""The kernel's own symbol table, from the dump alone: kallsyms through VMCOREINFO (6.0+).

scripts/kallsyms compresses every name with a 256-entry token table; the tables are
  kallsyms_num_syms      u32    number of symbols
  kallsyms_names         u8[]   per symbol: length (1 byte, or 2 with bit 7 set: ULEB128 in
                                6.1+), then that many token numbers; the first character of
                                the expansion is the symbol type (T, t, D, ...)
  kallsyms_token_table   char[] NUL-terminated token strings, back to back
  kallsyms_token_index   u16[256] offset of each token in the token table
  kallsyms_offsets       s32[]  per symbol: offset from kallsyms_relative_base, or with
                                CONFIG_KALLSYMS_ABSOLUTE_PERCPU an absolute value when >= 0
                                and relative_base - 1 - offset when < 0
  kallsyms_relative_base u64
The decoded addresses are checked against VMCOREINFO's own SYMBOL(_stext): that picks the
offset encoding and corrects a KASLR offset the tables did not get relocated by.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass

from dumpkit.errors import BadInputError
from meminfo_abi.stackframe import KALLSYMS_MAX_SYMS, KALLSYMS_NAME_LONG, KALLSYMS_TOKENS

KALLSYMS_KEYS = ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table", "kallsyms_token_index",
                 "kallsyms_offsets", "kallsyms_relative_base")
MAX_NAMES_BYTES = 64 << 20
MAX_TOKEN_TABLE = 64 << 10


def decode_names(names: bytes, count: int, token_table: bytes, token_index: list[int]) -> list[tuple[str, str]]:
    """(type, name) per symbol from the compressed name stream."""
    if len(token_index) != KALLSYMS_TOKENS:
        raise BadInputError(f"kallsyms_token_index has {len(token_index)} entries, not {KALLSYMS_TOKENS}")
    tokens = []
    for off in token_index:
        if off >= len(token_table):
            raise BadInputError(f"kallsyms token offset {off} is past the token table ({len(token_table)} bytes)")
        end = token_table.find(b"\0", off)
        tokens.append(token_table[off:end if end >= 0 else len(token_table)].decode("latin-1"))
    out = []
    pos = 0
    for i in range(count):
        if pos >= len(names):
            raise BadInputError(f"kallsyms_names ends after {i} of {count} symbols")
        n = names[pos]
        pos += 1
        if n & KALLSYMS_NAME_LONG:
            if pos >= len(names):
                raise BadInputError(f"kallsyms_names ends inside symbol {i}'s length")
            n = (n & 0x7F) | (names[pos] << 7)
            pos += 1
        if pos + n > len(names):
            raise BadInputError(f"kallsyms_names: symbol {i} runs past the table")
        text = "".join(tokens[b] for b in names[pos:pos + n])
        pos += n
        if not text:
            raise BadInputError(f"kallsyms_names: symbol {i} is empty")
        out.append((text[0], text[1:]))
    return out


def decode_addresses(offsets: bytes, count: int, relative_base: int, absolute_percpu: bool) -> list[int]:
    vals = struct.unpack(f">{count}i", offsets[:4 * count])
    if absolute_percpu:
        return [v if v >= 0 else (relative_base - 1 - v) & (2**64 - 1) for v in vals]
    return [(relative_base + (v & 0xFFFFFFFF)) & (2**64 - 1) for v in vals]


@dataclass
class Symbol:
    name: str
    type: str
    address: int
    size: int           # up to the next higher address (as the kernel's kallsyms_lookup_size_offset)

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "address": self.address, "size": self.size}


class SymbolTable:
    """Sorted symbols: name -> address and address -> name+off/size."""

    def __init__(self, symbols: list[tuple[str, str, int]], source: str = "kallsyms", kaslr_shift: int = 0):
        self.source = source
        self.kaslr_shift = kaslr_shift
        order = sorted(range(len(symbols)), key=lambda i: (symbols[i][2], i))
        self.symbols: list[Symbol] = []
        addrs = [symbols[i][2] for i in order]
        for k, i in enumerate(order):
            t, name, a = symbols[i]
            # size: distance to the next symbol at a higher address (kernel/kallsyms.c does the same)
            j = bisect.bisect_right(addrs, a, lo=k)
            size = addrs[j] - a if j < len(addrs) else 0
            self.symbols.append(Symbol(name, t, a, size))
        self._addrs = addrs
        self._by_name: dict[str, Symbol] = {}
        for s in self.symbols:
            self._by_name.setdefault(s.name, s)

    def __len__(self) -> int:
        return len(self.symbols)

    def by_name(self, name: str) -> Symbol | None:
        return self._by_name.get(name)

    def lookup(self, addr: int) -> tuple[Symbol, int] | None:
        """The symbol containing addr (text-like symbols preferred at one address), and the offset."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0:
            return None
        a = self._addrs[i]
        # several symbols at one address: the first in kallsyms order, as the kernel's
        # get_symbol_pos picks (scripts/kallsyms sorts the preferred name first)
        while i > 0 and self._addrs[i - 1] == a:
            i -= 1
        best = self.symbols[i]
        if best.size and addr - a >= best.size:
            return None
        if not best.size and addr != a:
            return None
        return best, addr - a

    def describe(self, addr: int) -> str:
        hit = self.lookup(addr)
        if hit is None:
            return "?"
        s, off = hit
        return f"{s.name}+0x{off:x}/0x{s.size:x}"


def load_kallsyms(read_virt, symbol, known: dict[str, int] | None = None) -> SymbolTable:
    """Decode kallsyms through VMCOREINFO's SYMBOL() addresses; read_virt(addr, n) reads kernel
    virtual memory, symbol(name) gives SYMBOL(name) or None; known (every SYMBOL() of
    VMCOREINFO) picks the offset encoding that agrees with most of them."""
    addr = {k: symbol(k) for k in KALLSYMS_KEYS}
    missing = [k for k, v in addr.items() if v is None]
    if missing:
        raise BadInputError("VMCOREINFO has no " + ", ".join(f"SYMBOL({k})" for k in missing) +
                            " (kernels before 6.0 do not export kallsyms): no symbols without a vmlinux")
    count = struct.unpack(">I", read_virt(addr["kallsyms_num_syms"], 4))[0]
    if not 0 < count <= KALLSYMS_MAX_SYMS:
        raise BadInputError(f"kallsyms_num_syms={count} is not a plausible symbol count")
    relative_base = struct.unpack(">Q", read_virt(addr["kallsyms_relative_base"], 8))[0]
    index = list(struct.unpack(">256H", read_virt(addr["kallsyms_token_index"], 2 * KALLSYMS_TOKENS)))
    table_len = min(MAX_TOKEN_TABLE, max(index) + 256)
    token_table = read_virt(addr["kallsyms_token_table"], table_len)
    # the names stream: at most 2 + 255*... bytes per symbol; read what lies before the next table
    span = addr["kallsyms_token_table"] - addr["kallsyms_names"]
    if not 0 < span <= MAX_NAMES_BYTES:
        span = min(MAX_NAMES_BYTES, count * 64)
    names = read_virt(addr["kallsyms_names"], span)
    decoded = decode_names(names, count, token_table, index)
    offsets = read_virt(addr["kallsyms_offsets"], 4 * count)
    stext = symbol("_stext")
    if stext is None:
        raise BadInputError("VMCOREINFO has no SYMBOL(_stext) to check kallsyms against")
    at = {n: i for i, (t, n) in reversed(list(enumerate(decoded)))}
    if "_stext" not in at:
        raise BadInputError("kallsyms has no _stext to check its addresses against VMCOREINFO")
    pairs = [(at[n], v) for n, v in (known or {"_stext": stext}).items() if n in at]
    best = None
    for absolute in (False, True):
        addrs = decode_addresses(offsets, count, relative_base, absolute)
        shift = stext - addrs[at["_stext"]]
        matches = sum((addrs[i] + shift) & (2**64 - 1) == v for i, v in pairs)
        ordered = all(x <= y for x, y in zip(addrs, addrs[1:]))
        score = (matches, ordered, not absolute)
        if best is None or score > best[0]:
            best = (score, addrs, shift, absolute)
    _score, addrs, shift, absolute = best
    syms = [(t, n, (a + shift) & (2**64 - 1)) for (t, n), a in zip(decoded, addrs)]
    src = "kallsyms (absolute percpu)" if absolute else "kallsyms"
    return SymbolTable(syms, src, shift)
