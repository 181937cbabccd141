"""The s390 stand-alone dump family's layouts, named after s390-tools' ``include/dump/s390_dump.h``.

Every on-disk record of a stand-alone dump and of the zipl dump records that lead to it is
declared here once, with construct; each declaration names its C struct in a comment, so
``grep -rn df_s390_hdr meminfo_abi/`` finds it.  Big-endian (s390x) except the AWSTAPE block
header of tape images, which is little-endian by its own definition (Hercules).

  C struct (s390-tools)              ours
  struct df_s390_hdr                 DfS390Hdr          the 4 KiB dump header
  struct df_s390_em                  DfS390Em           the 16-byte end marker
  struct df_s390_dump_segm_hdr       DfS390DumpSegmHdr  a dump segment's 4 KiB header (extended)
  struct stage2dump_parm_tail        Stage2dumpParmTail the last 16 bytes of a dump tool
  struct df_s390_dumper (magic part) DumperHead         7-character magic + version of a dump tool
  struct mvdump_param                MvdumpParam        one volume of a multi-volume set
  struct mvdump_parm_table           MvdumpParmTable    the 512 bytes behind the multi-volume tool
  struct eckd_dump_param             EckdDumpParam      boot_info dump partition, ECKD
  struct fba_dump_param              FbaDumpParam       boot_info dump partition, FBA
  struct scsi_dump_param             ScsiDumpParam      boot_info dump parameter, SCSI
  struct boot_info                   BootInfo           "zIPL" boot record (bp_type 1 = dump)
  struct boot_ccw0                   BootCcw0
  struct boot_eckd_cdl_stage0        BootEckdCdlStage0  ECKD IPL1 record
  struct boot_eckd_ssrt              BootEckdSsrt
  struct boot_eckd_seekarg           BootEckdSeekarg
  struct boot_eckd_stage1            BootEckdStage1     ECKD IPL2 record
  struct boot_eckd_stage1b           BootEckdStage1b
  struct boot_fba_locread            BootFbaLocread
  struct boot_fba_locdata            BootFbaLocdata
  struct boot_fba_stage0             BootFbaStage0      FBA block 0
  struct boot_fba_stage1b            BootFbaStage1b
  (zipl's tape loader head)          TapeHead           load PSW + rewind + read CCWs
  (Hercules AWSTAPE block header)    AwsTapeHeader

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

Beside the declarations: their constants, ``build_*`` (what the dumpers fill in) and
``parse_header`` / ``parse_end_marker`` (the checks zgetdump applies to one record).
Walking a stream is ``s390_dump_stream``, finding the dump area on a device image
``s390_dump_device``, reading a whole dump ``s390_dump_reader``; the TOD clock is ``tod``.
"""

from __future__ import annotations

import sys
from array import array
from typing import Sequence

from construct import Adapter, Array, Bytes, Int8ub, Int16ub, Int16ul, Int32ub, Int64ub, Struct

from dumpkit.errors import BadInputError

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
DUMPER_MAGIC_MV_EXT = b"XMULT64"            # ECKD multi-volume, version 1 (zipl < 2.37) or 2 (zipl >= 2.37)
DUMPER_MAGIC_FBA_EXT = b"XDFBA64"           # FBA, version 1
DUMPER_MAGIC_TAPE = b"XTAPE64"              # ours: zipl's tape tool has no magic (see TapeHead)
DUMPER_VERSION = {DUMPER_MAGIC_ECKD_EXT: 2, DUMPER_MAGIC_MV_EXT: 2, DUMPER_MAGIC_FBA_EXT: 1,
                  DUMPER_MAGIC_TAPE: 1}     # the version we build by default (today's zipl)
DUMPER_DESCRIPTION = {
    DUMPER_MAGIC_ECKD_EXT: "Single-volume DASD dump tool (extended)",
    DUMPER_MAGIC_MV_EXT: "Multi-volume DASD dump tool (extended)",
    DUMPER_MAGIC_FBA_EXT: "Single-volume DASD dump tool (extended)",
    DUMPER_MAGIC_TAPE: "Tape dump tool",
}
# Size of each dump tool image (include/boot/loaders_layout.h STAGE2_DUMPER_SIZE_* / STAGE2_MAX_SIZE)
STAGE2_DUMPER_SIZE_V3 = 0x3000
STAGE2_DUMPER_SIZE_SV = STAGE2_DUMPER_SIZE_V3
STAGE2_DUMPER_SIZE_MV = 0x4000              # zipl >= 2.37 only
STAGE2_DUMPER_SIZE_SV_ZLIB = 0x8000         # STAGE2_DUMPER_SIZE_ZLIB
# The size is the tool's version's (zgetdump: df_s390_dumper_read): the multi-volume tool grew from
# 0x3000 (XMULT64 v1) to 0x4000 (XMULT64 v2, zipl 2.37), and its MvdumpParmTable moved with its end,
# from block 6 to block 7.  zgetdump < 2.37 takes any version-2 XMULT64 as 0x2000 long (reads the
# table at block 5) and so finds no v2 set; the single-volume tools have one size in every zgetdump.
DUMPER_SIZES = {
    (DUMPER_MAGIC_ECKD_EXT, 2): STAGE2_DUMPER_SIZE_SV_ZLIB,
    (DUMPER_MAGIC_MV_EXT, 1): STAGE2_DUMPER_SIZE_V3,
    (DUMPER_MAGIC_MV_EXT, 2): STAGE2_DUMPER_SIZE_MV,
    (DUMPER_MAGIC_FBA_EXT, 1): STAGE2_DUMPER_SIZE_V3,
    (DUMPER_MAGIC_TAPE, 1): STAGE2_DUMPER_SIZE_V3,
}
DUMPER_VERSIONS = {m: tuple(sorted(v for mm, v in DUMPER_SIZES if mm == m)) for m in DUMPER_VERSION}
DUMPER_SIZE = {m: DUMPER_SIZES[m, v] for m, v in DUMPER_VERSION.items()}     # the default version's size

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
DfS390Hdr = Struct(  # struct df_s390_hdr
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

DfS390Em = Struct(  # struct df_s390_em
    "magic" / Int64ub,                      # "DUMP_END"
    "tod" / Int64ub,                        # TOD clock at the end of the dump
)

DfS390DumpSegmHdr = Struct(  # struct df_s390_dump_segm_hdr
    "start" / Int64ub,                      # 0x000 physical start, 1 MiB aligned
    "len" / Int64ub,                        # 0x008 bytes of memory, multiple of 1 MiB
    "stop_marker" / Int64ub,                # 0x010 all ones in the last segment
    "size_on_disk" / Int32ub,               # 0x018 compressed: data size in device blocks
    "reserved_pad" / Bytes(0x30 - 0x1C),    # 0x01c
    "entry_count" / Int32ub,                # 0x030 number of 1 MiB units (<= 1011)
    "entry_offset" / U32beArray(DUMP_SEGM_ZLIB_MAXENTS),  # 0x034 block offsets, bit 31 = raw
)

# -- zipl dump records ---------------------------------------------------------------------
# struct stage2dump_parm_tail
Stage2dumpParmTail = Struct(                # the last 16 bytes of every dump tool
    "reserved" / Bytes(6),
    "no_compress" / Int8ub,
    "mvdump_force" / Int8ub,
    "mem_upper_limit" / Int64ub,            # SIZE of zipl -d DEV,SIZE; all ones = no limit
)

# struct df_s390_dumper (magic, version)
DumperHead = Struct(                        # the first 8 bytes of a DASD dump tool
    "magic" / Bytes(DF_S390_DUMPER_MAGIC_SIZE),
    "version" / Int8ub,
)

# struct mvdump_param
MvdumpParam = Struct(                       # 13 bytes, one per volume
    "devno" / Int16ub,
    "start_blk" / Int32ub,
    "end_blk" / Int32ub,
    "blk_size" / Int8ub,                    # block size >> 8
    "bpt" / Int8ub,                         # end record number = blocks per track
    "num_heads" / Int8ub,
)

# struct mvdump_parm_table
MvdumpParmTable = Struct(                   # right behind the multi-volume tool, 512 bytes
    "tod" / Int64ub,                        # zipl time stamp, identical on every volume
    "vol_cnt" / Int16ub,
    "vol_parm" / Array(MAX_DUMP_VOLUMES, MvdumpParam),
    "ssid" / Bytes(MAX_DUMP_VOLUMES),
    "reserved" / Bytes(MVDUMP_PARM_TABLE_SIZE - 8 - 2 - MAX_DUMP_VOLUMES * (13 + 1)),
)

EckdDumpParam = Struct(  # struct eckd_dump_param
    "blk_start" / Int32ub,
    "blk_end" / Int32ub,                    # last block of the dump area (inclusive)
    "blk_size" / Int16ub,
    "num_heads" / Int8ub,
    "bpt" / Int8ub,                         # blocks per track
    "reserved" / Bytes(4),
)

FbaDumpParam = Struct(  # struct fba_dump_param
    "res1" / Int32ub,
    "blk_start" / Int32ub,
    "res2" / Int32ub,
    "blk_end" / Int32ub,                    # block before stage 1b (the dumper stops one block earlier)
)

ScsiDumpParam = Struct(  # struct scsi_dump_param
    "block" / Int64ub,                      # byte offset of the zfcpdump superblock
    "reserved" / Int64ub,
)

BootInfo = Struct(  # struct boot_info
    "magic" / Bytes(4),                     # "zIPL"
    "version" / Int8ub,
    "bp_type" / Int8ub,                     # 1 = dump
    "dev_type" / Int8ub,                    # 0 ECKD, 1 FBA, 2 SCSI
    "flags" / Int8ub,                       # bit 0: 64-bit
    "dump_param" / Bytes(16),               # union eckd/fba/scsi dump_param, by dev_type
    "unused" / Bytes(16),
)

BootCcw0 = Struct(  # struct boot_ccw0
    "cmd" / Int8ub,
    "address_hi" / Int8ub,
    "address_lo" / Int16ub,
    "flags" / Int8ub,
    "pad" / Int8ub,
    "count" / Int16ub,
)

# struct boot_eckd_cdl_stage0
BootEckdCdlStage0 = Struct(                 # ECKD CDL track 0 record 1 (IPL1), at byte 4
    "psw" / Int64ub,
    "read" / BootCcw0,
    "tic" / BootCcw0,
)

# struct boot_eckd_ssrt
BootEckdSsrt = Struct("seek" / BootCcw0, "search" / BootCcw0, "tic" / BootCcw0, "read" / BootCcw0)
# struct boot_eckd_seekarg
BootEckdSeekarg = Struct("pad" / Int16ub, "cyl" / Int16ub, "head" / Int16ub, "sec" / Int8ub, "pad2" / Int8ub)

# struct boot_eckd_stage1
BootEckdStage1 = Struct(                    # ECKD track 0 record 2 (IPL2), at byte block_size + 4
    "ssrt" / Array(2, BootEckdSsrt),
    "tic1b" / BootCcw0,
    "seek" / Array(2, BootEckdSeekarg),
    "boot_info" / BootInfo,
)

STAGE2_BLK_CNT_MAX = 24
BootEckdStage1b = Struct(  # struct boot_eckd_stage1b
    "ssrt" / Array(STAGE2_BLK_CNT_MAX, BootEckdSsrt),
    "seek" / Array(STAGE2_BLK_CNT_MAX, BootEckdSeekarg),
    "unused" / Bytes(64),
)

# struct boot_fba_locread
BootFbaLocread = Struct("locate" / BootCcw0, "read" / BootCcw0)
# struct boot_fba_locdata
BootFbaLocdata = Struct("command" / Int8ub, "dummy" / Int8ub, "blockct" / Int16ub, "blocknr" / Int32ub)

# struct boot_fba_stage0
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

BootFbaStage1b = Struct(  # struct boot_fba_stage1b
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


# -- dump device images: fixed places and sizes (the image layouts: zipl_sadump/device.py) --
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


# -- parsing one record ---------------------------------------------------------------------


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

