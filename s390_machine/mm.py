"""The synthetic kernel's memory model, as a booted 6.1 s390x kernel leaves it: kernel page
tables from swapper_pg_dir, SPARSEMEM (mem_section roots, sections, usage maps), the vmemmap of
struct pages, and a population of page classes a dump filter can tell apart.

Virtual layout (arch/s390/boot/startup.c of 6.1, setup_kernel_memory_layout): identity map of
all storage at 0; the vmemmap array just below the vmalloc area, aligned to a top-level region
entry (0x37200000000 for a 3-level layout with 64-byte struct pages, as Debian's 6.1 shows);
4 levels (region-second table on top) once storage, vmemmap and vmalloc exceed 4 TiB.

Page tables (z/Architecture DAT, meminfo_abi/dat.py): the first MiB through a page table
(lowcore pages), the rest of the first 2 GiB as 1 MiB segment frames, every further whole
2 GiB as a region-third frame, a partial last 2 GiB as 1 MiB segments again.  The vmemmap is
mapped by 1 MiB segments (1 MiB of struct pages = 64 MiB of storage).

Sparse and fast: struct pages that do not depend on their address (free buddy blocks, reserved
and in-use kernel pages) live once per zone in shared frames, mapped wherever such pages are;
only the MiBs holding data get struct pages of their own (16 KiB per MiB).  A 64 MiB stretch of
free storage costs one segment entry.  Free pages carry no list links (the simulator does not
link the buddy free lists; the zones' counters give their number).

Every other storage used here (tables, sections, frames) is taken from the top of storage
below a top crashkernel, as memblock does, and is PG_reserved.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from functools import lru_cache

from dumpkit.errors import BadInputError
from meminfo_abi import dat
from meminfo_abi import mm_layout as mm
from meminfo_abi.mm import (
    PAGE_MAPPING_ANON, SECTION_HAS_MEM_MAP, SECTION_IS_EARLY, SECTION_IS_ONLINE, SECTION_MARKED_PRESENT,
)
from meminfo_abi.vmcoreinfo import VmcoreInfo

MIB = 1 << 20
PAGE = 4096
PAGES_PER_MIB = MIB // PAGE
SP = mm.page.sizeof()                          # 64: sizeof(struct page)
VMEMMAP_PER_MIB = PAGES_PER_MIB * SP           # 16 KiB of struct pages per MiB of storage
FRAMES_PER_MIB = VMEMMAP_PER_MIB // PAGE       # 4 vmemmap pages per MiB
CHUNK_MIBS = MIB // VMEMMAP_PER_MIB            # 64: storage MiBs one 1 MiB vmemmap segment covers
MIBS_PER_SECTION = (1 << mm.SECTION_SIZE_BITS) // MIB
SECTIONS_PER_ROOT = PAGE // mm.mem_section.sizeof()       # 128 (SPARSEMEM_EXTREME)
NR_SECTION_ROOTS = mm.NR_MEM_SECTIONS // SECTIONS_PER_ROOT  # 2048: LENGTH(mem_section)
USAGE_STRIDE = 160                              # sizeof(mem_section_usage) 144, as memblock spaces them
USAGE_SHARED_SECTIONS = 4096                    # up to 1 TiB: a usage map per section
CRST_SIZE = dat._CRST_ENTRIES * dat.DAT_ENTRY_SIZE          # 16 KiB region / segment table
PT_SIZE = dat._PAGE_ENTRIES * dat.DAT_ENTRY_SIZE            # 2 KiB page table

REGION3_SIZE = 1 << dat._REGION3_SHIFT           # what one region-third entry maps: 2 GiB
REGION2_SIZE = 1 << dat._REGION2_SHIFT           # 4 TiB
REGION1_SIZE = 1 << dat._REGION1_SHIFT           # 8 PiB
MODULES_LEN = 1 << 31
VMALLOC_DEFAULT_SIZE = (512 << 30) - MODULES_LEN

# table entries (asm/pgtable.h names)
_REGION2_ENTRY = dat._ASCE_TYPE_REGION2 | dat._REGION_ENTRY_LENGTH      # entry of a region-second table
_REGION3_ENTRY = dat._ASCE_TYPE_REGION3 | dat._REGION_ENTRY_LENGTH
_REGION2_ENTRY_EMPTY = dat._ASCE_TYPE_REGION2 | dat._REGION_ENTRY_INVALID
_REGION3_ENTRY_EMPTY = dat._ASCE_TYPE_REGION3 | dat._REGION_ENTRY_INVALID
_REGION3_ENTRY_LARGE = dat._ASCE_TYPE_REGION3 | dat._REGION3_ENTRY_LARGE
_SEGMENT_ENTRY_EMPTY = dat._SEGMENT_ENTRY_INVALID
_SEGMENT_ENTRY_LARGE = dat._SEGMENT_ENTRY_LARGE

# the synthetic kernel's data objects the struct pages point at (identity mapped)
NODE_ONLINE_MAP = 0x406000        # nodemask_t, node 0 online
VMAP_AREA_LIST = 0x406010         # empty list_head
MEM_MAP_VAR = 0x406020            # mem_map: NULL under SPARSEMEM
ADDRESS_SPACE = 0x406100          # an inode's i_data: page-cache pages' mapping
HUGETLBFS_MAPPING = 0x406200      # a hugetlbfs inode's i_data
ANON_VMA = 0x406300               # anonymous pages' mapping (| PAGE_MAPPING_ANON)
KMEM_CACHE = 0x406400             # struct kmem_cache of the slab pages
BUFFER_HEADS = 0x406500           # page.private of PG_private cache pages
LRU_LISTS = 0x406600              # lruvec list heads the LRU pages hang on
CONTIG_PAGE_DATA = 0x40C000       # struct pglist_data of node 0 (8704 bytes)


# -- page populations -----------------------------------------------------------------------------
@dataclass
class Populations:
    """Shares of the data pages (the MiBs --fill chooses) by class; the rest is kernel data.
    hugetlb: share of the data MiBs that are one 1 MiB huge page each; zero: in-use MiBs whose
    pages are all zero, per data MiB."""
    free: float = 0.20        # buddy pages with stale data (dump level 16)
    cache: float = 0.20       # page cache, no PG_private (level 2)
    private: float = 0.05     # page cache with buffer heads, PG_private (level 4)
    anon: float = 0.20        # anonymous user pages (level 8)
    slab: float = 0.10        # kept at every level
    offline: float = 0.01     # PageOffline: left out at every level
    hugetlb: float = 0.03     # user (level 8)
    zero: float = 0.06        # zero pages in use (level 1)

    PAGE_CLASSES = ("free", "cache", "private", "anon", "slab", "offline")

    def validate(self) -> None:
        for name in self.PAGE_CLASSES + ("hugetlb", "zero"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise BadInputError(f"page population {name}={v!r} is outside 0..1")
        total = sum(getattr(self, n) for n in self.PAGE_CLASSES)
        if total > 1.0 + 1e-9:
            raise BadInputError(f"page populations {', '.join(self.PAGE_CLASSES)} add up to {total:.3f}, more than 1")

    def to_spec(self) -> str:
        return ",".join(f"{n}={getattr(self, n) * 100:g}" for n in self.PAGE_CLASSES + ("hugetlb", "zero"))


def parse_populations(text: str) -> Populations:
    """"free=20,cache=20,anon=10": percentages; classes not named keep their default."""
    pops = Populations()
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in Populations.PAGE_CLASSES + ("hugetlb", "zero"):
            raise BadInputError(f"page population {item!r} is not NAME=PERCENT with NAME one of "
                                f"{', '.join(Populations.PAGE_CLASSES + ('hugetlb', 'zero'))}")
        try:
            pct = float(value)
        except ValueError:
            raise BadInputError(f"page population {item!r}: {value!r} is not a number") from None
        if not 0.0 <= pct <= 100.0:
            raise BadInputError(f"page population {item!r} is outside 0..100 %")
        setattr(pops, name, pct / 100.0)
    pops.validate()
    return pops


# -- the kernel's virtual layout ------------------------------------------------------------------
def _section_align_up(pages: int) -> int:
    return -(-pages // mm.PAGES_PER_SECTION) * mm.PAGES_PER_SECTION


@dataclass(frozen=True)
class VirtualLayout:
    levels: int               # 3: region-third table on top, 4: region-second
    vmemmap: int              # virtual address of struct page of pfn 0
    ident_map_size: int

    @property
    def asce_type(self) -> int:
        return dat._ASCE_TYPE_REGION3 if self.levels == 3 else dat._ASCE_TYPE_REGION2


def virtual_layout(memory_size: int) -> VirtualLayout:
    """setup_kernel_memory_layout() of 6.1 with the default vmalloc size and no KASAN."""
    ident = memory_size
    vmemmap_size = _section_align_up(ident // PAGE) * SP
    vmalloc_size = VMALLOC_DEFAULT_SIZE
    prelim = -(-ident // REGION3_SIZE) * REGION3_SIZE
    if vmalloc_size > REGION2_SIZE or prelim + vmemmap_size + vmalloc_size + MODULES_LEN > REGION2_SIZE:
        modules_end, rte, levels = REGION1_SIZE, REGION2_SIZE, 4
    else:
        modules_end, rte, levels = REGION2_SIZE, REGION3_SIZE, 3
    vmalloc_start = modules_end - MODULES_LEN - vmalloc_size
    pages = _section_align_up(vmalloc_start // (PAGE + SP))
    start = (vmalloc_start - pages * SP) // rte * rte
    start = min(start, 1 << mm.MAX_PHYSMEM_BITS)
    return VirtualLayout(levels, start, min(ident, start))


def kernel_asce(memory_size: int, pgd: int) -> int:
    return pgd | virtual_layout(memory_size).asce_type | dat._ASCE_TABLE_LENGTH


# -- struct pages -----------------------------------------------------------------------------------
def _page(zone: int, flags: int = 0, mapcount: int = mm.PAGE_MAPCOUNT_NONE, refcount: int = 0,
          mapping: int = 0, index: int = 0, private: int = 0, lru: int = 0) -> bytes:
    return mm.page.build(dict(flags=flags | zone << mm.ZONES_PGSHIFT, lru=dict(next=lru, prev=lru),
                              mapping=mapping, index=index, private=private, _mapcount=mapcount,
                              _refcount=refcount, memcg_data=0))


def _bits(*nrs: int) -> int:
    return sum(1 << n for n in nrs)


FILE_FLAGS = _bits(mm.PG_referenced, mm.PG_uptodate, mm.PG_lru, mm.PG_mappedtodisk)
SHMEM_FLAGS = _bits(mm.PG_uptodate, mm.PG_dirty, mm.PG_lru, mm.PG_swapbacked)
ANON_FLAGS = _bits(mm.PG_uptodate, mm.PG_lru, mm.PG_swapbacked)


@lru_cache(maxsize=None)
def _class_page(cls: str, zone: int, n: int) -> bytes:
    """The struct page of a page of class `cls`; n varies index-like fields."""
    if cls == "cache":          # half of them shmem/tmpfs (swap-backed, not anonymous)
        return _page(zone, SHMEM_FLAGS if n & 1 else FILE_FLAGS, refcount=1, mapping=ADDRESS_SPACE,
                     index=n, lru=LRU_LISTS)
    if cls == "private":
        return _page(zone, FILE_FLAGS | 1 << mm.PG_private, refcount=2, mapping=ADDRESS_SPACE, index=n,
                     private=BUFFER_HEADS, lru=LRU_LISTS + 16)
    if cls == "anon":
        return _page(zone, ANON_FLAGS, mapcount=0, refcount=1, mapping=ANON_VMA | PAGE_MAPPING_ANON,
                     index=0x3FF_FFF0 + n, lru=LRU_LISTS + 32)
    if cls == "slab":
        return mm.slab.build(dict(__page_flags=1 << mm.PG_slab | zone << mm.ZONES_PGSHIFT,
                                  slab_list=dict(next=KMEM_CACHE + 0x40, prev=KMEM_CACHE + 0x40),
                                  slab_cache=KMEM_CACHE, freelist=0, counters=(32 << 48) | (32 << 33),
                                  __unused=-1, __page_refcount=1, memcg_data=0))
    if cls == "offline":
        return _page(zone, mapcount=mm.PAGE_OFFLINE_MAPCOUNT_VALUE, refcount=1)
    if cls == "kernel":
        return _page(zone, refcount=1)
    if cls == "reserved":
        return _page(zone, 1 << mm.PG_reserved, refcount=1)
    if cls == "tail":           # inside a free buddy block
        return _page(zone)
    raise AssertionError(cls)


@lru_cache(maxsize=None)
def _buddy_head(zone: int, order: int) -> bytes:
    return _page(zone, mapcount=mm.PAGE_BUDDY_MAPCOUNT_VALUE, private=order)


def _hugetlb_mib(zone: int, head_vaddr: int) -> bytes:
    """The 256 struct pages of a 1 MiB hugetlb page (compound, order 8, HUGETLB_PAGE_DTOR)."""
    zf = zone << mm.ZONES_PGSHIFT
    head = _page(zone, mm.PG_head_mask | 1 << mm.PG_uptodate, refcount=1, mapping=HUGETLBFS_MAPPING, index=0)
    first = mm.page_compound_tail.build(dict(
        flags=zf, compound_head=head_vaddr | 1, compound_dtor=mm.HUGETLB_PAGE_DTOR,
        compound_order=mm.HPAGE_ORDER, compound_mapcount=-1, compound_pincount=0,
        compound_nr=1 << mm.HPAGE_ORDER, index=0, private=0, _mapcount=-1, _refcount=0, memcg_data=0))
    # page[2..]: compound_head where lru.next is, TAIL_MAPPING in mapping
    tail = mm.page.build(dict(flags=zf, lru=dict(next=head_vaddr | 1, prev=0), mapping=mm.TAIL_MAPPING, index=0,
                              private=0, _mapcount=-1, _refcount=0, memcg_data=0))
    return head + first + tail * (PAGES_PER_MIB - 2)


# -- data MiB patterns -------------------------------------------------------------------------------
NPATTERNS = 16


def _patterns(pops: Populations, seed: int) -> list[list[tuple[str, int]]]:
    """NPATTERNS page-class sequences of a MiB: (class, order) per page; order > 0 only for a
    free buddy head, tails of its block follow as ("tail", 0)."""
    weights = [getattr(pops, n) for n in Populations.PAGE_CLASSES]
    names = list(Populations.PAGE_CLASSES) + ["kernel"]
    weights.append(max(0.0, 1.0 - sum(weights)))
    out = []
    for k in range(NPATTERNS):
        rnd = random.Random(seed * 1000 + k)
        seq: list[tuple[str, int]] = []
        while len(seq) < PAGES_PER_MIB:
            cls = rnd.choices(names, weights)[0]
            run = min(rnd.choice((1, 1, 2, 4, 8, 16)), PAGES_PER_MIB - len(seq))
            if cls != "free":
                seq += [(cls, 0)] * run
                continue
            pos, end = len(seq), len(seq) + run
            while pos < end:                     # aligned buddy blocks
                order = 0
                while order < 4 and pos % (2 << order) == 0 and pos + (2 << order) <= end:
                    order += 1
                seq.append(("free", order))
                seq += [("tail", 0)] * ((1 << order) - 1)
                pos += 1 << order
        out.append(seq)
    return out


def _pattern_bytes(seq: list[tuple[str, int]], zone: int) -> bytes:
    parts = []
    for i, (cls, order) in enumerate(seq):
        if cls == "free":
            parts.append(_buddy_head(zone, order))
        else:                   # file offsets / user addresses: 16 values are plenty
            parts.append(_class_page(cls, zone, i & 15 if cls in ("cache", "private", "anon") else 0))
    return b"".join(parts)


def _pattern_counts(seq: list[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for cls, _ in seq:
        cls = "free" if cls == "tail" else cls
        out[cls] = out.get(cls, 0) + 1
    return out


# -- planning --------------------------------------------------------------------------------------
def _zone(mib: int) -> int:
    return mm.ZONE_DMA if mib * MIB < mm.DMA_LIMIT else mm.ZONE_NORMAL


def _nzones(total_mibs: int) -> int:
    return 2 if total_mibs * MIB > mm.DMA_LIMIT else 1


def area_size(memory_size: int, n_data: int, n_zero: int, n_spans: int) -> int:
    """Bytes the memory model takes at most (whole MiBs), for n_data data MiBs."""
    total = memory_size // MIB
    sections = -(-total // MIBS_PER_SECTION)
    chunks = sections * MIBS_PER_SECTION // CHUNK_MIBS
    zones = _nzones(total)
    size = zones * 2 * MIB + zones * 6 * PAGE                      # shared frames
    size += NR_SECTION_ROOTS * 8 + -(-sections // SECTIONS_PER_ROOT) * PAGE + min(sections, USAGE_SHARED_SECTIONS) * USAGE_STRIDE
    size += (-(-chunks // dat._CRST_ENTRIES) + 2 + -(-memory_size // REGION2_SIZE) + 1) * CRST_SIZE
    size += (n_data + n_zero + 2 * n_spans + 4) * PT_SIZE + PT_SIZE
    size += n_data * VMEMMAP_PER_MIB
    size += 4 * CRST_SIZE + MIB                                    # alignment
    mibs = -(-size // MIB) + 1
    # the area's own MiBs make boundary chunks too: room for their page tables
    return (mibs + 1) * MIB


def place_area(memory_size: int, kernel_end: int, ck: tuple[int, int] | None, size: int) -> int:
    """Where memblock puts it: the top of storage, below a crashkernel that is there."""
    tops = [memory_size]
    if ck:
        tops = [memory_size, ck[0]] if ck[1] <= memory_size - size else [ck[0], memory_size]
    for top in tops:
        base = (top - size) // MIB * MIB
        if base < kernel_end:
            continue
        if ck and base < ck[1] and ck[0] < base + size:
            continue
        return base
    raise BadInputError(f"storage of {memory_size >> 20} MiB leaves no room for the kernel's memory map "
                        f"({size >> 20} MiB) outside the kernel image and the crashkernel")


class _Alloc:
    def __init__(self, base: int, size: int):
        self.pos, self.end = base, base + size

    def take(self, size: int, align: int) -> int:
        addr = -(-self.pos // align) * align
        if addr + size > self.end:
            raise AssertionError("memory model area underestimated")
        self.pos = addr + size
        return addr


@dataclass
class ModelResult:
    mem_section: int                  # SYMBOL(mem_section): the root array
    vmemmap: int
    asce: int
    levels: int
    page_classes: dict[str, int] = field(default_factory=dict)
    free_pages: dict[int, int] = field(default_factory=dict)   # zone -> buddy pages
    hugetlb_mibs: list[int] = field(default_factory=list)
    zero_mibs: list[int] = field(default_factory=list)


def zero_mibs(data: list[int], pops: Populations, busy) -> list[int]:
    """In-use zero MiBs: the MiB after every (1/zero)-th data MiB, when that one is free."""
    out = []
    if pops.zero <= 0:
        return out
    for j, m in enumerate(data):
        if int((j + 1) * pops.zero) > int(j * pops.zero) and not busy(m + 1):
            out.append(m + 1)
    return out


def build(mem, memory_size: int, kernel_end: int, ck: tuple[int, int] | None, area: tuple[int, int],
          data: list[int], pops: Populations, seed: int, pgd: int) -> ModelResult:
    """Write page tables, sections and struct pages; `data` are the data MiBs (sorted)."""
    total = memory_size // MIB
    lay = virtual_layout(memory_size)
    sections = -(-total // MIBS_PER_SECTION)
    span_mibs = sections * MIBS_PER_SECTION
    chunks = span_mibs // CHUNK_MIBS
    zones = range(_nzones(total))
    alloc = _Alloc(*area)
    a_lo, a_hi = area[0] // MIB, (area[0] + area[1]) // MIB
    ck_lo, ck_hi = (ck[0] // MIB, ck[1] // MIB) if ck else (0, 0)
    data_set = set(data)

    def busy(m: int) -> bool:
        return (m >= total or m < kernel_end // MIB or ck_lo <= m < ck_hi or a_lo <= m < a_hi
                or m in data_set)

    zeros = zero_mibs(data, pops, busy)
    rnd = random.Random(seed ^ 0x6D6D)
    huge = {m for m in data if rnd.random() < pops.hugetlb}

    # SPARSEMEM root array first: SYMBOL(mem_section) is the area's start
    roots = alloc.take(NR_SECTION_ROOTS * 8, PAGE)
    assert roots == area[0]

    # shared frames
    large_free, large_res, f_tail, f_head, f_res, f_kern = {}, {}, {}, {}, {}, {}
    for z in zones:
        large_free[z] = alloc.take(MIB, MIB)
        large_res[z] = alloc.take(MIB, MIB)
    for z in zones:
        tail = _class_page("tail", z, 0)
        res = _class_page("reserved", z, 0)
        f_tail[z] = alloc.take(PAGE, PAGE)
        mem.write(f_tail[z], tail * 64)
        for order in (8, 9, 10):
            f_head[z, order] = alloc.take(PAGE, PAGE)
            mem.write(f_head[z, order], _buddy_head(z, order) + tail * 63)
        f_res[z] = alloc.take(PAGE, PAGE)
        mem.write(f_res[z], res * 64)
        f_kern[z] = alloc.take(PAGE, PAGE)
        mem.write(f_kern[z], _class_page("kernel", z, 0) * 64)
        block = _buddy_head(z, 10) + tail * 1023
        mem.write(large_free[z], block * (MIB // len(block)))
        mem.write(large_res[z], res * (MIB // SP))

    # the kinds of the MiBs that are not plain free storage, per 64 MiB chunk
    F, R, Z, D = 0, 1, 2, 3
    mixed: dict[int, bytearray] = {}
    full_res: set[int] = set()

    def mark(lo: int, hi: int, kind: int) -> None:
        for c in range(lo // CHUNK_MIBS, (hi - 1) // CHUNK_MIBS + 1):
            c0 = c * CHUNK_MIBS
            s, e = max(lo, c0), min(hi, c0 + CHUNK_MIBS)
            if kind == R and s == c0 and e == c0 + CHUNK_MIBS and c not in mixed:
                full_res.add(c)
                continue
            kinds = mixed.get(c)
            if kinds is None:
                kinds = mixed[c] = bytearray(CHUNK_MIBS)
            kinds[s - c0:e - c0] = bytes([kind]) * (e - s)

    mark(0, kernel_end // MIB, R)
    if ck:
        mark(ck_lo, ck_hi, R)
    mark(a_lo, a_hi, R)
    if span_mibs > total:
        mark(total, span_mibs, R)             # struct pages of the section's missing tail
    for m in data:
        mark(m, m + 1, D)
    for m in zeros:
        mark(m, m + 1, Z)

    # data MiBs: unique struct pages
    patterns = _patterns(pops, seed)
    pbytes = {(k, z): _pattern_bytes(patterns[k], z) for k in range(NPATTERNS) for z in zones}
    pcounts = [_pattern_counts(seq) for seq in patterns]
    counts: dict[str, int] = {}
    free_pages = {z: 0 for z in zones}
    data_frame: dict[int, int] = {}
    uniq = alloc.take(len(data) * VMEMMAP_PER_MIB, PAGE) if data else 0
    buf = bytearray()
    flush_at = uniq

    def add(cls: str, n: int) -> None:
        counts[cls] = counts.get(cls, 0) + n

    for j, m in enumerate(data):
        z = _zone(m)
        data_frame[m] = uniq + j * VMEMMAP_PER_MIB
        if m in huge:
            buf += _hugetlb_mib(z, lay.vmemmap + m * PAGES_PER_MIB * SP)
            add("hugetlb", PAGES_PER_MIB)
        else:
            k = (m * 2654435761 >> 7) % NPATTERNS
            buf += pbytes[k, z]
            for cls, n in pcounts[k].items():
                add(cls, n)
            free_pages[z] += pcounts[k].get("free", 0)
        if len(buf) >= 16 * MIB:
            mem.write(flush_at, buf)
            flush_at += len(buf)
            buf = bytearray()
    if buf:
        mem.write(flush_at, buf)

    # vmemmap segment tables (1 MiB of vmemmap each entry) and page tables of mixed chunks
    n_vst = -(-chunks // dat._CRST_ENTRIES)
    vst = [alloc.take(CRST_SIZE, CRST_SIZE) for _ in range(n_vst)]
    seg = bytearray(struct.pack(">Q", _SEGMENT_ENTRY_EMPTY) * (dat._CRST_ENTRIES * n_vst))
    pack = struct.Struct(">Q").pack_into
    for c in range(chunks):
        z = _zone(c * CHUNK_MIBS)
        kinds = mixed.get(c)
        if kinds is None:
            if c in full_res:
                pack(seg, 8 * c, large_res[z] | _SEGMENT_ENTRY_LARGE)
                add("reserved", max(0, min(total - c * CHUNK_MIBS, CHUNK_MIBS)) * PAGES_PER_MIB)
            else:
                pack(seg, 8 * c, large_free[z] | _SEGMENT_ENTRY_LARGE)
                add("free", CHUNK_MIBS * PAGES_PER_MIB)
                free_pages[z] += CHUNK_MIBS * PAGES_PER_MIB
            continue
        pt = alloc.take(PT_SIZE, PT_SIZE)
        entries = []
        i = 0
        while i < CHUNK_MIBS:
            kind, m = kinds[i], c * CHUNK_MIBS + i
            if kind == F:                          # a free run: aligned buddy blocks of 1..4 MiB
                order_mibs = 1
                while (order_mibs < 4 and m % (order_mibs * 2) == 0 and i + order_mibs * 2 <= CHUNK_MIBS
                       and not any(kinds[i:i + order_mibs * 2])):
                    order_mibs *= 2
                head = f_head[z, 8 + order_mibs.bit_length() - 1]
                entries += [head] + [f_tail[z]] * (order_mibs * FRAMES_PER_MIB - 1)
                add("free", order_mibs * PAGES_PER_MIB)
                free_pages[z] += order_mibs * PAGES_PER_MIB
                i += order_mibs
                continue
            if kind == R:
                entries += [f_res[z]] * FRAMES_PER_MIB
                if m < total:                      # not the struct pages past the end of storage
                    add("reserved", PAGES_PER_MIB)
            elif kind == Z:
                entries += [f_kern[z]] * FRAMES_PER_MIB
                add("zero", PAGES_PER_MIB)
            else:
                base = data_frame[m]
                entries += [base + f * PAGE for f in range(FRAMES_PER_MIB)]
            i += 1
        mem.write(pt, struct.pack(f">{len(entries)}Q", *entries))
        pack(seg, 8 * c, pt)
    for t, addr in enumerate(vst):
        mem.write(addr, seg[t * CRST_SIZE:(t + 1) * CRST_SIZE])

    # identity map
    ident = _identity_tables(mem, alloc, memory_size)     # list of (vaddr, region-third entry)
    r3_entries: dict[int, int] = dict(ident)
    for t, addr in enumerate(vst):
        r3_entries[lay.vmemmap + t * REGION3_SIZE] = addr | _REGION3_ENTRY
    _top_tables(mem, alloc, lay, pgd, r3_entries)

    # SPARSEMEM: roots, sections, usage
    root_ptrs = [0] * NR_SECTION_ROOTS
    def usage_block(nr: int) -> bytes:
        present = min(total * MIB - (nr << mm.SECTION_SIZE_BITS), 1 << mm.SECTION_SIZE_BITS) >> mm.SUBSECTION_SHIFT
        bits = (1 << present) - 1
        words = mm.SUBSECTIONS_PER_SECTION // 64
        return mm.mem_section_usage.build(dict(
            subsection_map=[bits >> (64 * w) & ((1 << 64) - 1) for w in range(words)],
            # every pageblock MIGRATE_MOVABLE, as memmap_init leaves them: 4 bits each
            pageblock_flags=[0x1111_1111_1111_1111] * ((mm.PAGES_PER_SECTION >> mm.PAGEBLOCK_ORDER) * 4 // 64),
        )).ljust(USAGE_STRIDE, b"\0")

    # one usage map per section, as sparse_init allocates them; past USAGE_SHARED_SECTIONS the
    # full sections share one (their maps are identical) so a huge machine stays sparse
    n_usage = sections if sections <= USAGE_SHARED_SECTIONS else 2
    usage = alloc.take(n_usage * USAGE_STRIDE, 256)
    if n_usage == sections:
        mem.write(usage, b"".join(usage_block(nr) for nr in range(sections)))
        usage_of = [usage + nr * USAGE_STRIDE for nr in range(sections)]
    else:
        mem.write(usage, usage_block(0) + usage_block(sections - 1))
        usage_of = [usage] * (sections - 1) + [usage + USAGE_STRIDE]
    flags = SECTION_MARKED_PRESENT | SECTION_HAS_MEM_MAP | SECTION_IS_ONLINE | SECTION_IS_EARLY
    for r in range(-(-sections // SECTIONS_PER_ROOT)):
        page_addr = alloc.take(PAGE, PAGE)
        root_ptrs[r] = page_addr
        out = bytearray(PAGE)
        for i in range(SECTIONS_PER_ROOT):
            nr = r * SECTIONS_PER_ROOT + i
            if nr >= sections:
                break
            pfn0 = nr * mm.PAGES_PER_SECTION
            coded = (lay.vmemmap + pfn0 * SP - pfn0 * SP) | flags      # sparse_encode_mem_map
            at = i * mm.mem_section.sizeof()
            out[at:at + mm.mem_section.sizeof()] = mm.mem_section.build(dict(
                section_mem_map=coded, usage=usage_of[nr], page_ext=0, pad=0))
        mem.write(page_addr, out)
    mem.write(roots, struct.pack(f">{NR_SECTION_ROOTS}Q", *root_ptrs))

    counts["data_mibs"] = len(data)
    _kernel_objects(mem, memory_size, free_pages)
    return ModelResult(mem_section=roots, vmemmap=lay.vmemmap, asce=pgd | lay.asce_type | dat._ASCE_TABLE_LENGTH,
                       levels=lay.levels, page_classes=counts, free_pages=free_pages,
                       hugetlb_mibs=sorted(huge), zero_mibs=zeros)


def _identity_tables(mem, alloc: _Alloc, memory_size: int) -> list[tuple[int, int]]:
    """The 1:1 map of all storage; returns the region-third entries by virtual address."""
    out = []
    regions = -(-memory_size // REGION3_SIZE)
    for r in range(regions):
        lo = r * REGION3_SIZE
        hi = min(memory_size, lo + REGION3_SIZE)
        if r > 0 and hi - lo == REGION3_SIZE:
            out.append((lo, lo | _REGION3_ENTRY_LARGE))           # a 2 GiB frame (EDAT2)
            continue
        st = alloc.take(CRST_SIZE, CRST_SIZE)
        entries = [_SEGMENT_ENTRY_EMPTY] * dat._CRST_ENTRIES
        for s in range((hi - lo) // MIB):
            entries[s] = (lo + s * MIB) | _SEGMENT_ENTRY_LARGE     # a 1 MiB frame (EDAT1)
        if r == 0:                                                 # the first MiB in 4 KiB pages
            pt = alloc.take(PT_SIZE, PT_SIZE)
            mem.write(pt, struct.pack(">256Q", *(p * PAGE for p in range(dat._PAGE_ENTRIES))))
            entries[0] = pt
        mem.write(st, struct.pack(f">{dat._CRST_ENTRIES}Q", *entries))
        out.append((lo, st | _REGION3_ENTRY))
    return out


def _top_tables(mem, alloc: _Alloc, lay: VirtualLayout, pgd: int, r3_entries: dict[int, int]) -> None:
    if lay.levels == 3:
        entries = [_REGION3_ENTRY_EMPTY] * dat._CRST_ENTRIES
        for va, e in r3_entries.items():
            entries[va >> dat._REGION3_SHIFT & 2047] = e
        mem.write(pgd, struct.pack(f">{dat._CRST_ENTRIES}Q", *entries))
        return
    tables: dict[int, list[int]] = {}
    for va, e in r3_entries.items():
        tables.setdefault(va >> dat._REGION2_SHIFT, [_REGION3_ENTRY_EMPTY] * dat._CRST_ENTRIES)[
            va >> dat._REGION3_SHIFT & 2047] = e
    top = [_REGION2_ENTRY_EMPTY] * dat._CRST_ENTRIES
    for idx, entries in sorted(tables.items()):
        addr = alloc.take(CRST_SIZE, CRST_SIZE)
        mem.write(addr, struct.pack(f">{dat._CRST_ENTRIES}Q", *entries))
        top[idx] = addr | _REGION2_ENTRY
    mem.write(pgd, struct.pack(f">{dat._CRST_ENTRIES}Q", *top))


def _kernel_objects(mem, memory_size: int, free_pages: dict[int, int]) -> None:
    """node_online_map, vmap_area_list, the objects struct pages point at, contig_page_data."""
    mem.write_u64(NODE_ONLINE_MAP, 1)
    mem.write(VMAP_AREA_LIST, struct.pack(">QQ", VMAP_AREA_LIST, VMAP_AREA_LIST))
    mem.write_u64(MEM_MAP_VAR, 0)
    for i in range(3):
        head = LRU_LISTS + 16 * i
        mem.write(head, struct.pack(">QQ", head, head))
    mem.write(KMEM_CACHE + 0x40, struct.pack(">QQ", KMEM_CACHE + 0x40, KMEM_CACHE + 0x40))
    total_pages = memory_size // PAGE
    dma_pages = min(total_pages, mm.DMA_LIMIT // PAGE)
    spans = [dma_pages, total_pages - dma_pages, 0]
    zoff = mm.field_offsets(mm.zone)
    fa = mm.field_offsets(mm.free_area)
    zones = bytearray()
    for z in range(mm.MAX_NR_ZONES):
        zb = bytearray(mm.zone.sizeof())
        struct.pack_into(">Q", zb, zoff["spanned_pages"], spans[z])
        for order in range(mm.MAX_ORDER):
            base = zoff["free_area"] + order * mm.free_area.sizeof()
            for t in range(mm.MIGRATE_TYPES):      # empty lists: the simulator links no free pages
                addr = CONTIG_PAGE_DATA + z * mm.zone.sizeof() + base + 16 * t
                struct.pack_into(">QQ", zb, base + fa["free_list"] + 16 * t, addr, addr)
        struct.pack_into(">Q", zb, zoff["vm_stat"] + 8 * mm.NR_FREE_PAGES, free_pages.get(z, 0))
        zones += zb
    pg = bytearray(mm.pglist_data.sizeof())
    po = mm.field_offsets(mm.pglist_data)
    pg[po["node_zones"]:po["node_zones"] + len(zones)] = zones
    struct.pack_into(">i", pg, po["nr_zones"], 2 if total_pages > dma_pages else 1)
    struct.pack_into(">QQQ", pg, po["node_start_pfn"], 0, total_pages, total_pages)
    struct.pack_into(">i", pg, po["node_id"], 0)
    mem.write(CONTIG_PAGE_DATA, pg)


def vmcoreinfo_keys(vi: VmcoreInfo, mem_section: int, where: str) -> None:
    """The memory-model lines of a 6.1 VMCOREINFO; `where` picks the group, in the kernel's order:
    "symbols" (after _stext), "layout" (before the printk keys), "numbers" (after them)."""
    if where == "layout":
        vi.set_symbol("vmap_area_list", VMAP_AREA_LIST)
        vi.set_symbol("mem_map", MEM_MAP_VAR)
        vi.set_symbol("contig_page_data", CONTIG_PAGE_DATA)
        vi.set_symbol("mem_section", mem_section)
        vi.set_length("mem_section", NR_SECTION_ROOTS)
        vi.set_size("mem_section", mm.mem_section.sizeof())
        vi.set_offset("mem_section.section_mem_map", mm.field_offsets(mm.mem_section)["section_mem_map"])
        vi.set_number("SECTION_SIZE_BITS", mm.SECTION_SIZE_BITS)
        vi.set_number("MAX_PHYSMEM_BITS", mm.MAX_PHYSMEM_BITS)
        vi.set_size("page", mm.page.sizeof())
        vi.set_size("pglist_data", mm.pglist_data.sizeof())
        vi.set_size("zone", mm.zone.sizeof())
        vi.set_size("free_area", mm.free_area.sizeof())
        vi.set_size("list_head", mm.list_head.sizeof())
        vi.set_size("nodemask_t", 8)
        for name in ("flags", "_refcount", "mapping", "lru", "_mapcount", "private", "compound_dtor",
                     "compound_order", "compound_head"):
            vi.set_offset(f"page.{name}", mm.PAGE_OFFSETS[name])
        po = mm.field_offsets(mm.pglist_data)
        for name in ("node_zones", "nr_zones", "node_start_pfn", "node_spanned_pages", "node_id"):
            vi.set_offset(f"pglist_data.{name}", po[name])
        zo = mm.field_offsets(mm.zone)
        for name in ("free_area", "vm_stat", "spanned_pages"):
            vi.set_offset(f"zone.{name}", zo[name])
        vi.set_offset("free_area.free_list", mm.field_offsets(mm.free_area)["free_list"])
        vi.set_offset("list_head.next", 0)
        vi.set_offset("list_head.prev", 8)
        vi.set_offset("vmap_area.va_start", 0)
        vi.set_offset("vmap_area.list", 40)
        vi.set_length("zone.free_area", mm.MAX_ORDER)
    elif where == "numbers":
        vi.set_length("free_area.free_list", mm.MIGRATE_TYPES)
        vi.set_number("NR_FREE_PAGES", mm.NR_FREE_PAGES)
        vi.set_number("PG_lru", mm.PG_lru)
        vi.set_number("PG_private", mm.PG_private)
        vi.set_number("PG_swapcache", mm.PG_swapcache)
        vi.set_number("PG_swapbacked", mm.PG_swapbacked)
        vi.set_number("PG_slab", mm.PG_slab)
        vi.set_number("PG_head_mask", mm.PG_head_mask)
        vi.set_number("PAGE_BUDDY_MAPCOUNT_VALUE", mm.PAGE_BUDDY_MAPCOUNT_VALUE)
        vi.set_number("HUGETLB_PAGE_DTOR", mm.HUGETLB_PAGE_DTOR)
        vi.set_number("PAGE_OFFLINE_MAPCOUNT_VALUE", mm.PAGE_OFFLINE_MAPCOUNT_VALUE)
    else:
        raise AssertionError(where)
