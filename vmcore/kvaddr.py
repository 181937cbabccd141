"""Kernel virtual addresses of the dumped system: the s390 DAT walk from swapper_pg_dir, the
identity map and the kernel image mapping (KERNELOFFSET / KERNELOFFPHYS / IDENTITYBASE).

Memory below, meaning above: everything here reads the dump through Dump.read (physical);
`KernelSpace.read` is the one way the symbol, backtrace and read commands see virtual memory.
The walk yields real addresses; they equal the absolute (dump) addresses everywhere except
in a CPU's two lowcore pages, which no kernel table, stack or text lives in.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from meminfo_abi import dat
from dumpkit.errors import BadInputError, DumpToolError
from vmcore.inspect import virt_to_phys_for
from vmcore.model import Dump

U64 = (1 << 64) - 1
PAGE = 4096
_ENTRY_BLOCK = 2048             # bytes of table entries read at once (a page table's size)
_SEGMENT_MASK = (1 << dat._SEGMENT_SHIFT) - 1
_PT_INDEX = dat._PAGE_ENTRIES - 1
_ENTRIES = struct.Struct(f">{_ENTRY_BLOCK // 8}Q")
_TOP_LEVEL = {lv[1]: i for i, lv in enumerate(dat.DAT_LEVELS) if lv[1] is not None}   # ASCE type -> level


class TranslationError(BadInputError):
    """A DAT walk that met an invalid, out-of-range or unreadable entry: names address and level."""

    missing_table = False       # the walk failed only because a table is not in the dump


@dataclass
class Level:
    name: str               # "asce", "region-third", "segment", "page", ...
    table: int              # physical origin of the table
    index: int
    entry_addr: int
    entry: int

    def to_json(self) -> dict:
        return {"level": self.name, "table": self.table, "index": self.index,
                "entry_address": self.entry_addr, "entry": self.entry}


@dataclass
class Translation:
    virt: int
    phys: int
    page_size: int          # 4 KiB, 1 MiB (large segment) or 2 GiB (large region-third)
    asce: int
    levels: list[Level] = field(default_factory=list)
    protected: bool = False
    linear: int | None = None   # what the identity / kernel-image rule gives, where it applies

    def to_json(self) -> dict:
        return {"virtual": self.virt, "physical": self.phys, "page_size": self.page_size,
                "asce": self.asce, "protected": self.protected, "linear_mapping": self.linear,
                "levels": [lv.to_json() for lv in self.levels]}


class KernelSpace:
    """The kernel's address space in a dump: translate and read kernel virtual addresses."""

    def __init__(self, dump: Dump):
        self.dump = dump
        vi = dump.attrs.vmcoreinfo
        self.vi = vi
        self.linear_v2p = virt_to_phys_for(dump)
        self._identity_only = vi is None or vi.get("IDENTITYBASE") is None
        self._entry_cache: dict[int, int] = {}
        self.asce = self._find_asce()

    # -- the address-space-control element ----------------------------------------------------
    def symbol(self, name: str) -> int | None:
        """SYMBOL(name) from VMCOREINFO (a runtime, KASLR-relocated virtual address)."""
        if self.vi is None:
            return None
        text = self.vi.get(f"SYMBOL({name})")
        if text is None:
            return None
        try:
            return int(text, 16)
        except ValueError:
            raise BadInputError(f"VMCOREINFO SYMBOL({name})={text!r} is not a hex number") from None

    def symbols(self) -> dict[str, int]:
        """Every well-formed SYMBOL(name)=hex of VMCOREINFO."""
        out = {}
        for k, v in (self.vi.entries.items() if self.vi is not None else ()):
            if k.startswith("SYMBOL(") and k.endswith(")"):
                try:
                    out[k[7:-1]] = int(v, 16)
                except ValueError:
                    pass
        return out

    def _find_asce(self) -> int | None:
        """swapper_pg_dir as an ASCE: type and length from a CPU's CR1/CR7/CR13 that designates
        it, else from the table type its first valid entry carries."""
        pgd = self.symbol("swapper_pg_dir")
        if pgd is None:
            return None
        origin = self.linear_v2p(pgd)
        for cpu in self.dump.cpus:
            for cr in (1, 13, 7):
                v = cpu.crs[cr] if len(cpu.crs) > cr else 0
                if v & dat._ASCE_ORIGIN == origin and not v & dat._ASCE_REAL_SPACE:
                    return v
        try:
            table = self.dump.read(origin, PAGE)
        except DumpToolError:
            return None
        for (e,) in struct.iter_unpack(">Q", table):
            if e and not e & dat._REGION_ENTRY_INVALID:
                return origin | (e & dat._REGION_ENTRY_TYPE_MASK) | dat._ASCE_TABLE_LENGTH
        return None

    # -- the walk -----------------------------------------------------------------------------------
    def _entry(self, addr: int, virt: int, level: str) -> int:
        e = self._entry_cache.get(addr)
        if e is None:
            if len(self._entry_cache) > 1 << 16:
                self._entry_cache.clear()
            # the 2 KiB around the entry are of the same table (every DAT table is 2 KiB or a
            # multiple, aligned so): a walk of the neighbouring addresses needs them next
            block = addr & ~(_ENTRY_BLOCK - 1)
            try:
                raw = self.dump.read(block, _ENTRY_BLOCK)
            except DumpToolError:
                raw = None
            if raw is not None:
                self._entry_cache.update(zip(range(block, block + _ENTRY_BLOCK, 8), _ENTRIES.unpack(raw)))
                return self._entry_cache[addr]
            try:
                (e,) = struct.unpack(">Q", self.dump.read(addr, 8))
            except DumpToolError as exc:
                err = TranslationError(f"virtual address 0x{virt:x}: the {level} table entry at physical "
                                       f"0x{addr:x} is not in the dump ({exc})")
                err.missing_table = True
                raise err from None
            self._entry_cache[addr] = e
        return e

    def walk(self, virt: int) -> Translation:
        """The DAT walk of a kernel virtual address, every level kept."""
        if not 0 <= virt <= U64:
            raise BadInputError(f"virtual address {virt:#x} is not a 64-bit address")
        asce = self.asce
        if asce is None:
            raise TranslationError(f"virtual address 0x{virt:x}: no kernel page tables (VMCOREINFO has no "
                                   "SYMBOL(swapper_pg_dir) or its table is not in the dump)")
        dt = asce & dat._ASCE_TYPE_MASK
        start = _TOP_LEVEL[dt]
        tr = Translation(virt=virt, phys=0, page_size=PAGE, asce=asce)
        # address bits above the top table's reach must be zero
        top_shift = dat.DAT_LEVELS[start][2] + 11
        if top_shift < 64 and virt >> top_shift:
            raise TranslationError(f"virtual address 0x{virt:x} is beyond the {dat.DAT_LEVELS[start][0]} "
                                   f"table's reach (ASCE 0x{asce:x}): ASCE-type exception")
        table = asce & dat._ASCE_ORIGIN
        lo, hi = 0, asce & dat._ASCE_TABLE_LENGTH
        for name, ttype, shift, entries in dat.DAT_LEVELS[start:]:
            index = (virt >> shift) & (entries - 1)
            if ttype is not None and not lo <= index // dat._CRST_LENGTH_UNIT <= hi:
                raise TranslationError(f"virtual address 0x{virt:x}: {name} index {index} is outside the "
                                       f"table's offset/length ({lo}..{hi} x 512 entries): "
                                       f"{name}-translation exception")
            addr = table + index * dat.DAT_ENTRY_SIZE
            e = self._entry(addr, virt, name)
            tr.levels.append(Level(name, table, index, addr, e))
            if name == "page":
                if e & dat._PAGE_INVALID:
                    raise TranslationError(f"virtual address 0x{virt:x}: page-table entry 0x{e:016x} at "
                                           f"0x{addr:x} is invalid: page-translation exception")
                tr.protected |= bool(e & dat._PAGE_PROTECT)
                tr.phys = (e & dat._PAGE_ORIGIN) | (virt & (PAGE - 1))
                return self._done(tr)
            if e & dat._REGION_ENTRY_INVALID:
                raise TranslationError(f"virtual address 0x{virt:x}: {name}-table entry 0x{e:016x} at 0x{addr:x} "
                                       f"is invalid: {name}-translation exception")
            if e & dat._REGION_ENTRY_TYPE_MASK != ttype:
                raise TranslationError(f"virtual address 0x{virt:x}: {name}-table entry 0x{e:016x} at 0x{addr:x} "
                                       f"has table type {(e >> 2) & 3}, not {ttype >> 2}: translation-specification "
                                       "exception")
            if name == "segment":
                tr.protected |= bool(e & dat._SEGMENT_ENTRY_PROTECT)
                if e & dat._SEGMENT_ENTRY_LARGE:
                    tr.page_size = 1 << dat._SEGMENT_SHIFT
                    tr.phys = (e & dat._SEGMENT_ENTRY_ORIGIN_LARGE) | (virt & (tr.page_size - 1))
                    return self._done(tr)
                table = e & dat._SEGMENT_ENTRY_ORIGIN
                continue
            tr.protected |= bool(e & dat._REGION_ENTRY_PROTECT)
            if name == "region-third" and e & dat._REGION3_ENTRY_LARGE:
                tr.page_size = 1 << dat._REGION3_SHIFT
                tr.phys = (e & dat._REGION3_ENTRY_ORIGIN_LARGE) | (virt & (tr.page_size - 1))
                return self._done(tr)
            table = e & dat._REGION_ENTRY_ORIGIN
            lo, hi = (e & dat._REGION_ENTRY_OFFSET) >> 6, e & dat._REGION_ENTRY_LENGTH
        raise AssertionError("unreachable: the page level always returns")

    def _done(self, tr: Translation) -> Translation:
        lin = self.linear(tr.virt)
        tr.linear = lin
        return tr

    def linear(self, virt: int) -> int | None:
        """The identity / kernel-image rule of VMCOREINFO, for addresses it covers."""
        if self._identity_only:
            return virt if virt < self.dump.size else None
        p = self.linear_v2p(virt)
        return p if 0 <= p < self.dump.size else None

    def v2p(self, virt: int) -> int:
        """Physical address of a kernel virtual address: the DAT walk where the kernel's
        tables are in the dump, else (no swapper_pg_dir) the identity / image rule."""
        if self.asce is not None:
            try:
                return self.walk(virt).phys
            except TranslationError as exc:
                # a dump that left the page tables out still reads the identity / image mapping
                if not exc.missing_table or self.linear(virt) is None:
                    raise
        p = self.linear(virt)
        if p is None:
            raise TranslationError(f"virtual address 0x{virt:x}: no kernel page tables in the dump and "
                                   "outside the identity / kernel image mapping")
        return p

    def phys_runs(self, virt: int, length: int) -> list[tuple[int, int]]:
        """(physical, length) pieces of a virtual range, one walk per page table, 1 MiB segment
        or 2 GiB region (a page table's pages are read from its entries, large pages cost one
        walk), physically contiguous pieces merged."""
        if length < 0 or virt < 0 or virt + length > U64 + 1:
            raise BadInputError(f"virtual range 0x{virt:x}+0x{length:x} is not valid")
        out: list[tuple[int, int]] = []
        pos, end = virt, virt + length
        table = -1                      # the page table the last walk ended in (its segment's pages)
        while pos < end:
            phys = -1
            if table >= 0 and pos & ~_SEGMENT_MASK == seg_base:
                # the next page of the same segment: its entry in the page table just walked
                e = self._entry(table + ((pos >> dat._PAGE_SHIFT) & _PT_INDEX) * dat.DAT_ENTRY_SIZE, pos, "page")
                if not e & dat._PAGE_INVALID:
                    phys, step = e & dat._PAGE_ORIGIN, PAGE
            if phys < 0 and self.asce is not None:
                table = -1              # walk (an invalid entry is named there)
                try:
                    tr = self.walk(pos)
                    phys, step = tr.phys, tr.page_size
                    if tr.levels and tr.levels[-1].name == "page":
                        table, seg_base = tr.levels[-1].table, pos & ~_SEGMENT_MASK
                except TranslationError as exc:
                    if not exc.missing_table or self.linear(pos) is None:
                        raise
                    phys, step = self.v2p(pos), PAGE
            elif phys < 0:
                phys, step = self.v2p(pos), PAGE
            n = min(end, (pos // step + 1) * step) - pos
            if out and out[-1][0] + out[-1][1] == phys:
                out[-1] = (out[-1][0], out[-1][1] + n)
            else:
                out.append((phys, n))
            pos += n
        return out

    # -- reading ------------------------------------------------------------------------------------
    def read(self, virt: int, length: int) -> bytes:
        """Bytes at a kernel virtual address, page by page through the translation."""
        if length < 0 or virt < 0 or virt + length > U64 + 1:
            raise BadInputError(f"virtual range 0x{virt:x}+0x{length:x} is not valid")
        out = []
        pos, end = virt, virt + length
        while pos < end:
            n = min(end, (pos | (PAGE - 1)) + 1) - pos
            out.append(self.dump.read(self.v2p(pos), n))
            pos += n
        return b"".join(out)

    def u64(self, virt: int) -> int:
        return struct.unpack(">Q", self.read(virt, 8))[0]

    def u32(self, virt: int) -> int:
        return struct.unpack(">I", self.read(virt, 4))[0]
