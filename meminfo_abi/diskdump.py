"""makedumpfile's kdump-compressed ("diskdump") format and its flattened form, declared once.

the kdump-compressed format: makedumpfile's diskdump_mod.h and makedumpfile(8).  A kdump-compressed file is made of blocks of
`block_size` bytes (the page size, 4096 on s390x):

  block 0                  disk_dump_header (0x1d0 bytes, zero padded)
  block 1 ..               kdump_sub_header (0x68 bytes), then the ELF note data
                           (per-CPU notes, VMCOREINFO); sub_hdr_size blocks in all
  bitmap_blocks blocks     bitmap 1 (page exists) | bitmap 2 (page is dumped)
  then                     page_desc[number of bits set in bitmap 2], pfn order
  then                     page data (a shared zero page first when zero pages
                           are excluded), each page compressed on its own

Bit `pfn` of a bitmap is bit `pfn % 8` (least significant first) of byte
`pfn // 8`.  The headers are C structs in the byte order of the machine that
wrote them: makedumpfile runs on the dumped machine (big-endian on s390x),
QEMU writes the guest's order.  Every layout is therefore declared for a
given byte order: `layouts(">")` (s390x) or `layouts("<")`.  Sizes are LP64.

The flattened form (`makedumpfile -F`) is a stream: a 4096-byte
makedumpfile_header, then records {offset, buf_size} + buf_size bytes that
belong at `offset` of the rebuilt file, ended by offset = buf_size = -1.  Its
headers are always big-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

from construct import (
    Adapter,
    Bytes,
    FormatField,
    Padded,
    Int32sb,
    Int32sl,
    Int32ub,
    Int32ul,
    Int64sb,
    Int64sl,
    Int64ub,
    Int64ul,
    Padding,
    Struct,
)

from dumpkit.errors import BadInputError
from dumpkit.ranges import merge_touching

# -- signatures and versions ------------------------------------------------------------
KDUMP_SIGNATURE = b"KDUMP   "            # "KDUMP" and three blanks
DISKDUMP_SIGNATURE = b"DISKDUMP"         # the old in-kernel diskdump; not read here
SIG_LEN = 8
DUMP_HEADER_VERSION = 6                  # what makedumpfile and QEMU write
MAX_HEADER_VERSION = 6                   # newest sub header layout we know

# -- disk_dump_header.status and page_desc.flags ----------------------------------------
DUMP_DH_COMPRESSED_ZLIB = 0x1
DUMP_DH_COMPRESSED_LZO = 0x2
DUMP_DH_COMPRESSED_SNAPPY = 0x4
DUMP_DH_COMPRESSED_INCOMPLETE = 0x8      # header only: the file was cut short (ENOSPC, -L)
DUMP_DH_EXCLUDED_VMEMMAP = 0x10          # header only: unused vmemmap pages left out (-e)
DUMP_DH_COMPRESSED_ZSTD = 0x20
DUMP_DH_COMPRESSED = (DUMP_DH_COMPRESSED_ZLIB | DUMP_DH_COMPRESSED_LZO | DUMP_DH_COMPRESSED_SNAPPY
                      | DUMP_DH_COMPRESSED_ZSTD)
COMPRESSION_NAMES = {
    DUMP_DH_COMPRESSED_ZLIB: "zlib",
    DUMP_DH_COMPRESSED_LZO: "lzo",
    DUMP_DH_COMPRESSED_SNAPPY: "snappy",
    DUMP_DH_COMPRESSED_ZSTD: "zstd",
}
COMPRESSION_FLAGS = {name: flag for flag, name in COMPRESSION_NAMES.items()}

# -- kdump_sub_header.dump_level bits (makedumpfile -d) --------------------------------------
DL_EXCLUDE_ZERO = 0x01
DL_EXCLUDE_CACHE = 0x02
DL_EXCLUDE_CACHE_PRI = 0x04
DL_EXCLUDE_USER_DATA = 0x08
DL_EXCLUDE_FREE = 0x10
DL_MAX = 0x1F

# -- sizes -------------------------------------------------------------------------------
NEW_UTS_LEN = 64                          # + the NUL: 65 bytes per utsname field
UTS_FIELD_SIZE = NEW_UTS_LEN + 1
UTS_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")
DISK_DUMP_HEADER_SIZE = 0x1D0            # up to tasks[0]
KDUMP_SUB_HEADER_SIZE = 0x68             # version 6, LP64
PAGE_DESC_SIZE = 24
DISKDUMP_HEADER_BLOCKS = 1               # the main header takes block 0

MDF_SIGNATURE = b"makedumpfile"
MDF_SIG_LEN = 16
MDF_TYPE_FLAT_HEADER = 1
MDF_VERSION_FLAT_HEADER = 1
MDF_HEADER_SIZE = 4096
MDF_DATA_HEADER_SIZE = 16
MDF_END_FLAG = -1

MIN_BLOCK_SIZE = 512
MAX_BLOCK_SIZE = 1 << 20

# sub header fields and the header_version that introduced them
SUB_HEADER_SINCE = {
    "phys_base": 1, "dump_level": 1, "split": 2, "start_pfn": 2, "end_pfn": 2,
    "offset_vmcoreinfo": 3, "size_vmcoreinfo": 3, "offset_note": 4, "size_note": 4,
    "offset_eraseinfo": 5, "size_eraseinfo": 5, "start_pfn_64": 6, "end_pfn_64": 6, "max_mapnr_64": 6,
}


class UtsField(Adapter):
    """One `char[65]` of struct new_utsname: NUL-terminated text (undecodable bytes replaced)."""

    def __init__(self) -> None:
        super().__init__(Bytes(UTS_FIELD_SIZE))

    def _decode(self, obj, context, path):
        return obj.split(b"\0", 1)[0].decode("ascii", errors="replace")

    def _encode(self, obj, context, path):
        raw = obj.encode("ascii", errors="replace") if isinstance(obj, str) else bytes(obj)
        return raw[:NEW_UTS_LEN].ljust(UTS_FIELD_SIZE, b"\0")


# struct new_utsname: the same in every byte order
new_utsname = Struct(*[name / UtsField() for name in UTS_FIELDS])


@dataclass(frozen=True)
class DiskdumpLayouts:
    """The format's structs for one byte order."""

    byteorder: str                # ">" or "<"
    disk_dump_header: Struct
    kdump_sub_header: Struct
    page_desc: Struct
    page_desc_struct: struct.Struct   # the same 24 bytes, for the per-page hot path


@lru_cache(maxsize=None)
def layouts(byteorder: str = ">") -> DiskdumpLayouts:
    """disk_dump_header, kdump_sub_header (v6) and page_desc in byte order `byteorder` (LP64)."""
    if byteorder == ">":
        u32, s32, u64, s64 = Int32ub, Int32sb, Int64ub, Int64sb
    elif byteorder == "<":
        u32, s32, u64, s64 = Int32ul, Int32sl, Int64ul, Int64sl
    else:
        raise ValueError(f"byte order must be '>' or '<', not {byteorder!r}")
    timeval = Struct("tv_sec" / s64, "tv_usec" / s64)
    disk_dump_header = Struct(
        "signature" / Bytes(SIG_LEN),        # 0x000
        "header_version" / s32,              # 0x008
        "utsname" / new_utsname,             # 0x00c, 6 x 65
        Padding(6),                          # 0x192  aligns the timeval
        "timestamp" / timeval,               # 0x198
        "status" / u32,                      # 0x1a8
        "block_size" / s32,                  # 0x1ac
        "sub_hdr_size" / s32,                # 0x1b0  blocks of sub header + notes
        "bitmap_blocks" / u32,               # 0x1b4  blocks of both bitmaps
        "max_mapnr" / u32,                   # 0x1b8  truncated to 32 bits: use max_mapnr_64
        "total_ram_blocks" / u32,            # 0x1bc
        "device_blocks" / u32,               # 0x1c0
        "written_blocks" / u32,              # 0x1c4
        "current_cpu" / u32,                 # 0x1c8
        "nr_cpus" / s32,                     # 0x1cc
        # tasks[]: a zero-length array of task_struct pointers ends the struct at 0x1d0
    )
    kdump_sub_header = Struct(
        "phys_base" / u64,                   # 0x00
        "dump_level" / s32,                  # 0x08
        "split" / s32,                       # 0x0c
        "start_pfn" / u64,                   # 0x10  obsolete (32-bit)
        "end_pfn" / u64,                     # 0x18  obsolete (32-bit)
        "offset_vmcoreinfo" / u64,           # 0x20  absolute file offset
        "size_vmcoreinfo" / u64,             # 0x28
        "offset_note" / u64,                 # 0x30
        "size_note" / u64,                   # 0x38
        "offset_eraseinfo" / u64,            # 0x40
        "size_eraseinfo" / u64,              # 0x48
        "start_pfn_64" / u64,                # 0x50
        "end_pfn_64" / u64,                  # 0x58
        "max_mapnr_64" / u64,                # 0x60
    )
    page_desc = Struct(
        "offset" / s64,                      # absolute file offset of the page data
        "size" / u32,                        # bytes stored
        "flags" / u32,                       # DUMP_DH_COMPRESSED_* or 0 (raw)
        "page_flags" / u64,                  # unused (0)
    )
    return DiskdumpLayouts(byteorder, disk_dump_header, kdump_sub_header, page_desc, packer(page_desc))


def packer(layout: Struct) -> struct.Struct:
    """A struct.Struct equivalent to a construct Struct made of integer fields and padding.

    The hot paths (one descriptor per page, one record header per write) pack
    with it; the format string is derived from the declaration, not written twice.
    """
    order = None
    fmt = []
    for sub in layout.subcons:
        inner = getattr(sub, "subcon", None)
        if isinstance(sub, Padded):
            fmt.append(f"{sub.length}x")
        elif isinstance(inner, FormatField):
            o, code = inner.fmtstr[0], inner.fmtstr[1:]
            if order not in (None, o):
                raise ValueError("mixed byte orders in one layout")
            order = o
            fmt.append(code)
        else:
            raise ValueError(f"field {getattr(sub, 'name', sub)!r} is not a plain integer")
    return struct.Struct((order or ">") + "".join(fmt))


BE = layouts(">")      # s390x
LE = layouts("<")

# -- the flattened format (always big-endian) ------------------------------------------------
makedumpfile_header = Struct(
    "signature" / Bytes(MDF_SIG_LEN),        # "makedumpfile", NUL padded
    "type" / Int64sb,                        # MDF_TYPE_FLAT_HEADER
    "version" / Int64sb,                     # MDF_VERSION_FLAT_HEADER
    Padding(MDF_HEADER_SIZE - MDF_SIG_LEN - 16),
)
makedumpfile_data_header = Struct(
    "offset" / Int64sb,                      # where buf goes in the rebuilt file; -1 ends the stream
    "buf_size" / Int64sb,                    # -1 with the end flag
)
MDF_DATA_HEADER = packer(makedumpfile_data_header)   # the same, for streaming


def flat_header_bytes() -> bytes:
    return makedumpfile_header.build(dict(signature=MDF_SIGNATURE.ljust(MDF_SIG_LEN, b"\0"),
                                          type=MDF_TYPE_FLAT_HEADER, version=MDF_VERSION_FLAT_HEADER))


def flat_record_header(offset: int, size: int) -> bytes:
    return makedumpfile_data_header.build(dict(offset=offset, buf_size=size))


FLAT_END_RECORD = flat_record_header(MDF_END_FLAG, MDF_END_FLAG)


def is_flattened(head: bytes) -> bool:
    """The flattened header: signature, type 1 and version 1 (big-endian)."""
    if len(head) < MDF_SIG_LEN + 16 or head[:MDF_SIG_LEN] != MDF_SIGNATURE.ljust(MDF_SIG_LEN, b"\0"):
        return False
    h = makedumpfile_header.parse(head[:MDF_HEADER_SIZE].ljust(MDF_HEADER_SIZE, b"\0"))
    return h.type == MDF_TYPE_FLAT_HEADER and h.version == MDF_VERSION_FLAT_HEADER


# -- byte order and sanity ------------------------------------------------------------------
def bitmap_half_blocks(max_mapnr: int, block_size: int) -> int:
    """Blocks one bitmap needs for max_mapnr pages (bitmap_blocks is twice this)."""
    return -(-(-(-max_mapnr // 8)) // block_size)


def header_is_sane(h) -> bool:
    """Plausible values for a disk_dump_header parsed in some byte order."""
    bs = h.block_size
    if not (1 <= h.header_version <= 64):
        return False
    if not (MIN_BLOCK_SIZE <= bs <= MAX_BLOCK_SIZE) or bs & (bs - 1):
        return False
    if h.sub_hdr_size < 0 or h.nr_cpus < 0:
        return False
    # both bitmaps together must cover max_mapnr pages (the truncated 32-bit value)
    return h.bitmap_blocks * bs * 4 >= h.max_mapnr


def detect_byte_order(head: bytes) -> str | None:
    """">" or "<" for a disk_dump_header with the KDUMP signature, None if neither is sane.

    Both orders are tried (QEMU writes the guest's order, a cross-host tool its
    own); big-endian wins a tie, as the format is s390x's here.
    """
    if len(head) < DISK_DUMP_HEADER_SIZE or head[:SIG_LEN] != KDUMP_SIGNATURE:
        return None
    for order in (">", "<"):
        h = layouts(order).disk_dump_header.parse(head[:DISK_DUMP_HEADER_SIZE])
        if header_is_sane(h):
            return order
    return None


# -- bitmaps (LSB first) ----------------------------------------------------------------
def bitmap_set_run(buf: bytearray, first_bit: int, start: int, end: int) -> None:
    """Set bits [start, end) of a bitmap block `buf` whose first bit is pfn `first_bit`."""
    s, e = max(start - first_bit, 0), min(end - first_bit, len(buf) * 8)
    if s >= e:
        return
    sb, eb = s >> 3, e >> 3
    if sb == eb:
        buf[sb] |= ((1 << (e - s)) - 1) << (s & 7)
        return
    if s & 7:
        buf[sb] |= (0xFF << (s & 7)) & 0xFF
        sb += 1
    if sb < eb:
        buf[sb:eb] = b"\xff" * (eb - sb)
    if e & 7:
        buf[eb] |= (1 << (e & 7)) - 1


def int_runs(value: int, width: int, first_bit: int = 0) -> Iterator[tuple[int, int]]:
    """(start, end) runs of set bits among the low `width` bits of `value` (a bitmap block read
    with int.from_bytes(..., "little"), so bit i is pfn first_bit + i)."""
    value &= (1 << width) - 1
    pos = 0
    while value >> pos:
        rest = value >> pos
        pos += (rest & -rest).bit_length() - 1
        start = pos
        gaps = ~(value >> pos) & ((1 << (width - pos)) - 1)
        if not gaps:
            yield first_bit + start, first_bit + width
            return
        pos += (gaps & -gaps).bit_length() - 1
        yield first_bit + start, first_bit + pos


def bitmap_runs(data: bytes | bytearray | memoryview, first_bit: int = 0,
                piece: int = 4096) -> Iterator[tuple[int, int]]:
    """(start, end) runs of set bits in bitmap bytes whose bit 0 is `first_bit` (runs that
    cross piece borders are merged)."""
    mv = memoryview(data).cast("B")

    def piece_runs() -> Iterator[tuple[int, int]]:
        for base in range(0, len(mv), piece):
            chunk = mv[base:base + piece]
            yield from int_runs(int.from_bytes(chunk, "little"), len(chunk) * 8, first_bit + base * 8)

    yield from merge_touching(piece_runs())


def popcount(data: bytes | bytearray | memoryview) -> int:
    return int.from_bytes(data, "little").bit_count()


def check_page_desc(desc, block_size: int) -> None:
    """Bounds of one page descriptor (size up to a block, known flags)."""
    if desc.size > block_size:
        raise BadInputError(f"page descriptor size {desc.size} is larger than the block size {block_size}")
    if desc.flags & ~DUMP_DH_COMPRESSED:
        raise BadInputError(f"page descriptor flags 0x{desc.flags:x} are unknown")
