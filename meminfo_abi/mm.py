"""The kernel's memory map as VMCOREINFO describes it: struct mem_section, struct page and the
page flags and page types a dump filter needs (makedumpfile's dump levels), no vmlinux.

The kernel exports the layout it was built with (kernel/vmcore_info.c, crash_core.c):

  SPARSEMEM      SYMBOL(mem_section), LENGTH(mem_section), SIZE(mem_section),
                 OFFSET(mem_section.section_mem_map), NUMBER(SECTION_SIZE_BITS),
                 NUMBER(MAX_PHYSMEM_BITS)
  struct page    SIZE(page), OFFSET(page.flags / _refcount / mapping / lru / _mapcount /
                 private / compound_dtor / compound_order / compound_head)
  page flags     NUMBER(PG_lru / PG_private / PG_swapcache / PG_swapbacked / PG_slab /
                 PG_hwpoison / PG_hugetlb), NUMBER(PG_head_mask)
  page types     NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE / PAGE_OFFLINE_MAPCOUNT_VALUE /
                 PAGE_HUGETLB_MAPCOUNT_VALUE / PAGE_SLAB_MAPCOUNT_VALUE /
                 PAGE_UNACCEPTED_MAPCOUNT_VALUE), NUMBER(HUGETLB_PAGE_DTOR)

Two page-type encodings are in the field, both in the word `_mapcount` overlays
(`page_type`):
  up to 6.11  a type is a cleared bit under PAGE_TYPE_BASE 0xf0000000: buddy is ~0x80
              (PAGE_BUDDY_MAPCOUNT_VALUE = -129), offline ~0x100 (-257); slab is the page
              flag PG_slab and hugetlb the compound destructor HUGETLB_PAGE_DTOR of the first
              tail page (6.9+: PAGE_HUGETLB_MAPCOUNT_VALUE);
  6.12 on     one type per page, its number in the top byte (enum pagetype, PGTY_buddy 0xf0,
              PGTY_offline 0xf1, PGTY_hugetlb 0xf4, PGTY_slab 0xf5, ...); the low 24 bits may
              carry data, so a type is its top byte (PAGE_BUDDY_MAPCOUNT_VALUE = -268435456).
A value whose low 24 bits are zero is of the 6.12 kind and compared by its top byte; an
older value is compared whole, as makedumpfile compares it.

struct page is a run-time layout (its offsets come from the dump), so the fields are unpacked
with one struct.Struct built from those offsets rather than a fixed declaration.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from dumpkit.errors import BadInputError
from meminfo_abi.vmcoreinfo import VmcoreInfo
from meminfo_abi.diskdump import (   # makedumpfile's dump level bits (kdump_sub_header.dump_level)
    DL_EXCLUDE_CACHE, DL_EXCLUDE_CACHE_PRI, DL_EXCLUDE_FREE, DL_EXCLUDE_USER_DATA,
)

# -- struct mem_section.section_mem_map: the low bits are flags (include/linux/mmzone.h) -----
SECTION_MARKED_PRESENT = 1 << 0
SECTION_HAS_MEM_MAP = 1 << 1
SECTION_IS_ONLINE = 1 << 2
SECTION_IS_EARLY = 1 << 3
SECTION_TAINT_ZONE_DEVICE = 1 << 4
SECTION_MAP_LAST_BIT = 1 << 5           # the widest the kernel used (5.12+); older kernels set fewer
SECTION_MAP_MASK = ~(SECTION_MAP_LAST_BIT - 1) & 0xFFFF_FFFF_FFFF_FFFF

PAGE_MAPPING_ANON = 0x1                 # page->mapping bit 0: an anon_vma, not an address_space
PAGE_TYPE_TOP_SHIFT = 24                # 6.12: the type is the top byte of page_type
U32 = 0xFFFF_FFFF
S390X_MAX_PHYSMEM_BITS = 46             # arch/s390 sparsemem.h, for kernels that do not export it


# the classes a page falls into, and the dump level bits that leave each out (any of them; None:
# every level that scans): -d 4 takes the non-private cache pages too
CLASS_CACHE = "cache"                   # page cache, not private
CLASS_CACHE_PRIVATE = "cache_private"   # page cache with PG_private (buffers)
CLASS_USER = "user"                     # anonymous and hugetlbfs
CLASS_FREE = "free"                     # in the buddy allocator
CLASS_HWPOISON = "hwpoison"
CLASS_OFFLINE = "offline"               # logically offline (balloon, virtio-mem, standby memory)
CLASS_BITS = {CLASS_CACHE: DL_EXCLUDE_CACHE | DL_EXCLUDE_CACHE_PRI, CLASS_CACHE_PRIVATE: DL_EXCLUDE_CACHE_PRI,
              CLASS_USER: DL_EXCLUDE_USER_DATA, CLASS_FREE: DL_EXCLUDE_FREE,
              CLASS_HWPOISON: None, CLASS_OFFLINE: None}


def _int32(v: int) -> int:
    """A C int from its 32 bits."""
    v &= U32
    return v - (1 << 32) if v & 0x8000_0000 else v


@dataclass(frozen=True)
class PageType:
    """One page type as VMCOREINFO gives it (NUMBER(PAGE_*_MAPCOUNT_VALUE))."""

    value: int                          # as the kernel's int

    @property
    def top_byte(self) -> bool:
        """6.12 encoding: the type is the top byte, the low 24 bits are free."""
        return self.value & 0xFF_FFFF == 0

    def matches(self, mapcount: int) -> bool:
        """Is a page whose _mapcount (as a C int) is `mapcount` of this type?"""
        if self.top_byte:
            return (mapcount & U32) >> PAGE_TYPE_TOP_SHIFT == (self.value & U32) >> PAGE_TYPE_TOP_SHIFT
        return mapcount == self.value


@dataclass
class MmLayout:
    """What VMCOREINFO says of the memory map; `from_vmcoreinfo` checks what filtering needs."""

    page_size: int
    page_struct_size: int               # SIZE(page)
    off: dict[str, int]                 # OFFSET(page.X) that are there
    pg: dict[str, int]                  # NUMBER(PG_X) that are there (PG_head_mask as a mask)
    types: dict[str, PageType]          # buddy, offline, hugetlb, slab, unaccepted
    hugetlb_dtor: int | None
    free_area_orders: int | None        # LENGTH(zone.free_area): MAX_ORDER (+1)
    # SPARSEMEM
    mem_section: int                    # SYMBOL(mem_section): the root array (a virtual address)
    mem_section_length: int | None      # LENGTH(mem_section)
    mem_section_size: int               # SIZE(mem_section)
    section_mem_map_offset: int
    section_size_bits: int
    max_physmem_bits: int
    release: str | None = None
    missing: list[str] = field(default_factory=list)   # keys a finer class needs but the dump lacks

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_vmcoreinfo(cls, vi: VmcoreInfo | None, page_size: int | None = None) -> "MmLayout":
        if vi is None:
            raise BadInputError("the dump has no VMCOREINFO: the page classes of a dump level cannot be told")

        def need(value, key: str) -> int:
            if value is None:
                raise BadInputError(f"VMCOREINFO has no {key}: the page classes of a dump level cannot be "
                                    "told (SPARSEMEM and struct page keys are needed)")
            return value

        ps = vi.page_size or page_size or 4096
        size = need(vi.size("page"), "SIZE(page)")
        off = {}
        for name in ("flags", "_refcount", "mapping", "lru", "_mapcount", "private", "compound_dtor",
                     "compound_order", "compound_head"):
            v = vi.offset(f"page.{name}")
            if v is not None:
                if v + (1 if name in ("compound_dtor", "compound_order") else 4) > size:
                    raise BadInputError(f"VMCOREINFO OFFSET(page.{name})={v} is outside SIZE(page)={size}")
                off[name] = v
        for key in ("flags", "mapping"):
            need(off.get(key), f"OFFSET(page.{key})")
        pg = {}
        for name in ("PG_lru", "PG_private", "PG_swapcache", "PG_swapbacked", "PG_slab", "PG_hwpoison",
                     "PG_hugetlb", "PG_head_mask", "PG_buddy"):
            v = vi.number(name)
            if v is not None:
                if name != "PG_head_mask" and not 0 <= v < 64:
                    raise BadInputError(f"VMCOREINFO NUMBER({name})={v} is not a bit of page.flags")
                pg[name] = v
        types = {}
        for name, key in (("buddy", "PAGE_BUDDY_MAPCOUNT_VALUE"), ("offline", "PAGE_OFFLINE_MAPCOUNT_VALUE"),
                          ("hugetlb", "PAGE_HUGETLB_MAPCOUNT_VALUE"), ("slab", "PAGE_SLAB_MAPCOUNT_VALUE"),
                          ("unaccepted", "PAGE_UNACCEPTED_MAPCOUNT_VALUE")):
            v = vi.number(key)
            if v is not None:
                types[name] = PageType(_int32(v))
        shift = need(vi.number("SECTION_SIZE_BITS"), "NUMBER(SECTION_SIZE_BITS)")
        maxbits = vi.number("MAX_PHYSMEM_BITS")
        if maxbits is None:
            maxbits = S390X_MAX_PHYSMEM_BITS
        pshift = ps.bit_length() - 1
        if not pshift < shift < maxbits <= 64:
            raise BadInputError(f"VMCOREINFO SECTION_SIZE_BITS={shift} / MAX_PHYSMEM_BITS={maxbits} do not "
                                f"make a SPARSEMEM layout")
        ms_size = need(vi.size("mem_section"), "SIZE(mem_section)")
        ms_off = vi.offset("mem_section.section_mem_map") or 0
        if ms_size < 8 or ms_off + 8 > ms_size or ms_size > ps:
            raise BadInputError(f"VMCOREINFO SIZE(mem_section)={ms_size} / OFFSET(mem_section.section_mem_map)="
                                f"{ms_off} do not hold a section_mem_map")
        lay = cls(page_size=ps, page_struct_size=size, off=off, pg=pg, types=types,
                  hugetlb_dtor=vi.number("HUGETLB_PAGE_DTOR"), free_area_orders=vi.length("zone.free_area"),
                  mem_section=need(vi.symbol("mem_section"), "SYMBOL(mem_section)"),
                  mem_section_length=vi.length("mem_section"), mem_section_size=ms_size,
                  section_mem_map_offset=ms_off, section_size_bits=shift, max_physmem_bits=maxbits,
                  release=vi.osrelease)
        if "_mapcount" not in off or "private" not in off or "buddy" not in types:
            lay.missing.append("free pages (OFFSET(page._mapcount), OFFSET(page.private), "
                               "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE))")
        if "PG_lru" not in pg:
            lay.missing.append("page cache (NUMBER(PG_lru))")
        return lay

    # -- SPARSEMEM geometry ------------------------------------------------------------------
    @property
    def pages_per_section(self) -> int:
        return 1 << (self.section_size_bits - (self.page_size.bit_length() - 1))

    @property
    def nr_mem_sections(self) -> int:
        return 1 << (self.max_physmem_bits - self.section_size_bits)

    @property
    def sections_per_root(self) -> int:
        """SPARSEMEM_EXTREME: one page of struct mem_section per root entry; static: 1."""
        return self.page_size // self.mem_section_size if self.extreme else 1

    @property
    def extreme(self) -> bool:
        """SPARSEMEM_EXTREME: LENGTH(mem_section) counts root pointers, not sections."""
        n = self.mem_section_length
        roots = -(-self.nr_mem_sections // (self.page_size // self.mem_section_size))
        return n is None or n == roots

    def decode_mem_map(self, section_mem_map: int, section_nr: int) -> int | None:
        """The struct page array of a section (a kernel virtual address), or None when the
        section is not present or has no memory map."""
        if not section_mem_map & SECTION_MARKED_PRESENT:
            return None
        coded = section_mem_map & SECTION_MAP_MASK
        pfn = section_nr * self.pages_per_section
        return (coded + pfn * self.page_struct_size) & 0xFFFF_FFFF_FFFF_FFFF

    # -- struct page -------------------------------------------------------------------------
    def page_struct(self) -> tuple[struct.Struct, tuple[str, ...]]:
        """One Struct unpacking the fields filtering reads from one struct page (big-endian),
        and the field names in its order."""
        fields = [("flags", "Q"), ("mapping", "Q")]
        for name, code in (("_mapcount", "i"), ("private", "Q"), ("compound_head", "Q")):
            if name in self.off:
                fields.append((name, code))
        fields.sort(key=lambda f: self.off[f[0]])
        fmt, pos, names = [">"], 0, []
        for name, code in fields:
            o = self.off[name]
            if o < pos:
                continue                     # overlapping fields (a union): the first one read wins
            if o > pos:
                fmt.append(f"{o - pos}x")
            fmt.append(code)
            pos = o + struct.calcsize(">" + code)
            names.append(name)
        if pos > self.page_struct_size:
            raise BadInputError(f"struct page fields end at {pos}, past SIZE(page)={self.page_struct_size}")
        fmt.append(f"{self.page_struct_size - pos}x")
        return struct.Struct("".join(fmt)), tuple(names)

    def compound_info(self, head: "PageFields", first_tail: bytes) -> tuple[int, bool]:
        """(order, hugetlb) of a compound head from its first tail page's bytes (makedumpfile's
        rules per kernel: 6.9+ order in the tail's flags low byte and hugetlb as the head's page
        type; 6.6+ the same with PG_hugetlb in the tail's flags; before, compound_order and
        compound_dtor bytes of the tail)."""
        if "hugetlb" in self.types:
            flags1 = int.from_bytes(first_tail[self.off["flags"]:self.off["flags"] + 8], "big")
            return flags1 & 0xFF, head.mapcount is not None and self.types["hugetlb"].matches(head.mapcount)
        if "PG_hugetlb" in self.pg:
            flags1 = int.from_bytes(first_tail[self.off["flags"]:self.off["flags"] + 8], "big")
            return flags1 & 0xFF, bool(flags1 >> self.pg["PG_hugetlb"] & 1)
        if "compound_order" not in self.off:      # 6.6+ without hugetlbfs: the order is in _flags_1 too
            flags1 = int.from_bytes(first_tail[self.off["flags"]:self.off["flags"] + 8], "big")
            return flags1 & 0xFF, False
        order = first_tail[self.off["compound_order"]]
        dtor = first_tail[self.off["compound_dtor"]] if "compound_dtor" in self.off else None
        return order, dtor is not None and self.hugetlb_dtor is not None and dtor == self.hugetlb_dtor

    # -- the page classes --------------------------------------------------------------------
    def flag(self, flags: int, name: str) -> bool:
        bit = self.pg.get(name)
        return bit is not None and bool(flags >> bit & 1)

    def is_slab(self, p: "PageFields") -> bool:
        t = self.types.get("slab")
        if t is not None and p.mapcount is not None and t.matches(p.mapcount):
            return True
        return self.flag(p.flags, "PG_slab")

    def is_buddy(self, p: "PageFields") -> bool:
        t = self.types.get("buddy")
        if t is not None and p.mapcount is not None and p.private is not None:
            return not self.is_slab(p) and t.matches(p.mapcount)
        return self.flag(p.flags, "PG_buddy")

    def is_offline(self, p: "PageFields") -> bool:
        t = self.types.get("offline")
        return t is not None and p.mapcount is not None and not self.is_slab(p) and t.matches(p.mapcount)

    def is_unaccepted(self, p: "PageFields") -> bool:
        t = self.types.get("unaccepted")
        return t is not None and p.mapcount is not None and t.matches(p.mapcount)

    def is_cache(self, p: "PageFields") -> bool:
        """On an LRU list, or in the swap cache (PG_swapcache counts only with PG_swapbacked,
        where the kernel has that flag)."""
        if self.flag(p.flags, "PG_lru"):
            return True
        if "PG_swapbacked" in self.pg and not self.flag(p.flags, "PG_swapbacked"):
            return False
        return self.flag(p.flags, "PG_swapcache")

    def is_anon(self, p: "PageFields") -> bool:
        return bool(p.mapping & PAGE_MAPPING_ANON) and not self.is_slab(p)

    def is_compound_head(self, flags: int) -> bool:
        mask = self.pg.get("PG_head_mask")
        return bool(mask) and bool(flags & mask)

    def classify(self, p: "PageFields", level: int, hugetlb: bool = False) -> str | None:
        """The class by which `level` leaves this (head) page out, or None to keep it; the
        order of the tests is makedumpfile's (free before cache before user; hwpoison and offline
        pages go at any level that scans)."""
        if level & DL_EXCLUDE_FREE and self.is_buddy(p):
            return CLASS_FREE
        if level & DL_EXCLUDE_FREE and self.is_unaccepted(p):
            return CLASS_FREE
        cache = self.is_cache(p)
        anon = self.is_anon(p)
        private = self.flag(p.flags, "PG_private")
        if level & DL_EXCLUDE_CACHE and cache and not private and not anon:
            return CLASS_CACHE
        if level & DL_EXCLUDE_CACHE_PRI and cache and not anon:
            return CLASS_CACHE_PRIVATE if private else CLASS_CACHE
        if level & DL_EXCLUDE_USER_DATA and (anon or hugetlb):
            return CLASS_USER
        if self.flag(p.flags, "PG_hwpoison"):
            return CLASS_HWPOISON
        if self.is_offline(p):
            return CLASS_OFFLINE
        return None

    def scans_at(self, level: int) -> bool:
        """Whether a dump level needs the struct page scan at all (as makedumpfile: any class
        bit, or a kernel that marks hwpoisoned pages)."""
        return bool(level & (DL_EXCLUDE_CACHE | DL_EXCLUDE_CACHE_PRI | DL_EXCLUDE_USER_DATA | DL_EXCLUDE_FREE)) \
            or "PG_hwpoison" in self.pg


@dataclass(slots=True)
class PageFields:
    """The struct page fields filtering reads (None where VMCOREINFO has no offset)."""

    flags: int
    mapping: int
    mapcount: int | None = None
    private: int | None = None
    compound_head: int | None = None
