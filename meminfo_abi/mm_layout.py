"""The memory model of a Linux 6.1 s390x kernel: struct page, struct mem_section and the node /
zone structures VMCOREINFO names, with the page-flag numbers and page types of that release.

Sizes and offsets are those Debian's 6.1 s390x kernel (CONFIG_MEMCG, CONFIG_PAGE_EXTENSION,
CONFIG_SPARSEMEM_VMEMMAP, CONFIG_SPARSEMEM_EXTREME) writes into its VMCOREINFO:
SIZE(page)=64, SIZE(mem_section)=32, SIZE(pglist_data)=8704, SIZE(zone)=2048,
SIZE(free_area)=104 (include/linux/mm_types.h, include/linux/mmzone.h, page-flags.h).
Big-endian: s390x.
"""

from __future__ import annotations

from construct import Array, Int8ub, Int32sb, Int32ub, Int64ub, Padding, Struct

# -- SPARSEMEM (arch/s390/include/asm/sparsemem.h, include/linux/mmzone.h) -------------------
SECTION_SIZE_BITS = 28                       # 256 MiB sections
MAX_PHYSMEM_BITS = 46                        # 64 TiB
PAGE_SHIFT = 12
PFN_SECTION_SHIFT = SECTION_SIZE_BITS - PAGE_SHIFT
PAGES_PER_SECTION = 1 << PFN_SECTION_SHIFT
NR_MEM_SECTIONS = 1 << (MAX_PHYSMEM_BITS - SECTION_SIZE_BITS)
SUBSECTION_SHIFT = 21                        # 2 MiB subsections (SPARSEMEM_VMEMMAP)
SUBSECTIONS_PER_SECTION = 1 << (SECTION_SIZE_BITS - SUBSECTION_SHIFT)
PAGEBLOCK_ORDER = 8                          # HUGETLB_PAGE_ORDER: 1 MiB pageblocks
NR_PAGEBLOCK_BITS = 4
MIGRATE_MOVABLE = 1

# section_mem_map: the struct page array minus the section's first pfn, flags in the low bits
# (SECTION_* and PAGE_MAPPING_ANON are declared once, for every kernel, in meminfo_abi.mm)

# -- page flags (enum pageflags, 6.1) and page types in _mapcount -----------------------------
PG_locked = 0
PG_referenced = 1
PG_uptodate = 2
PG_dirty = 3
PG_lru = 4
PG_active = 5
PG_slab = 9
PG_owner_priv_1 = 10
PG_swapcache = PG_owner_priv_1
PG_reserved = 12
PG_private = 13
PG_head = 16
PG_mappedtodisk = 17
PG_swapbacked = 19
PG_head_mask = 1 << PG_head

# page_type shares _mapcount: -1 is "no type", a type clears its bit (PAGE_TYPE_BASE 0xf0000000)
PAGE_MAPCOUNT_NONE = -1
PG_buddy_type = 0x00000080
PG_offline_type = 0x00000100
PG_table_type = 0x00000200
PAGE_BUDDY_MAPCOUNT_VALUE = ~PG_buddy_type            # -129
PAGE_OFFLINE_MAPCOUNT_VALUE = ~PG_offline_type        # -257
PAGE_TABLE_MAPCOUNT_VALUE = ~PG_table_type            # -513

# compound pages: destructors (enum compound_dtor_id) and the tail markers
NULL_COMPOUND_DTOR = 0
COMPOUND_PAGE_DTOR = 1
HUGETLB_PAGE_DTOR = 2
TAIL_MAPPING = 0x400                                  # POISON_POINTER_DELTA is 0 on s390
HPAGE_ORDER = 8                                       # s390 huge pages: 1 MiB segments

# page->flags: no section, node or cpupid fields (VMEMMAP, no NUMA on s390 6.1): the zone
# number sits in the top ZONES_WIDTH bits
ZONES_WIDTH = 2
ZONES_PGSHIFT = 64 - ZONES_WIDTH
ZONE_DMA, ZONE_NORMAL, ZONE_MOVABLE = 0, 1, 2
MAX_NR_ZONES = 3
DMA_LIMIT = 1 << 31                                   # ZONE_DMA: the storage below 2 GiB
MAX_ORDER = 11                                        # buddy orders 0..10
MIGRATE_TYPES = 6                                     # LENGTH(free_area.free_list)
NR_FREE_PAGES = 0                                     # enum zone_stat_item

list_head = Struct("next" / Int64ub, "prev" / Int64ub)

# struct page, the page-cache / anonymous view of the first union (what VMCOREINFO names)
page = Struct(
    "flags" / Int64ub,
    "lru" / list_head,
    "mapping" / Int64ub,
    "index" / Int64ub,
    "private" / Int64ub,
    "_mapcount" / Int32sb,                    # union with page_type
    "_refcount" / Int32sb,
    "memcg_data" / Int64ub,
)

# struct page of the first tail page of a compound page (page[1])
page_compound_tail = Struct(
    "flags" / Int64ub,
    "compound_head" / Int64ub,                # head page address | 1
    "compound_dtor" / Int8ub,
    "compound_order" / Int8ub,
    Padding(2),
    "compound_mapcount" / Int32sb,
    "compound_pincount" / Int32sb,
    "compound_nr" / Int32ub,
    "index" / Int64ub,
    "private" / Int64ub,
    "_mapcount" / Int32sb,
    "_refcount" / Int32sb,
    "memcg_data" / Int64ub,
)

# struct slab (mm/slab.h, SLUB), overlaid on the struct page of a slab
slab = Struct(
    "__page_flags" / Int64ub,
    "slab_list" / list_head,
    "slab_cache" / Int64ub,                   # where page.mapping is
    "freelist" / Int64ub,
    "counters" / Int64ub,                     # inuse:16, objects:15, frozen:1 (bits from the left)
    "__unused" / Int32sb,
    "__page_refcount" / Int32sb,
    "memcg_data" / Int64ub,
)

mem_section = Struct(
    "section_mem_map" / Int64ub,
    "usage" / Int64ub,                        # struct mem_section_usage *
    "page_ext" / Int64ub,                     # CONFIG_PAGE_EXTENSION
    "pad" / Int64ub,
)

# struct mem_section_usage: subsection bitmap, then 4 bits per pageblock
mem_section_usage = Struct(
    "subsection_map" / Array(SUBSECTIONS_PER_SECTION // 64, Int64ub),
    "pageblock_flags" / Array(PAGES_PER_SECTION // (1 << PAGEBLOCK_ORDER) * NR_PAGEBLOCK_BITS // 64, Int64ub),
)

free_area = Struct(
    "free_list" / Array(MIGRATE_TYPES, list_head),
    "nr_free" / Int64ub,
)

# struct zone and struct pglist_data: only the members VMCOREINFO names are declared
zone = Struct(
    Padding(120),
    "spanned_pages" / Int64ub,                # 120
    Padding(128),
    "free_area" / Array(MAX_ORDER, free_area),  # 256
    Padding(1792 - 256 - MAX_ORDER * 104),
    "vm_stat" / Array(32, Int64ub),           # 1792: atomic_long_t vm_stat[NR_VM_ZONE_STAT_ITEMS]
)
ZONE_SIZE = 2048

pglist_data = Struct(
    "node_zones" / Array(MAX_NR_ZONES, zone),
    Padding(6208 - MAX_NR_ZONES * ZONE_SIZE),
    "nr_zones" / Int32sb,                     # 6208
    Padding(4),
    "node_start_pfn" / Int64ub,               # 6216
    "node_present_pages" / Int64ub,
    "node_spanned_pages" / Int64ub,           # 6232
    "node_id" / Int32sb,                      # 6240
    Padding(8704 - 6244),
)


def field_offsets(layout: Struct) -> dict[str, int]:
    """Offsets of the named members of a fixed-size Struct (what OFFSET(struct.member) holds)."""
    out, pos = {}, 0
    for sc in layout.subcons:
        if sc.name:
            out[sc.name] = pos
        pos += sc.sizeof()
    return out


# the VMCOREINFO OFFSET(page.*) members and the views they are declared in
PAGE_OFFSETS = {
    "flags": field_offsets(page)["flags"],
    "_refcount": field_offsets(page)["_refcount"],
    "mapping": field_offsets(page)["mapping"],
    "lru": field_offsets(page)["lru"],
    "_mapcount": field_offsets(page)["_mapcount"],
    "private": field_offsets(page)["private"],
    "compound_dtor": field_offsets(page_compound_tail)["compound_dtor"],
    "compound_order": field_offsets(page_compound_tail)["compound_order"],
    "compound_head": field_offsets(page_compound_tail)["compound_head"],
}
