"""s390x dynamic address translation (DAT) table formats, as the z/Architecture Principles of
Operation describe them (chapter "Dynamic Address Translation"), named after the Linux kernel's
<asm/pgtable.h> names so one grep finds both.

IBM numbers bits from the left (bit 0 = 2**63); the masks below are the usual right-hand values.

A 64-bit virtual address splits into five indexes and a byte index:
  RFX bits 0-10, RSX 11-21, RTX 22-32 (11 bits each, 2048 entries), SX 33-43 (2048 entries),
  PX 44-51 (256 entries), BX 52-63 (4 KiB page).
The address-space-control element (ASCE, CR1/CR7/CR13) names the top table, its type (DT)
and its length (TL, in units of 512 entries); every region-table entry names the next table,
its type (TT), offset (TF) and length (TL).  Region-third and segment entries with the
format-control bit (FC, enhanced DAT 2/1) map a 2 GiB region or a 1 MiB segment directly.
"""

from __future__ import annotations

# -- address-space-control element (_ASCE_*) ------------------------------------------------
_ASCE_ORIGIN = ~0xFFF & 0xFFFF_FFFF_FFFF_FFFF   # bits 0-51: table origin (4 KiB aligned)
_ASCE_REAL_SPACE = 0x20                          # bit 58 R: no translation at all
_ASCE_TYPE_MASK = 0x0C                           # bits 60-61 DT
_ASCE_TABLE_LENGTH = 0x03                        # bits 62-63 TL

# designation / table types (DT in the ASCE, TT in a table entry)
_ASCE_TYPE_REGION1 = 0x0C
_ASCE_TYPE_REGION2 = 0x08
_ASCE_TYPE_REGION3 = 0x04
_ASCE_TYPE_SEGMENT = 0x00

# -- region-table entries (_REGION_ENTRY_*) -------------------------------------------------
_REGION_ENTRY_ORIGIN = ~0xFFF & 0xFFFF_FFFF_FFFF_FFFF  # bits 0-51: next table origin
_REGION_ENTRY_PROTECT = 0x800                    # bit 52 P
_REGION_ENTRY_OFFSET = 0xC0                      # bits 56-57 TF
_REGION_ENTRY_INVALID = 0x20                     # bit 58 I
_REGION_ENTRY_TYPE_MASK = 0x0C                   # bits 60-61 TT
_REGION_ENTRY_LENGTH = 0x03                      # bits 62-63 TL
_REGION3_ENTRY_LARGE = 0x400                     # bit 53 FC in a region-third entry: 2 GiB frame
_REGION3_ENTRY_ORIGIN_LARGE = ~0x7FFF_FFFF & 0xFFFF_FFFF_FFFF_FFFF  # bits 0-32: region frame

# -- segment-table entries (_SEGMENT_ENTRY_*) -----------------------------------------------
_SEGMENT_ENTRY_ORIGIN = ~0x7FF & 0xFFFF_FFFF_FFFF_FFFF  # bits 0-52: page-table origin (2 KiB)
_SEGMENT_ENTRY_LARGE = 0x400                     # bit 53 FC: 1 MiB frame
_SEGMENT_ENTRY_ORIGIN_LARGE = ~0xFFFFF & 0xFFFF_FFFF_FFFF_FFFF  # bits 0-43: segment frame
_SEGMENT_ENTRY_PROTECT = 0x200                   # bit 54 P
_SEGMENT_ENTRY_INVALID = 0x20                    # bit 58 I
_SEGMENT_ENTRY_TYPE_MASK = 0x0C                  # bits 60-61 TT (00 for a segment entry)

# -- page-table entries (_PAGE_*) -----------------------------------------------------------
_PAGE_ORIGIN = ~0xFFF & 0xFFFF_FFFF_FFFF_FFFF    # bits 0-51: page-frame real address
_PAGE_INVALID = 0x400                            # bit 53 I
_PAGE_PROTECT = 0x200                            # bit 54 P

# -- index fields of a virtual address: (shift, entries) ------------------------------------
_REGION1_SHIFT = 53
_REGION2_SHIFT = 42
_REGION3_SHIFT = 31
_SEGMENT_SHIFT = 20
_PAGE_SHIFT = 12
_CRST_ENTRIES = 2048                             # region and segment tables: 2048 x 8 bytes
_PAGE_ENTRIES = 256                              # page tables: 256 x 8 bytes (2 KiB)
_CRST_LENGTH_UNIT = 512                          # TL/TF count in units of 512 entries

# the levels from the top: name, table type (DT/TT), index shift, entries per table
DAT_LEVELS = (
    ("region-first", _ASCE_TYPE_REGION1, _REGION1_SHIFT, _CRST_ENTRIES),
    ("region-second", _ASCE_TYPE_REGION2, _REGION2_SHIFT, _CRST_ENTRIES),
    ("region-third", _ASCE_TYPE_REGION3, _REGION3_SHIFT, _CRST_ENTRIES),
    ("segment", _ASCE_TYPE_SEGMENT, _SEGMENT_SHIFT, _CRST_ENTRIES),
    ("page", None, _PAGE_SHIFT, _PAGE_ENTRIES),
)
DAT_ENTRY_SIZE = 8
