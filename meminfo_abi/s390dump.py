"""The s390 stand-alone dump formats: header, end marker, dump segments, zipl dump records.

ref-formats-and-peers.md §1.  Everything is big-endian (s390x native) except
the AWSTAPE block header of tape images, which is little-endian by its own
definition (Hercules).

Stream layouts
--------------
* ``s390`` (flat, magic ``...23fd``): 4 KiB header, ``mem_size`` bytes of
  memory, 16-byte end marker.  Also what the tape dumper writes (in 32 KiB
  tape blocks).
* ``s390_ext`` (extended, magic ``...23fe``): 4 KiB header, then dump
  segments -- a 4 KiB segment header followed by the segment's data -- the
  last one carrying the stop marker, then the end marker in the next block.
  A compressed segment stores each 1 MiB unit as its own zlib stream at a
  block offset recorded in ``entry_offset[]`` (bit 31 = stored raw).

zipl's dump records
-------------------
``BootInfo`` ("zIPL", bp_type 1 = dump) carries the dump partition (ECKD:
start/end block, block size, heads, blocks per track; FBA: start/end block).
The dump tool starts with a 7-character magic and a version byte
(``DumperHead``) and ends with ``Stage2dumpParmTail`` (no_compress,
mvdump_force, mem_upper_limit).  A multi-volume tool is followed by the
512-byte ``MvdumpParmTable``.

Reading a dump
--------------
``read_header`` validates a header as zgetdump does; ``ExtStreamWalker``
walks the segments of an extended stream with every count bounded and tells
why a stream is not complete; ``read_unit`` returns one 1 MiB unit of a
segment, inflating compressed units.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
import zlib as _stdlib_zlib
from array import array
from dataclasses import asdict, dataclass, field
from typing import BinaryIO, Iterator, Sequence

from construct import Adapter, Array, Bytes, Int8ub, Int16ub, Int16ul, Int32ub, Int64ub, Struct

from dumpkit.errors import BadInputError, DumpIOError

try:  # zlib-ng is a dependency; the standard zlib reads the same streams
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # pragma: no cover - depends on the installation
    _zlib = _stdlib_zlib

MIB = 1 << 20
PAGE_SIZE = 4096

# -- constants (include/dump/s390_dump.h) ------------------------------------------
DF_S390_MAGIC = 0xA8190173618F23FD          # flat layout
DF_S390_MAGIC_EXT = 0xA8190173618F23FE      # extended layout (dump segments)
DF_S390_HDR_SIZE = 0x1000
DF_S390_EM_SIZE = 16
DF_S390_EM_MAGIC = 0x44554D505F454E44       # "DUMP_END"
DF_S390_EM_STR = b"DUMP_END"
DF_S390_CPU_MAX = 512
DF_S390_MAGIC_BLK_ECKD = 3                  # the dump tool starts at block 3 of an ECKD DASD
DF_S390_DUMPER_MAGIC_SIZE = 7
DF_S390_ARCH_32 = 1
DF_S390_ARCH_64 = 2

DF_S390_VERSION_EXT = 1                     # extended, no compressed segments
DF_S390_VERSION_EXT_ZLIB = 2                # extended, may hold zlib segments
DF_S390_VERSION_FLAT = 5                    # what zgetdump -f s390 writes

DUMP_LEVEL_ALL = 4
DUMP_SEGM_HDR_SIZE = PAGE_SIZE
DUMP_SEGM_ENTRY_OFFSET = 0x34
DUMP_SEGM_ZLIB_ENTSIZE = MIB
DUMP_SEGM_ZLIB_MAXENTS = (DUMP_SEGM_HDR_SIZE - DUMP_SEGM_ENTRY_OFFSET) // 4      # 1011
DUMP_SEGM_ZLIB_MAXLEN = DUMP_SEGM_ZLIB_MAXENTS * DUMP_SEGM_ZLIB_ENTSIZE
DUMP_SEGM_ENTRY_UNCOMPRESSED = 0x80000000
DUMP_SEGM_STOP_MARKER = 0xFFFFFFFFFFFFFFFF
ZLIB_COMPRESSION_LEVEL = 1                  # the dumper deflates at level 1 (DFLTCC)
MEM_UPPER_LIMIT_NONE = 0xFFFFFFFFFFFFFFFF

# Dump tool magics: 7 characters + a version byte (zgetdump -d reads them at block 3).
DUMPER_MAGIC_ECKD_EXT = b"XECKD64"          # ECKD single volume, version 2 = zlib capable
DUMPER_MAGIC_MV_EXT = b"XMULT64"            # ECKD multi-volume, version 2
DUMPER_MAGIC_FBA_EXT = b"XDFBA64"           # FBA, version 1
DUMPER_MAGIC_TAPE = b"XTAPE64"              # ours: zipl's tape tool has no magic (see TapeHead)
DUMPER_VERSION = {DUMPER_MAGIC_ECKD_EXT: 2, DUMPER_MAGIC_MV_EXT: 2, DUMPER_MAGIC_FBA_EXT: 1,
                  DUMPER_MAGIC_TAPE: 1}
DUMPER_DESCRIPTION = {
    DUMPER_MAGIC_ECKD_EXT: "Single-volume DASD dump tool (extended)",
    DUMPER_MAGIC_MV_EXT: "Multi-volume DASD dump tool (extended)",
    DUMPER_MAGIC_FBA_EXT: "Single-volume DASD dump tool (extended)",
    DUMPER_MAGIC_TAPE: "Tape dump tool",
}
# Size of each dump tool image (include/boot/loaders_layout.h STAGE2_DUMPER_SIZE_* / STAGE2_MAX_SIZE)
STAGE2_DUMPER_SIZE_SV = 0x3000
STAGE2_DUMPER_SIZE_MV = 0x4000
STAGE2_DUMPER_SIZE_SV_ZLIB = 0x8000
DUMPER_SIZE = {DUMPER_MAGIC_ECKD_EXT: STAGE2_DUMPER_SIZE_SV_ZLIB, DUMPER_MAGIC_MV_EXT: STAGE2_DUMPER_SIZE_MV,
               DUMPER_MAGIC_FBA_EXT: STAGE2_DUMPER_SIZE_SV, DUMPER_MAGIC_TAPE: STAGE2_DUMPER_SIZE_SV}

# boot_info (include/boot/boot_defs.h)
BOOT_INFO_MAGIC = b"zIPL"
BOOT_INFO_VERSION = 1
BOOT_INFO_BP_TYPE_IPL = 0
BOOT_INFO_BP_TYPE_DUMP = 1
BOOT_INFO_DEV_TYPE_ECKD = 0
BOOT_INFO_DEV_TYPE_FBA = 1
BOOT_INFO_DEV_TYPE_SCSI = 2
BOOT_INFO_FLAGS_ARCH = 0x01                 # 64-bit
MAX_DUMP_VOLUMES = 32
MVDUMP_PARM_TABLE_SIZE = 512

# Stand-alone dumper wait codes (zipl/boot/error.h; not part of the loader ABI range)
EMEM = 0x4600           # device too small
EDEVNOTSUP = 0x4601
EMEMCOUNT = 0x4602
ENODEVNO = 0x4603
ENOSIGN = 0x4604        # multi-volume: wrong signature
ENOTIME = 0x4605        # multi-volume: inconsistent time stamps
ENOMSS = 0x4606
ENOPV = 0x4607
EPV = 0x4608
WAIT_CODE_NAMES = {0: "OK", EMEM: "EMEM", EDEVNOTSUP: "EDEVNOTSUP", EMEMCOUNT: "EMEMCOUNT",
                   ENODEVNO: "ENODEVNO", ENOSIGN: "ENOSIGN", ENOTIME: "ENOTIME", ENOMSS: "ENOMSS",
                   ENOPV: "ENOPV", EPV: "EPV"}

# Tape (zipl/boot/tape2dump.c, zdump/dfi_s390tape.c)
TAPE_BLK_SIZE = 0x8000
# AWSTAPE (Hercules) block header flags
AWS_FLAG_NEWREC = 0x80
AWS_FLAG_TAPEMARK = 0x40
AWS_FLAG_ENDREC = 0x20
AWS_HEADER_SIZE = 6
AWS_MAX_BLOCK = 0xFFFF

# -- TOD clock -------------------------------------------------------------------------
TOD_UNIX_EPOCH = 0x7D91048BCA000000          # TOD value of 1970-01-01 00:00:00 UTC
TOD_USEC_SHIFT = 12                          # bit 51 of the TOD clock = 1 microsecond
TOD_MAX = (1 << 64) - 1


def unix_to_tod(seconds: float) -> int:
    """Unix time (seconds, may be fractional) -> TOD clock value."""
    usec = round(seconds * 1_000_000)
    return max(0, min(TOD_MAX, TOD_UNIX_EPOCH + (usec << TOD_USEC_SHIFT)))


def unix_ns_to_tod(ns: int) -> int:
    return max(0, min(TOD_MAX, TOD_UNIX_EPOCH + ((ns // 1000) << TOD_USEC_SHIFT)))


def tod_to_unix(tod: int) -> float:
    """TOD clock value -> Unix time in seconds (microsecond resolution)."""
    return ((tod - TOD_UNIX_EPOCH) >> TOD_USEC_SHIFT) / 1_000_000


def tod_now() -> int:
    return unix_ns_to_tod(time.time_ns())


def tod_to_datetime(tod: int) -> _dt.datetime | None:
    """UTC datetime of a TOD value; None for 0 (no time stamp) or out of range."""
    if tod == 0:
        return None
    try:
        return _dt.datetime.fromtimestamp(tod_to_unix(tod), tz=_dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def tod_text(tod: int) -> str:
    when = tod_to_datetime(tod)
    return "none" if when is None else when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


# -- construct helpers ------------------------------------------------------------------
_U32 = "I" if array("I").itemsize == 4 else "L"
_SWAP = sys.byteorder == "little"


class U32beArray(Adapter):
    """`count` big-endian u32, as one Bytes field converted with array (fast for 512/1011 entries).

    Parses to a list of ints; builds from any sequence of at most `count` ints (zero padded)."""

    def __init__(self, count: int):
        super().__init__(Bytes(4 * count))
        self.count = count

    def _decode(self, obj, context, path):
        a = array(_U32)
        a.frombytes(obj)
        if _SWAP:
            a.byteswap()
        return a.tolist()

    def _encode(self, obj, context, path):
        values = list(obj)
        if len(values) > self.count:
            raise BadInputError(f"{len(values)} values for an array of {self.count}")
        a = array(_U32, values)
        a.extend([0] * (self.count - len(values)))
        if _SWAP:
            a.byteswap()
        return a.tobytes()


# -- dump header, end marker, segment header -------------------------------------------------
DfS390Hdr = Struct(
    "magic" / Int64ub,                      # 0x000
    "version" / Int32ub,                    # 0x008
    "hdr_size" / Int32ub,                   # 0x00c
    "dump_level" / Int32ub,                 # 0x010
    "page_size" / Int32ub,                  # 0x014
    "mem_size" / Int64ub,                   # 0x018
    "mem_start" / Int64ub,                  # 0x020
    "mem_end" / Int64ub,                    # 0x028
    "num_pages" / Int32ub,                  # 0x030
    "pad" / Int32ub,                        # 0x034
    "tod" / Int64ub,                        # 0x038
    "cpu_id" / Int64ub,                     # 0x040
    "arch" / Int32ub,                       # 0x048
    "volnr" / Int32ub,                      # 0x04c
    "build_arch" / Int32ub,                 # 0x050
    "mem_size_real" / Int64ub,              # 0x054
    "mvdump" / Int8ub,                      # 0x05c
    "cpu_cnt" / Int16ub,                    # 0x05d (unaligned)
    "real_cpu_cnt" / Int16ub,               # 0x05f (unaligned)
    "zlib_version_s390" / Int8ub,           # 0x061
    "zlib_entry_size" / Int32ub,            # 0x062
    "end_pad1" / Bytes(0x200 - 0x066),      # 0x066
    "mvdump_sign" / Int64ub,                # 0x200
    "mvdump_zipl_time" / Int64ub,           # 0x208
    "end_pad2" / Bytes(0x800 - 0x210),      # 0x210
    "lc_vec" / U32beArray(DF_S390_CPU_MAX),  # 0x800 prefix register of each dumped CPU
)

DfS390Em = Struct(
    "magic" / Int64ub,                      # "DUMP_END"
    "tod" / Int64ub,                        # TOD clock at the end of the dump
)

DfS390DumpSegmHdr = Struct(
    "start" / Int64ub,                      # 0x000 physical start, 1 MiB aligned
    "len" / Int64ub,                        # 0x008 bytes of memory, multiple of 1 MiB
    "stop_marker" / Int64ub,                # 0x010 all ones in the last segment
    "size_on_disk" / Int32ub,               # 0x018 compressed: data size in device blocks
    "reserved_pad" / Bytes(0x30 - 0x1C),    # 0x01c
    "entry_count" / Int32ub,                # 0x030 number of 1 MiB units (<= 1011)
    "entry_offset" / U32beArray(DUMP_SEGM_ZLIB_MAXENTS),  # 0x034 block offsets, bit 31 = raw
)

# -- zipl dump records ---------------------------------------------------------------------
Stage2dumpParmTail = Struct(                # the last 16 bytes of every dump tool
    "reserved" / Bytes(6),
    "no_compress" / Int8ub,
    "mvdump_force" / Int8ub,
    "mem_upper_limit" / Int64ub,            # SIZE of zipl -d DEV,SIZE; all ones = no limit
)

DumperHead = Struct(                        # the first 8 bytes of a DASD dump tool
    "magic" / Bytes(DF_S390_DUMPER_MAGIC_SIZE),
    "version" / Int8ub,
)

MvdumpParam = Struct(                       # 13 bytes, one per volume
    "devno" / Int16ub,
    "start_blk" / Int32ub,
    "end_blk" / Int32ub,
    "blk_size" / Int8ub,                    # block size >> 8
    "bpt" / Int8ub,                         # end record number = blocks per track
    "num_heads" / Int8ub,
)

MvdumpParmTable = Struct(                   # right behind the multi-volume tool, 512 bytes
    "tod" / Int64ub,                        # zipl time stamp, identical on every volume
    "vol_cnt" / Int16ub,
    "vol_parm" / Array(MAX_DUMP_VOLUMES, MvdumpParam),
    "ssid" / Bytes(MAX_DUMP_VOLUMES),
    "reserved" / Bytes(MVDUMP_PARM_TABLE_SIZE - 8 - 2 - MAX_DUMP_VOLUMES * (13 + 1)),
)

EckdDumpParam = Struct(
    "blk_start" / Int32ub,
    "blk_end" / Int32ub,                    # last block of the dump area (inclusive)
    "blk_size" / Int16ub,
    "num_heads" / Int8ub,
    "bpt" / Int8ub,                         # blocks per track
    "reserved" / Bytes(4),
)

FbaDumpParam = Struct(
    "res1" / Int32ub,
    "blk_start" / Int32ub,
    "res2" / Int32ub,
    "blk_end" / Int32ub,                    # block before stage 1b (the dumper stops one block earlier)
)

ScsiDumpParam = Struct(
    "block" / Int64ub,                      # byte offset of the zfcpdump superblock
    "reserved" / Int64ub,
)

BootInfo = Struct(
    "magic" / Bytes(4),                     # "zIPL"
    "version" / Int8ub,
    "bp_type" / Int8ub,                     # 1 = dump
    "dev_type" / Int8ub,                    # 0 ECKD, 1 FBA, 2 SCSI
    "flags" / Int8ub,                       # bit 0: 64-bit
    "dump_param" / Bytes(16),               # union eckd/fba/scsi dump_param, by dev_type
    "unused" / Bytes(16),
)

BootCcw0 = Struct(
    "cmd" / Int8ub,
    "address_hi" / Int8ub,
    "address_lo" / Int16ub,
    "flags" / Int8ub,
    "pad" / Int8ub,
    "count" / Int16ub,
)

BootEckdCdlStage0 = Struct(                 # ECKD CDL track 0 record 1 (IPL1), at byte 4
    "psw" / Int64ub,
    "read" / BootCcw0,
    "tic" / BootCcw0,
)

BootEckdSsrt = Struct("seek" / BootCcw0, "search" / BootCcw0, "tic" / BootCcw0, "read" / BootCcw0)
BootEckdSeekarg = Struct("pad" / Int16ub, "cyl" / Int16ub, "head" / Int16ub, "sec" / Int8ub, "pad2" / Int8ub)

BootEckdStage1 = Struct(                    # ECKD track 0 record 2 (IPL2), at byte block_size + 4
    "ssrt" / Array(2, BootEckdSsrt),
    "tic1b" / BootCcw0,
    "seek" / Array(2, BootEckdSeekarg),
    "boot_info" / BootInfo,
)

STAGE2_BLK_CNT_MAX = 24
BootEckdStage1b = Struct(
    "ssrt" / Array(STAGE2_BLK_CNT_MAX, BootEckdSsrt),
    "seek" / Array(STAGE2_BLK_CNT_MAX, BootEckdSeekarg),
    "unused" / Bytes(64),
)

BootFbaLocread = Struct("locate" / BootCcw0, "read" / BootCcw0)
BootFbaLocdata = Struct("command" / Int8ub, "dummy" / Int8ub, "blockct" / Int16ub, "blocknr" / Int32ub)

BootFbaStage0 = Struct(                     # FBA block 0
    "psw" / Int64ub,
    "read_ipl" / Int64ub,
    "tic1" / Int64ub,
    "locread" / Array(2, BootFbaLocread),
    "tic1b" / Int64ub,
    "locdata" / Array(2, BootFbaLocdata),
    "reserved" / Array(4, Int64ub),
    "boot_info" / BootInfo,
)

BootFbaStage1b = Struct(
    "locread" / Array(STAGE2_BLK_CNT_MAX, BootFbaLocread),
    "locdata" / Array(STAGE2_BLK_CNT_MAX, BootFbaLocdata),
    "unused" / Bytes(448),
)

TapeHead = Struct(                          # start of zipl's tape dump tool (tape file 1)
    "psw" / Int64ub,                        # load PSW, entry 0x2018
    "ccw1" / Int64ub,                       # rewind
    "ccw2" / Int64ub,                       # read the tool to 0x2000
)
TAPE_HEAD_PSW = 0x0008000080002018
TAPE_HEAD_CCW1 = 0x0700000060000001
TAPE_HEAD_CCW2 = 0x0200200020003000

AwsTapeHeader = Struct(                     # Hercules AWSTAPE block header (little-endian)
    "curblkl" / Int16ul,                    # length of this block
    "prvblkl" / Int16ul,                    # length of the previous block
    "flags1" / Int8ub,                      # 0x80 new record, 0x40 tapemark, 0x20 end of record
    "flags2" / Int8ub,
)

# offsets of the boot_info inside the records that carry it
BOOT_INFO_OFFSET_ECKD_STAGE1 = 0x58
BOOT_INFO_OFFSET_FBA_STAGE0 = 0x70

# -- building ------------------------------------------------------------------------------


def dumper_magic_u64(magic: bytes, version: int) -> int:
    return int.from_bytes(magic + bytes([version]), "big")


def build_header(
    *, magic: int = DF_S390_MAGIC_EXT, version: int = DF_S390_VERSION_EXT, mem_size: int, tod: int,
    cpu_id: int = 0, lc_vec: Sequence[int] = (), real_cpu_cnt: int | None = None,
    mem_size_real: int | None = None, volnr: int = 0, mvdump: int = 0, mvdump_sign: int = 0,
    mvdump_zipl_time: int = 0, zlib: bool = False, mem_end: int | None = None,
) -> bytes:
    """A 4096-byte dump header as the zipl dumpers fill it (mem_end = mem_size, exclusive)."""
    if len(lc_vec) > DF_S390_CPU_MAX:
        raise BadInputError(f"{len(lc_vec)} CPUs, the dump header holds at most {DF_S390_CPU_MAX}")
    if any(not 0 <= p <= 0xFFFFFFFF for p in lc_vec):
        raise BadInputError("a prefix register value does not fit in 32 bits")
    real = len(lc_vec) if real_cpu_cnt is None else real_cpu_cnt
    if not 0 <= real <= 0xFFFF:
        raise BadInputError(f"real CPU count {real} does not fit in 16 bits")
    return DfS390Hdr.build(dict(
        magic=magic, version=version, hdr_size=DF_S390_HDR_SIZE, dump_level=DUMP_LEVEL_ALL,
        page_size=PAGE_SIZE, mem_size=mem_size, mem_start=0,
        mem_end=mem_size if mem_end is None else mem_end, num_pages=(mem_size >> 12) & 0xFFFFFFFF, pad=0,
        tod=tod, cpu_id=cpu_id, arch=DF_S390_ARCH_64, volnr=volnr, build_arch=DF_S390_ARCH_64,
        mem_size_real=mem_size if mem_size_real is None else mem_size_real, mvdump=mvdump,
        cpu_cnt=len(lc_vec), real_cpu_cnt=real, zlib_version_s390=1 if zlib else 0,
        zlib_entry_size=DUMP_SEGM_ZLIB_ENTSIZE if zlib else 0, end_pad1=bytes(0x200 - 0x66),
        mvdump_sign=mvdump_sign, mvdump_zipl_time=mvdump_zipl_time, end_pad2=bytes(0x800 - 0x210),
        lc_vec=list(lc_vec),
    ))


def build_end_marker(tod: int) -> bytes:
    return DfS390Em.build(dict(magic=DF_S390_EM_MAGIC, tod=tod))


def build_segment_header(start: int, length: int, stop: bool, size_on_disk: int = 0,
                         entries: Sequence[int] = ()) -> bytes:
    if len(entries) > DUMP_SEGM_ZLIB_MAXENTS:
        raise BadInputError(f"{len(entries)} compressed units, a segment holds at most {DUMP_SEGM_ZLIB_MAXENTS}")
    return DfS390DumpSegmHdr.build(dict(
        start=start, len=length, stop_marker=DUMP_SEGM_STOP_MARKER if stop else 0,
        size_on_disk=size_on_disk, reserved_pad=bytes(0x14), entry_count=len(entries), entry_offset=entries,
    ))


def compress_unit(data, level: int = ZLIB_COMPRESSION_LEVEL) -> bytes:
    """One 1 MiB unit as an independent zlib-wrapped deflate stream (what the dumper writes)."""
    return _zlib.compress(data, level)


# -- reading -------------------------------------------------------------------------------


def _pread_exact(fh: BinaryIO | int, length: int, offset: int, what: str) -> bytes:
    fd = fh if isinstance(fh, int) else fh.fileno()
    try:
        data = os.pread(fd, length, offset)
    except OSError as exc:
        raise DumpIOError(f"reading {what} at offset 0x{offset:x}: {exc.strerror or exc}") from None
    if len(data) != length:
        raise BadInputError(f"{what} at offset 0x{offset:x} is cut short ({len(data)} of {length} bytes)")
    return data


def parse_header(data: bytes) -> "object":
    """Parse and validate a 4096-byte dump header (the checks of zgetdump's read_s390_hdr)."""
    if len(data) < DF_S390_HDR_SIZE:
        raise BadInputError(f"dump header has {len(data)} bytes, needs {DF_S390_HDR_SIZE}")
    hdr = DfS390Hdr.parse(data)
    if hdr.magic not in (DF_S390_MAGIC, DF_S390_MAGIC_EXT):
        raise BadInputError(f"no s390 dump header (magic 0x{hdr.magic:016x})")
    if hdr.hdr_size != DF_S390_HDR_SIZE:
        raise BadInputError(f"dump header size is 0x{hdr.hdr_size:x}, expected 0x{DF_S390_HDR_SIZE:x}")
    if hdr.arch != DF_S390_ARCH_64:
        raise BadInputError(f"dump architecture {hdr.arch} is not supported (only 2 = s390x)")
    if hdr.build_arch not in (0, DF_S390_ARCH_64):
        raise BadInputError(f"dump tool build architecture {hdr.build_arch} is not supported")
    if hdr.cpu_cnt > DF_S390_CPU_MAX:
        raise BadInputError(f"dump header claims {hdr.cpu_cnt} CPUs, at most {DF_S390_CPU_MAX}")
    if hdr.page_size != PAGE_SIZE:
        raise BadInputError(f"dump page size {hdr.page_size} is not supported")
    if hdr.zlib_version_s390 and hdr.version != DF_S390_VERSION_EXT_ZLIB:
        raise BadInputError(f"dump header version {hdr.version} cannot have zlib segments")
    if hdr.magic == DF_S390_MAGIC_EXT:
        if hdr.mem_size % MIB:
            raise BadInputError(f"extended dump memory size 0x{hdr.mem_size:x} is not a multiple of 1 MiB")
        if hdr.zlib_version_s390 and hdr.zlib_entry_size != DUMP_SEGM_ZLIB_ENTSIZE:
            raise BadInputError(f"zlib unit size {hdr.zlib_entry_size} is not supported (only 1 MiB)")
    return hdr


def read_header(fh: BinaryIO | int, offset: int = 0):
    return parse_header(_pread_exact(fh, DF_S390_HDR_SIZE, offset, "dump header"))


def parse_end_marker(data: bytes, hdr_tod: int) -> tuple[bool, int, str]:
    """(valid, tod, reason) -- valid needs "DUMP_END" and a TOD not before the header's."""
    if len(data) < DF_S390_EM_SIZE:
        return False, 0, "end marker cut short"
    em = DfS390Em.parse(data)
    if em.magic != DF_S390_EM_MAGIC:
        return False, em.tod, "no DUMP_END string"
    if em.tod < hdr_tod:
        return False, em.tod, (f"end marker TOD 0x{em.tod:016x} is before the dump start 0x{hdr_tod:016x} "
                               "(stale end marker of an older dump)")
    return True, em.tod, "complete"


@dataclass(frozen=True)
class DumpSegment:
    """One dump segment of an extended stream, located in its file."""

    start: int
    len: int
    stop: bool
    header_offset: int          # file offset of the 4 KiB segment header
    data_offset: int            # file offset of the segment data
    size_on_disk: int           # bytes of data on disk (compressed: blocks * block size)
    entries: tuple[int, ...]    # raw entry_offset[] of a compressed segment, () otherwise
    block_size: int = PAGE_SIZE

    @property
    def compressed(self) -> bool:
        return bool(self.entries)

    @property
    def end(self) -> int:
        return self.start + self.len

    @property
    def units(self) -> int:
        return self.len // MIB

    @property
    def next_offset(self) -> int:
        return self.data_offset + self.size_on_disk

    def unit_location(self, index: int) -> tuple[int, int, bool]:
        """(file offset, bytes on disk, stored raw) of 1 MiB unit `index`."""
        if not 0 <= index < self.units:
            raise BadInputError(f"unit {index} outside segment at 0x{self.start:x} of {self.units} units")
        if not self.entries:
            return self.data_offset + index * MIB, MIB, True
        e = self.entries[index]
        begin = (e & ~DUMP_SEGM_ENTRY_UNCOMPRESSED) * self.block_size
        if index + 1 < len(self.entries):
            end = (self.entries[index + 1] & ~DUMP_SEGM_ENTRY_UNCOMPRESSED) * self.block_size
        else:
            end = self.size_on_disk
        return self.data_offset + begin, end - begin, bool(e & DUMP_SEGM_ENTRY_UNCOMPRESSED)


@dataclass
class StreamStatus:
    complete: bool
    reason: str
    stop_marker: bool = False
    end_marker: bool = False
    end_marker_tod: int | None = None
    end_offset: int = 0         # file offset after the end marker (complete) or after the last segment
    data_size: int = 0          # sum of the segments' data on disk
    volume_full: bool = False   # multi-volume: no stop marker here, the stream continues on the next volume
    end_marker_offset: int | None = None  # where the end marker is (or belongs): after the stop-marker segment


class ExtStreamWalker:
    """Walk the segments of an extended (``...23fe``) stream; every count is bounded.

    ``fh`` is a file object or descriptor; ``offset`` is where the header is (the
    start of the dump area); ``size`` bounds the dump area (default: to the end
    of the file).  Iterating yields DumpSegment objects in order; afterwards
    ``status`` says whether the stream is complete and, if not, why.

    ``volume`` = True walks one volume of a multi-volume dump: a volume that is
    full without a stop marker is not an error (status.volume_full), because
    the stream continues on the next volume; ``volume_free`` then reproduces
    the dumper's space accounting so exactly the written segments are read.
    """

    def __init__(self, fh: BinaryIO | int, offset: int = 0, *, size: int | None = None,
                 block_size: int = PAGE_SIZE, volume: bool = False, header=None, start_addr: int = 0):
        self.fd = fh if isinstance(fh, int) else fh.fileno()
        self.offset = offset
        try:
            file_size = os.fstat(self.fd).st_size
        except OSError as exc:
            raise DumpIOError(f"cannot stat the dump: {exc.strerror or exc}") from None
        avail = max(0, file_size - offset)
        self.size = avail if size is None else min(size, avail)
        self.block_size = block_size
        self.volume = volume
        self.start_addr = start_addr
        self.header = read_header(self.fd, offset) if header is None else header
        if self.header.magic != DF_S390_MAGIC_EXT:
            raise BadInputError("not an extended s390 dump (magic ...23fd is the flat layout)")
        self.status: StreamStatus | None = None
        self.segments_seen = 0

    def __iter__(self) -> Iterator[DumpSegment]:
        hdr = self.header
        mem_size = hdr.mem_size
        area_end = self.offset + self.size
        pos = self.offset + DF_S390_HDR_SIZE
        prev_end = self.start_addr
        data_size = 0
        max_segments = mem_size // MIB + 2
        # multi-volume space accounting (zipl/boot/eckd2dump_mv.c write_volume)
        free = self.size - DF_S390_HDR_SIZE - 2 * self.block_size
        last_desc = "the dump header"
        while True:
            if self.volume and free < MIB and self.segments_seen:
                self.status = StreamStatus(False, "volume full, the dump continues on the next volume",
                                           end_offset=pos, data_size=data_size, volume_full=True)
                return
            if pos + DUMP_SEGM_HDR_SIZE > area_end:
                self.status = StreamStatus(False, f"incomplete: no end marker after {last_desc} (the dump area "
                                                  "ends there)", end_offset=pos, data_size=data_size)
                return
            if self.segments_seen >= max_segments:
                self.status = StreamStatus(False, f"corrupt: more than {max_segments} segments",
                                           end_offset=pos, data_size=data_size)
                return
            raw = _pread_exact(self.fd, DUMP_SEGM_HDR_SIZE, pos, "dump segment header")
            seg = DfS390DumpSegmHdr.parse(raw)
            stop = seg.stop_marker == DUMP_SEGM_STOP_MARKER
            problem = self._check(seg, stop, prev_end, mem_size)
            if problem:
                self.status = StreamStatus(False, f"incomplete: no end marker after {last_desc} ({problem})",
                                           end_offset=pos, data_size=data_size)
                return
            data_offset = pos + DUMP_SEGM_HDR_SIZE
            if seg.size_on_disk:
                on_disk = seg.size_on_disk * self.block_size
                entries = tuple(seg.entry_offset[: seg.entry_count])
                bad = self._check_entries(entries, seg.len, seg.size_on_disk)
                if bad:
                    self.status = StreamStatus(False, f"corrupt segment at 0x{seg.start:x}: {bad}",
                                               end_offset=pos, data_size=data_size)
                    return
            else:
                on_disk = seg.len
                entries = ()
            if data_offset + on_disk > area_end:
                self.status = StreamStatus(
                    False, f"incomplete: no end marker after {last_desc} (segment 0x{seg.start:x}-"
                           f"0x{seg.start + seg.len:x} runs past the end of the dump area)",
                    end_offset=pos, data_size=data_size)
                return
            segment = DumpSegment(seg.start, seg.len, stop, pos, data_offset, on_disk, entries, self.block_size)
            self.segments_seen += 1
            data_size += on_disk
            pos = data_offset + on_disk
            if seg.len:
                prev_end = seg.start + seg.len
                last_desc = f"segment ending at 0x{prev_end:x}"
            yield segment
            free -= seg.len
            if free > 0:
                free -= self.block_size
            if stop:
                break
        # the end marker follows the stop-marker segment
        if pos + DF_S390_EM_SIZE > area_end:
            self.status = StreamStatus(False, f"incomplete: no end marker after {last_desc} (no room for it)",
                                       stop_marker=True, end_offset=pos, data_size=data_size)
            return
        valid, tod, why = parse_end_marker(_pread_exact(self.fd, DF_S390_EM_SIZE, pos, "end marker"), hdr.tod)
        if not valid:
            self.status = StreamStatus(False, f"incomplete: no end marker after {last_desc} ({why})",
                                       stop_marker=True, end_marker_tod=tod or None, end_offset=pos,
                                       data_size=data_size, end_marker_offset=pos)
            return
        self.status = StreamStatus(True, "complete", stop_marker=True, end_marker=True, end_marker_tod=tod,
                                   end_offset=pos + DF_S390_EM_SIZE, data_size=data_size, end_marker_offset=pos)

    def _check(self, seg, stop: bool, prev_end: int, mem_size: int) -> str:
        if seg.start % MIB or seg.len % MIB:
            return f"segment start 0x{seg.start:x} / length 0x{seg.len:x} not 1 MiB aligned"
        if seg.len == 0 and not stop:
            return "empty segment without stop marker"
        if seg.stop_marker not in (0, DUMP_SEGM_STOP_MARKER):
            return f"bad stop marker 0x{seg.stop_marker:x}"
        if seg.len and seg.start < prev_end:
            return f"segment start 0x{seg.start:x} is below the previous end 0x{prev_end:x}"
        if seg.start + seg.len > mem_size:
            return f"segment 0x{seg.start:x}+0x{seg.len:x} is beyond the memory size 0x{mem_size:x}"
        if seg.entry_count > DUMP_SEGM_ZLIB_MAXENTS:
            return f"entry_count {seg.entry_count} exceeds {DUMP_SEGM_ZLIB_MAXENTS}"
        if seg.size_on_disk and not self.header.zlib_version_s390:
            return "compressed segment in a dump without zlib"
        return ""

    @staticmethod
    def _check_entries(entries: tuple[int, ...], length: int, size_on_disk: int) -> str:
        if length > DUMP_SEGM_ZLIB_MAXLEN:
            return f"compressed segment of 0x{length:x} bytes exceeds {DUMP_SEGM_ZLIB_MAXENTS} MiB"
        if len(entries) != length // DUMP_SEGM_ZLIB_ENTSIZE:
            return f"{len(entries)} units for {length // MIB} MiB"
        prev = -1
        for e in entries:
            off = e & ~DUMP_SEGM_ENTRY_UNCOMPRESSED
            if off <= prev or off >= size_on_disk:
                return f"unit offset {off} out of order or beyond {size_on_disk} blocks"
            prev = off
        return ""


def read_unit(fh: BinaryIO | int, segment: DumpSegment, index: int) -> bytes:
    """1 MiB unit `index` of `segment`, inflated if it was compressed."""
    fd = fh if isinstance(fh, int) else fh.fileno()
    offset, on_disk, raw = segment.unit_location(index)
    if raw:
        if on_disk < MIB:
            raise BadInputError(f"raw unit {index} of segment 0x{segment.start:x} has only {on_disk} bytes")
        return _pread_exact(fd, MIB, offset, "dump data")
    return inflate_unit(_pread_exact(fd, on_disk, offset, "compressed dump data"),
                        f"unit {index} of segment 0x{segment.start:x}")


def inflate_unit(data: bytes, what: str = "compressed unit") -> bytes:
    """Inflate one zlib stream that must produce exactly 1 MiB (padding after it is ignored)."""
    d = _zlib.decompressobj()
    try:
        out = d.decompress(data, MIB + 1)
    except _zlib.error as exc:
        raise BadInputError(f"{what} does not inflate: {exc}") from None
    if not d.eof or len(out) != MIB:
        raise BadInputError(f"{what} inflates to {len(out)} bytes{'' if d.eof else ' (stream cut short)'}, "
                            f"expected {MIB}")
    return out


# -- dump device images: where a stand-alone dump lives (read side) ------------------------------
#
# What a reader needs to find the dump on an image of a dump device as zipl leaves it
# (the image layouts are described in zipl_sadump/device.py, which writes them):
#   ECKD  4 KiB blocks; the IPL2 record (block 1) carries the boot_info with the dump
#         partition's first/last block; the dump tool starts at block 3 (XECKD64 or
#         XMULT64, the latter followed by the multi-volume parameter table); the VOL1
#         label in block 2 names the device number ("DVxxxx").
#   FBA   512-byte blocks; boot_info in block 0; the dumper writes blk_start .. blk_end - 1.
#   tape  AWSTAPE image: the dump tool block, then a tapemark, the header block, the memory
#         in 32 KiB blocks, the end-marker block and a tapemark.
# This is the one parser of these records: the vmcore reader and sadump (build, show, ipl,
# extract) both read devices through read_dump_area.  Every value taken from an image is
# bounded before it is used; the boot record, the ECKD geometry and the multi-volume parameter
# table are checked strictly.  An area cut short by the end of the image file is reported as
# smaller (`size`), not refused: the dump on it is then incomplete, which the reader reports with
# the missing range.  The dump tool is reported as found; a dumper needs the whole area and a
# tool it knows (DumpArea.check_for_dumper), a reader needs neither.

ECKD_BLOCK_SIZE = 4096                                  # dump partitions on ECKD DASD use 4 KiB blocks
ECKD_VOL1_BLOCK = 2                                     # the volume label (CDL record 3)
FBA_BLOCK_SIZE = 512
FBA_TOOL_BLOCKS = DUMPER_SIZE[DUMPER_MAGIC_FBA_EXT] // FBA_BLOCK_SIZE     # the tool: the last 24 blocks
FBA_STAGE1B_BLOCKS = BootFbaStage1b.sizeof() // FBA_BLOCK_SIZE            # stage 1b: the 2 blocks before
TAPE_TOOL_SIZE = DUMPER_SIZE[DUMPER_MAGIC_TAPE]
TAPE_DUMP_OFFSET = AWS_HEADER_SIZE + TAPE_TOOL_SIZE    # the tool record; the dumper writes from here
TAPE_RECORD_SIZE = AWS_HEADER_SIZE + TAPE_BLK_SIZE      # one data block with its AWSTAPE header
MVDUMP_SIGN_OFFSET = 0x200                              # mvdump_sign at partition + 512 (= header field)
DEVICE_PROBE_SIZE = 2 * ECKD_BLOCK_SIZE                # what dump_device_kind looks at
DEVICE_KINDS = ("eckd", "fba", "tape")


@dataclass(frozen=True)
class MvVolume:
    """One volume of the multi-volume parameter table: its MvdumpParam (blk_size in bytes) and ssid."""

    devno: int
    start_blk: int
    end_blk: int
    blk_size: int
    bpt: int
    num_heads: int
    ssid: int = 0

    @property
    def bus_id(self) -> str:
        return f"0.{self.ssid:x}.{self.devno:04x}"


@dataclass(frozen=True)
class MvTable:
    """A parsed MvdumpParmTable: zipl's time stamp and the vol_cnt volumes; `raw` is all 512 bytes,
    which zipl -M writes identically on every volume (tables are equal when their bytes are)."""

    tod: int
    volumes: tuple[MvVolume, ...]
    raw: bytes = field(default=b"", repr=False)

    def to_json(self) -> dict:
        return {"tod": self.tod, "tod_text": tod_text(self.tod), "vol_cnt": len(self.volumes),
                "volumes": [dict(asdict(v), bus_id=v.bus_id) for v in self.volumes]}


@dataclass(frozen=True)
class DumpTool:
    """The dump tool zipl installed: DumperHead at its start, Stage2dumpParmTail at its end (read
    for a known magic only: the magic gives the tool's size, hence where the tail is)."""

    magic: bytes = b""                  # as found; b"" when the image ends before it
    version: int = 0
    mem_limit: int | None = None        # mem_upper_limit (zipl -d DEV,SIZE); None: no limit
    no_compress: bool = False
    mvdump_force: bool = False

    @property
    def name(self) -> str:
        """"XECKD64", "XMULT64", "XDFBA64", "XTAPE64"; "" for an unknown or absent tool."""
        return self.magic.decode() if self.magic in DUMPER_VERSION else ""


_KIND_TOOLS = {"eckd": (DUMPER_MAGIC_ECKD_EXT, DUMPER_MAGIC_MV_EXT), "fba": (DUMPER_MAGIC_FBA_EXT,),
               "tape": (DUMPER_MAGIC_TAPE,)}
_KIND_TOOL_PLACE = {"eckd": f"dump tool at block {DF_S390_MAGIC_BLK_ECKD}",
                    "fba": "FBA dump tool at the end of the device", "tape": "tape dump tool in the first block"}


@dataclass(frozen=True)
class DumpArea:
    """Where the dump stream is on a dump device image, and what zipl installed there."""

    path: str
    kind: str                       # "eckd" | "fba" | "tape"
    tool: DumpTool
    offset: int                     # file offset of the dump stream (its header)
    size: int                       # bytes of the dump area present in the image file
    nominal_size: int               # bytes the boot record gives the dump area
    block_size: int                 # device block size (tape: the 32 KiB data blocks)
    image_size: int                 # bytes in the image file
    blk_start: int = 0              # boot_info dump partition, first block (tape: 0)
    blk_end: int = 0                # ECKD: its last block; FBA: the dumper stops one block before (tape: 0)
    num_heads: int | None = None    # ECKD geometry
    bpt: int | None = None          # ECKD blocks per track
    devno: int | None = None        # ECKD: from the volume label "DVxxxx"
    mv_table: MvTable | None = None
    mv_signature: bool | None = None  # multi-volume: mvdump_sign at partition + 512

    @property
    def multi_volume(self) -> bool:
        return self.tool.magic == DUMPER_MAGIC_MV_EXT

    @property
    def volnr(self) -> int | None:
        """This volume's index in the parameter table (matched by partition and device number)."""
        for i, v in enumerate(self.mv_table.volumes if self.mv_table else ()):
            if v.start_blk == self.blk_start and v.end_blk == self.blk_end and \
                    (self.devno is None or v.devno == self.devno):
                return i
        return None

    @property
    def cut_short(self) -> bool:
        return self.size < self.nominal_size

    @property
    def description(self) -> str:
        return DUMPER_DESCRIPTION.get(self.tool.magic, f"{self.kind} dump device")

    def check_for_dumper(self) -> None:
        """BadInputError unless a dumper can run from this image: the dump area (and, on FBA, stage
        1b and the tool behind it) inside the image, and a dump tool we know in its version."""
        if self.kind == "eckd" and self.cut_short:
            raise BadInputError(f"{self.path}: dump partition blocks {self.blk_start}-{self.blk_end} lie outside "
                                f"the image of {self.image_size} bytes")
        blocks = self.image_size // FBA_BLOCK_SIZE
        if self.kind == "fba" and self.blk_end + 1 + FBA_STAGE1B_BLOCKS + FBA_TOOL_BLOCKS > blocks:
            raise BadInputError(f"{self.path}: corrupt FBA dump partition blocks {self.blk_start}-{self.blk_end} "
                                f"(device has {blocks} blocks)")
        magic, version = self.tool.magic, self.tool.version
        if magic not in _KIND_TOOLS[self.kind]:
            raise BadInputError(f"{self.path}: no {_KIND_TOOL_PLACE[self.kind]} (found {magic!r})")
        if version != DUMPER_VERSION[magic]:
            raise BadInputError(f"{self.path}: {magic.decode()} dump tool version {version} is not supported")


_BOOT_INFO_SIZE = BootInfo.sizeof()
_TAPE_HEAD_SIZE = TapeHead.sizeof()
_DUMPER_HEAD_SIZE = DumperHead.sizeof()
_PARM_TAIL_SIZE = Stage2dumpParmTail.sizeof()
# where a boot_info can be: (kind, offset in the image, dev_type it must say, the record's name)
_BOOT_INFO_PLACES = (
    ("eckd", ECKD_BLOCK_SIZE + 4 + BOOT_INFO_OFFSET_ECKD_STAGE1, BOOT_INFO_DEV_TYPE_ECKD, "ECKD IPL2 record"),
    ("fba", BOOT_INFO_OFFSET_FBA_STAGE0, BOOT_INFO_DEV_TYPE_FBA, "FBA block 0"),
)


def _boot_info_at(head: bytes, off: int):
    raw = head[off:off + _BOOT_INFO_SIZE]
    if len(raw) < _BOOT_INFO_SIZE or raw[:4] != BOOT_INFO_MAGIC:
        return None
    return BootInfo.parse(raw)


def _boot_info_problem(bi, dev_type: int, where: str) -> str:
    """What makes a "zIPL" boot_info unusable as this device's dump record; "" if nothing."""
    if bi.version != BOOT_INFO_VERSION:
        return f"boot_info version {bi.version} in the {where} is not supported"
    if bi.bp_type != BOOT_INFO_BP_TYPE_DUMP:
        kind = "an IPL record" if bi.bp_type == BOOT_INFO_BP_TYPE_IPL else f"bp_type {bi.bp_type}"
        return f"the boot record is {kind}, not a dump record"
    if bi.dev_type != dev_type:
        return (f"boot_info in the {where} says device type {bi.dev_type}, expected {dev_type} "
                f"({'ECKD' if dev_type == BOOT_INFO_DEV_TYPE_ECKD else 'FBA'})")
    return ""


def _tape_tool_problem(head: bytes) -> str | None:
    """None: `head` does not start like an AWSTAPE image; "": its first block is the tape dump
    tool; otherwise what is wrong with that block."""
    if len(head) < AWS_HEADER_SIZE + _TAPE_HEAD_SIZE + _DUMPER_HEAD_SIZE:
        return None
    aws = AwsTapeHeader.parse(head[:AWS_HEADER_SIZE])
    if aws.flags1 != AWS_FLAG_NEWREC | AWS_FLAG_ENDREC or aws.prvblkl or aws.flags2:
        return None
    if aws.curblkl != TAPE_TOOL_SIZE:
        return f"first tape block has {aws.curblkl} bytes, not a dump tool (0x{TAPE_TOOL_SIZE:x})"
    th = TapeHead.parse(head[AWS_HEADER_SIZE:])
    dh = DumperHead.parse(head[AWS_HEADER_SIZE + _TAPE_HEAD_SIZE:])
    if th.psw != TAPE_HEAD_PSW or bytes(dh.magic) != DUMPER_MAGIC_TAPE:
        return "the first tape block is not a tape dump tool"
    return ""


def dump_device_kind(head: bytes) -> str | None:
    """"eckd", "fba" or "tape" when the first DEVICE_PROBE_SIZE bytes of an image show a zipl
    dump record (boot_info with bp_type dump, or the tape dump tool); None otherwise."""
    if _tape_tool_problem(head) == "":
        return "tape"
    for kind, off, dev_type, _ in _BOOT_INFO_PLACES:
        bi = _boot_info_at(head, off)
        if bi is not None and bi.bp_type == BOOT_INFO_BP_TYPE_DUMP and bi.dev_type == dev_type:
            return kind
    return None


def _no_dump_record(path: str, head: bytes) -> BadInputError:
    """The one-line error for an image dump_device_kind declines: what is wrong with the record
    that is there, or that there is none."""
    problem = _tape_tool_problem(head)
    for _, off, dev_type, where in _BOOT_INFO_PLACES:
        bi = _boot_info_at(head, off)
        if not problem and bi is not None:
            problem = _boot_info_problem(bi, dev_type, where)
    if problem:
        return BadInputError(f"{path}: {problem}")
    return BadInputError(f"{path} holds no zipl dump record (no 'zIPL' boot_info in the ECKD IPL2 record or FBA "
                         "block 0, and no AWSTAPE dump tool)")


def _pread_some(fd: int, length: int, offset: int) -> bytes:
    try:
        return os.pread(fd, length, offset)
    except OSError as exc:
        raise DumpIOError(f"reading at offset 0x{offset:x}: {exc.strerror or exc}") from None


def _file_size(fd: int) -> int:
    try:
        return os.fstat(fd).st_size
    except OSError as exc:
        raise DumpIOError(f"cannot stat the image: {exc.strerror or exc}") from None


def _dump_tool(fd: int, offset: int, head_at: int = 0) -> DumpTool:
    """The dump tool image at `offset` (its DumperHead at offset + head_at)."""
    raw = _pread_some(fd, _DUMPER_HEAD_SIZE, offset + head_at)
    if len(raw) < _DUMPER_HEAD_SIZE:
        return DumpTool()
    head = DumperHead.parse(raw)
    magic = bytes(head.magic)
    if magic not in DUMPER_SIZE:
        return DumpTool(magic, head.version)
    raw = _pread_some(fd, _PARM_TAIL_SIZE, offset + DUMPER_SIZE[magic] - _PARM_TAIL_SIZE)
    if len(raw) < _PARM_TAIL_SIZE:
        return DumpTool(magic, head.version)
    tail = Stage2dumpParmTail.parse(raw)
    limit = None if tail.mem_upper_limit == MEM_UPPER_LIMIT_NONE else tail.mem_upper_limit
    return DumpTool(magic, head.version, limit, bool(tail.no_compress), bool(tail.mvdump_force))


def _label_devno(fd: int) -> int | None:
    raw = _pread_some(fd, 10, ECKD_VOL1_BLOCK * ECKD_BLOCK_SIZE)
    try:
        text = raw.decode("cp500")
    except UnicodeDecodeError:
        return None
    if len(text) == 10 and text[:4] == "VOL1" and text[4:6] == "DV":
        try:
            return int(text[6:10], 16)
        except ValueError:
            return None
    return None


def _mv_table(fd: int, path: str, offset: int) -> MvTable:
    raw = _pread_some(fd, MVDUMP_PARM_TABLE_SIZE, offset)
    if len(raw) != MVDUMP_PARM_TABLE_SIZE:
        raise BadInputError(f"{path}: the multi-volume parameter table is cut short")
    t = MvdumpParmTable.parse(raw)
    if not 1 <= t.vol_cnt <= MAX_DUMP_VOLUMES:
        raise BadInputError(f"{path}: corrupt multi-volume parameter table ({t.vol_cnt} volumes)")
    vols = []
    for i in range(t.vol_cnt):
        v = t.vol_parm[i]
        if v.blk_size << 8 != ECKD_BLOCK_SIZE or not v.start_blk <= v.end_blk or v.bpt == 0 or v.num_heads == 0:
            raise BadInputError(f"{path}: corrupt multi-volume parameter table entry {i} (blocks {v.start_blk}-"
                                f"{v.end_blk} of {v.blk_size << 8} bytes, {v.num_heads} heads, {v.bpt} blocks "
                                "per track)")
        vols.append(MvVolume(v.devno, v.start_blk, v.end_blk, v.blk_size << 8, v.bpt, v.num_heads, t.ssid[i]))
    return MvTable(t.tod, tuple(vols), bytes(raw))


def _present(offset: int, nominal: int, size: int) -> int:
    return max(0, min(nominal, size - offset))


def _eckd_area(fd: int, path: str, size: int, bi) -> DumpArea:
    problem = _boot_info_problem(bi, BOOT_INFO_DEV_TYPE_ECKD, "ECKD IPL2 record")
    if problem:
        raise BadInputError(f"{path}: {problem}")
    p = EckdDumpParam.parse(bi.dump_param)
    if p.blk_size != ECKD_BLOCK_SIZE:
        raise BadInputError(f"{path}: ECKD dump partition block size {p.blk_size} is not supported "
                            f"(dump partitions use {ECKD_BLOCK_SIZE}-byte blocks)")
    if p.num_heads == 0 or p.bpt == 0:
        raise BadInputError(f"{path}: corrupt ECKD geometry ({p.num_heads} heads, {p.bpt} blocks per track)")
    if not DF_S390_MAGIC_BLK_ECKD < p.blk_start <= p.blk_end:
        raise BadInputError(f"{path}: corrupt ECKD dump partition blocks {p.blk_start}-{p.blk_end}")
    offset = p.blk_start * p.blk_size
    nominal = (p.blk_end - p.blk_start + 1) * p.blk_size
    tool_offset = DF_S390_MAGIC_BLK_ECKD * p.blk_size
    tool = _dump_tool(fd, tool_offset)
    table = signature = None
    if tool.magic == DUMPER_MAGIC_MV_EXT:
        table = _mv_table(fd, path, tool_offset + DUMPER_SIZE[DUMPER_MAGIC_MV_EXT])
        signature = _pread_some(fd, 8, offset + MVDUMP_SIGN_OFFSET) == DF_S390_MAGIC_EXT.to_bytes(8, "big")
    return DumpArea(path, "eckd", tool, offset, _present(offset, nominal, size), nominal, p.blk_size, size,
                    p.blk_start, p.blk_end, p.num_heads, p.bpt, _label_devno(fd), table, signature)


def _fba_area(fd: int, path: str, size: int, bi) -> DumpArea:
    problem = _boot_info_problem(bi, BOOT_INFO_DEV_TYPE_FBA, "FBA block 0")
    if problem:
        raise BadInputError(f"{path}: {problem}")
    p = FbaDumpParam.parse(bi.dump_param)
    if not 0 < p.blk_start < p.blk_end:
        raise BadInputError(f"{path}: corrupt FBA dump partition blocks {p.blk_start}-{p.blk_end} "
                            f"(device has {size // FBA_BLOCK_SIZE} blocks)")
    offset = p.blk_start * FBA_BLOCK_SIZE
    nominal = (p.blk_end - p.blk_start) * FBA_BLOCK_SIZE
    tool_size = DUMPER_SIZE[DUMPER_MAGIC_FBA_EXT]         # zipl puts the tool in the last blocks
    tool = _dump_tool(fd, size - tool_size) if size >= tool_size else DumpTool()
    return DumpArea(path, "fba", tool, offset, _present(offset, nominal, size), nominal, FBA_BLOCK_SIZE, size,
                    p.blk_start, p.blk_end)


def read_dump_area(fd: int, path: str) -> DumpArea:
    """Locate the dump area on a dump device image and read what zipl installed there: boot
    record, geometry, dump tool and its parameter tail, volume label, multi-volume parameter
    table.  An image that holds no usable zipl dump record is a one-line BadInputError."""
    size = _file_size(fd)
    if size < DEVICE_PROBE_SIZE:
        raise BadInputError(f"{path} ({size} bytes) is too small to be a dump device")
    head = _pread_some(fd, DEVICE_PROBE_SIZE, 0)
    kind = dump_device_kind(head)
    if kind == "tape":
        avail = max(0, size - TAPE_DUMP_OFFSET)
        return DumpArea(path, kind, _dump_tool(fd, AWS_HEADER_SIZE, _TAPE_HEAD_SIZE), TAPE_DUMP_OFFSET, avail, avail,
                        TAPE_BLK_SIZE, size)
    if kind == "eckd":
        return _eckd_area(fd, path, size, _boot_info_at(head, _BOOT_INFO_PLACES[0][1]))
    if kind == "fba":
        return _fba_area(fd, path, size, _boot_info_at(head, _BOOT_INFO_PLACES[1][1]))
    raise _no_dump_record(path, head)


def check_volume_set(areas: Sequence[DumpArea]) -> list[DumpArea]:
    """The areas of a multi-volume set in table order; BadInputError naming what does not fit
    (a volume of another set, a volume twice, one missing)."""
    if not areas:
        raise BadInputError("no dump volume given")
    for a in areas:
        if not a.multi_volume:
            raise BadInputError(f"{a.path} is a single-volume {a.kind} dump device; only the ECKD volumes of a "
                                "multi-volume dump (zipl -M) can be given together")
    first = areas[0]
    by_index: dict[int, DumpArea] = {}
    for a in areas:
        if a.mv_table != first.mv_table:
            raise BadInputError(f"{a.path}: its multi-volume parameter table differs from {first.path}'s "
                                "(a volume of another dump set, or an orphaned volume)")
        n = a.volnr
        if n is None:
            raise BadInputError(f"{a.path}: its partition and device number are not in the parameter table")
        if n in by_index:
            twice = a.path == by_index[n].path
            raise BadInputError(f"{a.path} is given twice" if twice else f"{a.path} and {by_index[n].path} are both "
                                f"volume {n}")
        by_index[n] = a
    volumes = first.mv_table.volumes
    missing = [i for i in range(len(volumes)) if i not in by_index]
    if missing:
        names = ", ".join(f"{i} ({volumes[i].bus_id})" for i in missing)
        raise BadInputError(f"the multi-volume dump has {len(volumes)} volumes; missing volume(s) {names}")
    return [by_index[i] for i in range(len(volumes))]


# -- the tape dump: fixed-stride 32 KiB records --------------------------------------------------


@dataclass
class TapeDumpLayout:
    """Where the parts of a dump are on a tape image (AWSTAPE records from `area.offset`)."""

    header_offset: int              # file offset of the 4 KiB dump header
    data_offset: int                # file offset of the first data record (its AWSTAPE header)
    blocks: int                     # data blocks the header's mem_size needs
    blocks_present: int             # leading data blocks whose records are intact
    end_marker_offset: int          # file offset of the end marker record (its AWSTAPE header)

    def record_offset(self, block: int) -> int:
        return self.data_offset + block * TAPE_RECORD_SIZE

    def file_offset(self, addr: int) -> int:
        """File offset of memory byte `addr`."""
        return self.record_offset(addr // TAPE_BLK_SIZE) + AWS_HEADER_SIZE + addr % TAPE_BLK_SIZE


def _aws_at(fd: int, offset: int):
    raw = _pread_some(fd, AWS_HEADER_SIZE, offset)
    return AwsTapeHeader.parse(raw) if len(raw) == AWS_HEADER_SIZE else None


def _data_record_ok(fd: int, layout_data: int, block: int, prev: int) -> bool:
    h = _aws_at(fd, layout_data + block * TAPE_RECORD_SIZE)
    return (h is not None and h.curblkl == TAPE_BLK_SIZE and h.prvblkl == prev and
            h.flags1 == AWS_FLAG_NEWREC | AWS_FLAG_ENDREC)


def tape_dump_header(fd: int, area: DumpArea) -> tuple[object | None, int, str]:
    """(header, its file offset, why not) of the dump on a tape image: a tapemark right behind
    the tool, then a 4 KiB header block."""
    h = _aws_at(fd, area.offset)
    if h is None or not h.flags1 & AWS_FLAG_TAPEMARK:
        return None, 0, "no dump on the tape (no tapemark after the dump tool)"
    h = _aws_at(fd, area.offset + AWS_HEADER_SIZE)
    if h is None or h.curblkl != DF_S390_HDR_SIZE or h.flags1 & AWS_FLAG_TAPEMARK:
        return None, 0, "no dump on the tape (no 4 KiB header block after the tapemark)"
    at = area.offset + 2 * AWS_HEADER_SIZE
    raw = _pread_some(fd, DF_S390_HDR_SIZE, at)
    if len(raw) != DF_S390_HDR_SIZE:
        return None, 0, "the tape image ends inside the dump header"
    return parse_header(raw), at, ""


def tape_dump_layout(fd: int, header_offset: int, mem_size: int) -> TapeDumpLayout:
    """Count the intact data records (a binary search: the recorded part of a tape is a prefix)."""
    data = header_offset + DF_S390_HDR_SIZE
    blocks = -(-mem_size // TAPE_BLK_SIZE)
    em = data + blocks * TAPE_RECORD_SIZE
    present = 0
    if blocks:
        last_ok = _data_record_ok(fd, data, blocks - 1, TAPE_BLK_SIZE if blocks > 1 else DF_S390_HDR_SIZE)
        if last_ok and _data_record_ok(fd, data, 0, DF_S390_HDR_SIZE):
            present = blocks
        else:
            lo, hi = 0, blocks - 1          # blocks [0, lo) intact; block hi is not
            while lo < hi:
                mid = (lo + hi) // 2
                if _data_record_ok(fd, data, mid, TAPE_BLK_SIZE if mid else DF_S390_HDR_SIZE):
                    lo = mid + 1
                else:
                    hi = mid
            present = lo
    present = min(present, max(0, _file_size(fd) - data) // TAPE_RECORD_SIZE)   # whole records only
    return TapeDumpLayout(header_offset, data, blocks, present, em)


def tape_end_marker(fd: int, layout: TapeDumpLayout, hdr_tod: int) -> tuple[bool, int, str]:
    """The end marker record behind the last data block: (valid, tod, reason)."""
    h = _aws_at(fd, layout.end_marker_offset)
    if h is None or h.flags1 & AWS_FLAG_TAPEMARK or h.curblkl not in (8, DF_S390_EM_SIZE):
        return False, 0, "no end marker block after the last data block"
    raw = _pread_some(fd, DF_S390_EM_SIZE, layout.end_marker_offset + AWS_HEADER_SIZE)
    return parse_end_marker(raw.ljust(DF_S390_EM_SIZE, b"\0"), hdr_tod)
