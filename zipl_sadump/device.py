"""Dump devices as image files, laid out as ``zipl -d`` and ``zipl -M`` leave them.

How an image file maps to the real device
-----------------------------------------
ECKD DASD (``type='eckd'``, and every volume of a multi-volume set)
    The image is the **whole DASD** in the compatible disk layout (CDL),
    4096-byte blocks, geometry 15 heads x 12 blocks per track (a 3390
    formatted with 4 KiB blocks).  Block N is at byte N * 4096.

    ====================  =====================================================
    block 0  (record 1)   IPL1: ``BootEckdCdlStage0`` at byte 4
    block 1  (record 2)   IPL2: ``BootEckdStage1`` at byte 4096 + 4, holding the
                          ``BootInfo`` (bp_type dump, ECKD dump parameters)
    block 2  (record 3)   the volume label ("VOL1" + volser, EBCDIC); our volser
                          ``DVxxxx`` carries the device number xxxx
    block 3 ...           the dump tool: "XECKD64" v2 (0x8000 bytes, blocks
                          3-10) or "XMULT64" v2 (0x4000 bytes, blocks 3-6, then
                          the 512-byte ``MvdumpParmTable`` in block 7; zipl >=
                          2.37) or, on request, "XMULT64" v1 (0x3000 bytes,
                          blocks 3-5, table in block 6; older zipl, the layout
                          zgetdump < 2.37 reads); its last 16 bytes are the
                          ``Stage2dumpParmTail``
    next block            stage 1b (``BootEckdStage1b``)
    track 1 (12-23)       VTOC area (left empty)
    block 24 ... end      **partition 1 = the dump partition**: blk_start = 24,
                          blk_end = the last block (inclusive)
    ====================  =====================================================

    The first 64 KiB of the partition are zeroed; for ``-M`` the signature
    ``0xa8190173618f23fe`` is written at partition + 512 (``mvdump_sign``).
    The dump stream (header, segments, end marker) starts at the first block
    of the partition.  Image sizes are rounded down to whole tracks.

FBA DASD (``type='fba'``)
    The image is the whole FBA device in **512-byte blocks**.  Block 0 holds
    ``BootFbaStage0`` with the ``BootInfo`` at byte 0x70.  The partition is
    block 8 (byte 4096; our choice, page aligned) to the end of the device.
    As ``zipl`` does, the dump tool ("XDFBA64" v1, 0x3000 bytes) occupies the
    **last** 24 blocks of the partition, stage 1b the 2 blocks before it; the
    boot_info's blk_end is the block before stage 1b, and the dumper writes
    blocks blk_start .. blk_end - 1 (it refuses a write that reaches blk_end).

Tape (``type='tape'``)
    A tape has no random access, so the image is an **AWSTAPE** file (the
    Hercules emulator's tape image format): every tape block is preceded by
    a 6-byte little-endian header (length of this block, length of the
    previous one, flags 0x80 new record / 0x20 end of record / 0x40
    tapemark).  Tape file 1 is the dump tool, one 0x3000-byte block that
    starts with zipl's ``TapeHead`` (load PSW + rewind + read CCWs),
    followed by our ``"XTAPE64"`` v1 magic at byte 0x18 (zipl's tape tool has
    no magic; ours lets ``read_device`` recognise it) and ending with the
    parameter tail; then a tapemark.  The image file's size is the tape's
    capacity; the recorded part ends at the first all-zero block header.
    When the dumper runs it writes, after the tool block: tapemark, the 4 KiB
    dump header, memory in 32 KiB blocks (flat, as zipl's tape dumper), the
    16-byte end marker, tapemark.  Writing a tape invalidates what follows,
    so the dumper erases (punches) everything after the tool block first.

Everything is written sparse and atomically (temporary name + rename).  Reading an image is
``meminfo_abi.s390_dump.read_dump_area``, the parser the vmcore reader uses too; ``read_device``
adds what a dumper needs on top (``DumpArea.check_for_dumper``) and sadump's view, ``DeviceInfo``.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import asdict, dataclass, field, fields
from typing import Iterator, Sequence

from dumpkit.errors import BadInputError, DumpIOError
from meminfo_abi.s390_dump import (
    AWS_FLAG_ENDREC, AWS_FLAG_NEWREC, AWS_FLAG_TAPEMARK, AWS_HEADER_SIZE, BOOT_INFO_BP_TYPE_DUMP,
    BOOT_INFO_DEV_TYPE_ECKD, BOOT_INFO_DEV_TYPE_FBA, BOOT_INFO_FLAGS_ARCH, BOOT_INFO_MAGIC, BOOT_INFO_VERSION,
    DEVICE_KINDS, DF_S390_EM_SIZE, DF_S390_HDR_SIZE, DF_S390_MAGIC_BLK_ECKD, DF_S390_MAGIC_EXT, DUMP_SEGM_HDR_SIZE,
    DUMP_SEGM_ZLIB_MAXLEN, DUMPER_DESCRIPTION, DUMPER_MAGIC_ECKD_EXT, DUMPER_MAGIC_FBA_EXT, DUMPER_MAGIC_MV_EXT,
    DUMPER_MAGIC_TAPE, DUMPER_SIZES, DUMPER_VERSION, DUMPER_VERSIONS, ECKD_BLOCK_SIZE, ECKD_VOL1_BLOCK, FBA_BLOCK_SIZE,
    FBA_STAGE1B_BLOCKS, FBA_TOOL_BLOCKS, MAX_DUMP_VOLUMES, MEM_UPPER_LIMIT_NONE, MIB, MVDUMP_PARM_TABLE_SIZE,
    MVDUMP_SIGN_OFFSET, TAPE_BLK_SIZE, TAPE_DUMP_OFFSET, TAPE_HEAD_CCW1, TAPE_HEAD_CCW2, TAPE_HEAD_PSW,
    TAPE_TOOL_SIZE, AwsTapeHeader, BootEckdCdlStage0, BootEckdStage1, BootEckdStage1b, BootFbaStage0, BootFbaStage1b,
    DumperHead, EckdDumpParam, FbaDumpParam, MvdumpParmTable, Stage2dumpParmTail, TapeHead,
)
from meminfo_abi.s390_dump_device import DumpArea, MvTable, check_volume_set, read_dump_area
from meminfo_abi.tod import tod_now
from dumpkit.fileio import atomic_file, pwrite_all, sparse_copy, os_open_input
from dumpkit.units import human
from native import nonzero_ranges

DEVICE_TYPES = DEVICE_KINDS

# What we choose when building (the layouts themselves are meminfo_abi.s390_dump's)
# ECKD: a 3390 formatted with 4 KiB blocks, CDL
ECKD_HEADS = 15
ECKD_BPT = 12                                  # 4 KiB blocks per track
ECKD_TRACK_SIZE = ECKD_BPT * ECKD_BLOCK_SIZE
ECKD_PART_START_TRACK = 2
ECKD_PART_START = ECKD_PART_START_TRACK * ECKD_BPT    # block 24
MV_TOOL_VERSIONS = DUMPER_VERSIONS[DUMPER_MAGIC_MV_EXT]           # (1, 2): sadump build -M --tool-version


def mvdump_table_block(version: int = DUMPER_VERSION[DUMPER_MAGIC_MV_EXT]) -> int:
    """The ECKD block holding the MvdumpParmTable behind an XMULT64 tool of this version."""
    return DF_S390_MAGIC_BLK_ECKD + DUMPER_SIZES[DUMPER_MAGIC_MV_EXT, version] // ECKD_BLOCK_SIZE


MVDUMP_TABLE_BLOCK = mvdump_table_block()      # 7 (version 2); 6 behind a version-1 tool
# FBA
FBA_PART_START = 8

PARTITION_CLEAR = 64 * 1024                    # zipl zeroes the first 64 KiB of the partition
MIN_DUMP_AREA = 2 * MIB                        # header, one 1 MiB segment and the end marker fit
MV_DEVNO_BASE = 0x4711
SV_DEVNO = 0x0200

# CCW command codes used in the boot records (illustrative channel programs, never executed)
CCW_READ_DATA, CCW_SEEK, CCW_SEARCH_ID_EQ, CCW_TIC = 0x06, 0x07, 0x31, 0x08
CCW_FBA_LOCATE, CCW_FBA_READ = 0x43, 0x42
CCW_FLAG_CC, CCW_FLAG_SLI = 0x40, 0x20
IPL_PSW = 0x0008000080000000
STAGE1B_LOAD_ADDRESS = 0xE000
STAGE2_LOAD_ADDRESS = 0x2000


@dataclass
class DeviceInfo:
    """What zipl installed on a dump device image, and where the dump area is: sadump's view
    (and JSON) of the DumpArea that meminfo_abi.s390_dump.read_dump_area parsed."""

    path: str
    type: str                    # eckd | fba | tape
    tool: str                    # dump tool magic, e.g. "XECKD64"
    tool_version: int
    size: int                    # image size in bytes
    block_size: int              # 4096 ECKD, 512 FBA, 32768 tape (data blocks)
    blk_start: int               # first block of the dump area (device blocks; tape: 0)
    blk_end: int                 # boot_info blk_end (tape: 0)
    dump_offset: int             # byte offset of the dump area in the image
    dump_size: int               # bytes the dumper may write there
    mem_limit: int | None = None
    no_compress: bool = False
    force: bool = False
    num_heads: int | None = None
    bpt: int | None = None
    devno: int | None = None
    mv_table: MvTable | None = None
    volnr: int | None = None     # this volume's index in the multi-volume table
    signature: bool | None = None  # multi-volume: mvdump_sign at partition + 512
    area: DumpArea | None = field(default=None, repr=False, compare=False)   # what it was made from

    @classmethod
    def from_area(cls, area: DumpArea) -> "DeviceInfo":
        t = area.tool
        return cls(area.path, area.kind, t.name, t.version, area.image_size, area.block_size, area.blk_start,
                   area.blk_end, area.offset, area.nominal_size, t.mem_limit, t.no_compress, t.mvdump_force,
                   area.num_heads, area.bpt, area.devno, area.mv_table, area.volnr, area.mv_signature, area)

    @property
    def multi_volume(self) -> bool:
        return self.tool == DUMPER_MAGIC_MV_EXT.decode()

    @property
    def description(self) -> str:
        return DUMPER_DESCRIPTION.get(self.tool.encode(), self.tool)

    @property
    def supports_compression(self) -> bool:
        """Only the ECKD single-volume dumper writes zlib segments."""
        return self.tool == DUMPER_MAGIC_ECKD_EXT.decode() and self.tool_version >= 2 and not self.no_compress

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "area"}
        d["mv_table"] = self.mv_table.to_json() if self.mv_table else None
        d["multi_volume"] = self.multi_volume
        d["description"] = self.description
        return d


@dataclass
class Fit:
    """Whether a machine's memory fits on a dump device (worst case: nothing compresses)."""

    fits: bool
    needed: int
    available: int
    mem_size: int
    reason: str = ""
    per_volume: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.fits

    def to_json(self) -> dict:
        return asdict(self)


# -- building ------------------------------------------------------------------------------


def _parm_tail(mem_limit: int | None, no_compress: bool, force: bool) -> bytes:
    return Stage2dumpParmTail.build(dict(
        reserved=bytes(6), no_compress=1 if no_compress else 0, mvdump_force=1 if force else 0,
        mem_upper_limit=MEM_UPPER_LIMIT_NONE if mem_limit is None else mem_limit))


def _tool_image(magic: bytes, tail: bytes, table: bytes = b"", version: int | None = None) -> bytes:
    version = DUMPER_VERSION[magic] if version is None else version
    size = DUMPER_SIZES[magic, version]
    img = bytearray(size)
    img[0:8] = DumperHead.build(dict(magic=magic, version=version))
    img[size - len(tail):] = tail
    return bytes(img) + table


def _ccw(cmd: int, addr: int = 0, flags: int = 0, count: int = 0) -> dict:
    return dict(cmd=cmd, address_hi=(addr >> 16) & 0xFF, address_lo=addr & 0xFFFF, flags=flags, pad=0,
                count=count)


def _boot_info(dev_type: int, param: bytes) -> dict:
    return dict(magic=BOOT_INFO_MAGIC, version=BOOT_INFO_VERSION, bp_type=BOOT_INFO_BP_TYPE_DUMP,
                dev_type=dev_type, flags=BOOT_INFO_FLAGS_ARCH, dump_param=param, unused=bytes(16))


def _eckd_chs(block: int) -> tuple[int, int, int]:
    track, rec = divmod(block, ECKD_BPT)
    cyl, head = divmod(track, ECKD_HEADS)
    return cyl, head, rec + 1


def _ssrt(block: int, load: int) -> dict:
    return dict(seek=_ccw(CCW_SEEK, 0, CCW_FLAG_CC, 6), search=_ccw(CCW_SEARCH_ID_EQ, 0, CCW_FLAG_CC, 5),
                tic=_ccw(CCW_TIC, 0, 0, 0), read=_ccw(CCW_READ_DATA, load, CCW_FLAG_CC | CCW_FLAG_SLI,
                                                       ECKD_BLOCK_SIZE))


def _seekarg(block: int) -> dict:
    cyl, head, sec = _eckd_chs(block)
    return dict(pad=0, cyl=cyl & 0xFFFF, head=head | ((cyl >> 12) & 0xFFF0), sec=sec, pad2=0)


def _pwrite(fd: int, data: bytes | bytearray, off: int, fresh: bool) -> None:
    """Write `data` at `off`; on a fresh (all-hole) image skip all-zero pages to keep it sparse."""
    view = memoryview(data)
    for s, e in (nonzero_ranges(view, 4096) if fresh else [(0, len(view))]):
        pwrite_all(fd, view[s:e], off + s)


def _ebcdic(text: str) -> bytes:
    return text.encode("cp500")


def _write_eckd(fd: int, size: int, magic: bytes, tail: bytes, table: bytes, devno: int,
                mv_sign: bool, clear_partition: bool, fresh: bool, version: int | None = None) -> tuple[int, int]:
    total_blocks = size // ECKD_BLOCK_SIZE
    blk_start, blk_end = ECKD_PART_START, total_blocks - 1
    tool = _tool_image(magic, tail, table, version)
    tool_blocks = -(-len(tool) // ECKD_BLOCK_SIZE)
    stage1b_block = DF_S390_MAGIC_BLK_ECKD + tool_blocks
    if stage1b_block >= ECKD_BPT:
        raise BadInputError("ECKD dump record is too large for track 0")
    stage1b = BootEckdStage1b.build(dict(
        ssrt=[_ssrt(DF_S390_MAGIC_BLK_ECKD + i, STAGE2_LOAD_ADDRESS + i * ECKD_BLOCK_SIZE)
              for i in range(tool_blocks)] + [dict(seek=_ccw(CCW_TIC, STAGE2_LOAD_ADDRESS), search=_ccw(0),
                                                   tic=_ccw(0), read=_ccw(0))]
             + [dict(seek=_ccw(0), search=_ccw(0), tic=_ccw(0), read=_ccw(0))] * (23 - tool_blocks),
        seek=[_seekarg(DF_S390_MAGIC_BLK_ECKD + i) for i in range(tool_blocks)]
             + [_seekarg(0)] * (24 - tool_blocks),
        unused=bytes(64)))
    param = EckdDumpParam.build(dict(blk_start=blk_start, blk_end=blk_end, blk_size=ECKD_BLOCK_SIZE,
                                     num_heads=ECKD_HEADS, bpt=ECKD_BPT, reserved=bytes(4)))
    stage1 = BootEckdStage1.build(dict(
        ssrt=[_ssrt(stage1b_block, STAGE1B_LOAD_ADDRESS),
              dict(seek=_ccw(CCW_TIC, STAGE1B_LOAD_ADDRESS), search=_ccw(0), tic=_ccw(0), read=_ccw(0))],
        tic1b=_ccw(CCW_TIC, STAGE1B_LOAD_ADDRESS), seek=[_seekarg(stage1b_block), _seekarg(0)],
        boot_info=_boot_info(BOOT_INFO_DEV_TYPE_ECKD, param)))
    stage0 = BootEckdCdlStage0.build(dict(
        psw=IPL_PSW | 0x18, read=_ccw(CCW_READ_DATA, 0x18, CCW_FLAG_CC | CCW_FLAG_SLI, BootEckdStage1.sizeof()),
        tic=_ccw(CCW_TIC, 0x18)))
    volser = f"DV{devno:04X}"
    track0 = bytearray(ECKD_TRACK_SIZE)
    track0[4:4 + len(stage0)] = stage0
    track0[ECKD_BLOCK_SIZE + 4:ECKD_BLOCK_SIZE + 4 + len(stage1)] = stage1
    label = _ebcdic("VOL1") + _ebcdic(volser)
    track0[ECKD_VOL1_BLOCK * ECKD_BLOCK_SIZE:ECKD_VOL1_BLOCK * ECKD_BLOCK_SIZE + len(label)] = label
    off = DF_S390_MAGIC_BLK_ECKD * ECKD_BLOCK_SIZE
    track0[off:off + len(tool)] = tool
    track0[stage1b_block * ECKD_BLOCK_SIZE:stage1b_block * ECKD_BLOCK_SIZE + len(stage1b)] = stage1b
    _pwrite(fd, track0, 0, fresh)
    if clear_partition:
        start = bytearray(min(PARTITION_CLEAR, (blk_end - blk_start + 1) * ECKD_BLOCK_SIZE))
        if mv_sign:
            start[MVDUMP_SIGN_OFFSET:MVDUMP_SIGN_OFFSET + 8] = DF_S390_MAGIC_EXT.to_bytes(8, "big")
        _pwrite(fd, start, blk_start * ECKD_BLOCK_SIZE, fresh)
    return blk_start, blk_end


def _write_fba(fd: int, size: int, tail: bytes, fresh: bool) -> tuple[int, int]:
    total = size // FBA_BLOCK_SIZE
    tool_blk = total - FBA_TOOL_BLOCKS
    stage1b_blk = tool_blk - FBA_STAGE1B_BLOCKS
    blk_start, blk_end = FBA_PART_START, stage1b_blk - 1
    tool = _tool_image(DUMPER_MAGIC_FBA_EXT, tail)
    stage1b = BootFbaStage1b.build(dict(
        locread=[dict(locate=_ccw(CCW_FBA_LOCATE, 0, CCW_FLAG_CC, 8),
                      read=_ccw(CCW_FBA_READ, STAGE2_LOAD_ADDRESS + i * FBA_BLOCK_SIZE, CCW_FLAG_CC,
                                FBA_BLOCK_SIZE)) for i in range(FBA_TOOL_BLOCKS)],
        locdata=[dict(command=CCW_FBA_READ, dummy=0, blockct=1, blocknr=tool_blk + i)
                 for i in range(FBA_TOOL_BLOCKS)],
        unused=bytes(448)))
    param = FbaDumpParam.build(dict(res1=0, blk_start=blk_start, res2=0, blk_end=blk_end))
    stage0 = BootFbaStage0.build(dict(
        psw=IPL_PSW | 0x18, read_ipl=0x0200001860000050, tic1=0x0800001800000000,
        locread=[dict(locate=_ccw(CCW_FBA_LOCATE, 0, CCW_FLAG_CC, 8),
                      read=_ccw(CCW_FBA_READ, STAGE1B_LOAD_ADDRESS + i * FBA_BLOCK_SIZE, CCW_FLAG_CC,
                                FBA_BLOCK_SIZE)) for i in range(FBA_STAGE1B_BLOCKS)],
        tic1b=0x0800E00000000000,
        locdata=[dict(command=CCW_FBA_READ, dummy=0, blockct=1, blocknr=stage1b_blk + i)
                 for i in range(FBA_STAGE1B_BLOCKS)],
        reserved=[0, 0, 0, 0], boot_info=_boot_info(BOOT_INFO_DEV_TYPE_FBA, param)))
    os.pwrite(fd, stage0, 0)
    clear = min(PARTITION_CLEAR, (blk_end - blk_start) * FBA_BLOCK_SIZE)
    _pwrite(fd, bytes(clear), blk_start * FBA_BLOCK_SIZE, fresh)
    os.pwrite(fd, stage1b, stage1b_blk * FBA_BLOCK_SIZE)
    _pwrite(fd, tool, tool_blk * FBA_BLOCK_SIZE, fresh)
    return blk_start, blk_end


def _aws(curblkl: int, prvblkl: int, flags1: int) -> bytes:
    return AwsTapeHeader.build(dict(curblkl=curblkl, prvblkl=prvblkl, flags1=flags1, flags2=0))


def _write_tape(fd: int, tail: bytes) -> None:
    tool = bytearray(TAPE_TOOL_SIZE)
    tool[0:24] = TapeHead.build(dict(psw=TAPE_HEAD_PSW, ccw1=TAPE_HEAD_CCW1, ccw2=TAPE_HEAD_CCW2))
    tool[24:32] = DumperHead.build(dict(magic=DUMPER_MAGIC_TAPE, version=DUMPER_VERSION[DUMPER_MAGIC_TAPE]))
    tool[TAPE_TOOL_SIZE - len(tail):] = tail
    rec = _aws(TAPE_TOOL_SIZE, 0, AWS_FLAG_NEWREC | AWS_FLAG_ENDREC) + bytes(tool)
    rec += _aws(0, TAPE_TOOL_SIZE, AWS_FLAG_TAPEMARK)
    os.pwrite(fd, rec, 0)


def _check_mem_limit(mem_limit: int | None) -> None:
    if mem_limit is None:
        return
    if mem_limit <= 0 or mem_limit % MIB:
        raise BadInputError(f"memory limit {mem_limit} must be a positive multiple of 1 MiB")


def _image_size(dev_type: str, size: int) -> int:
    """The usable image size for a device of `size` bytes, checked."""
    if dev_type == "eckd":
        img = size - size % ECKD_TRACK_SIZE
        area = img - ECKD_PART_START * ECKD_BLOCK_SIZE
        if img // ECKD_BLOCK_SIZE - 1 > 0xFFFFFFFF:
            raise BadInputError(f"ECKD device of {human(size)} is too large: the partition end exceeds 2^32 blocks")
    elif dev_type == "fba":
        img = size - size % FBA_BLOCK_SIZE
        area = (img // FBA_BLOCK_SIZE - FBA_TOOL_BLOCKS - FBA_STAGE1B_BLOCKS - 1 - FBA_PART_START) * FBA_BLOCK_SIZE
        if img // FBA_BLOCK_SIZE > 0xFFFFFFFF:
            raise BadInputError(f"FBA device of {human(size)} is too large: more than 2^32 blocks")
    elif dev_type == "tape":
        img = size
        area = img - TAPE_DUMP_OFFSET
    else:
        raise BadInputError(f"unknown device type {dev_type!r} (use eckd, fba or tape)")
    if area < MIN_DUMP_AREA:
        raise BadInputError(f"device size {size} ({human(size)}) is too small: a {dev_type} dump device needs a "
                            f"dump area of at least {human(MIN_DUMP_AREA)}")
    return img


@contextlib.contextmanager
def _image(path: str, size: int | None) -> Iterator[tuple[int, int]]:
    """A temporary image beside `path` (a sparse copy of the existing one when size is None)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise BadInputError(f"{path} is a directory, not a device image")
    with atomic_file(path, "wb") as fh:
        fd = fh.fileno()
        if size is None:
            if not os.path.isfile(path):
                raise BadInputError(f"{path} does not exist; give a --size to create it")
            have = sparse_copy(path, fh)
            fh.flush()
            yield fd, have
        else:
            os.ftruncate(fd, size)
            yield fd, size


def build_device(path: str, type: str = "eckd", size: int | None = None, mem_limit: int | None = None,
                 no_compress: bool = False, devno: int = SV_DEVNO) -> DeviceInfo:
    """Install a single-volume dump tool on a device image (``zipl -d DEV[,SIZE]``).

    `size` creates a new image of that size (ECKD rounded down to whole tracks);
    without it the existing image is reused (its partition start is zeroed
    again, the rest kept, as zipl does)."""
    if type not in DEVICE_TYPES:
        raise BadInputError(f"unknown device type {type!r} (use eckd, fba or tape)")
    _check_mem_limit(mem_limit)
    if size is None:
        if not os.path.isfile(path):
            raise BadInputError(f"{path} does not exist; give a --size to create it")
        want = os.path.getsize(path)
    else:
        want = size
    img = _image_size(type, want)
    tail = _parm_tail(mem_limit, no_compress, False)
    with _image(path, None if size is None else img) as (fd, have):
        if have != img:
            os.ftruncate(fd, img)
        try:
            if type == "eckd":
                _write_eckd(fd, img, DUMPER_MAGIC_ECKD_EXT, tail, b"", devno, False, True, size is not None)
            elif type == "fba":
                _write_fba(fd, img, tail, size is not None)
            else:
                os.ftruncate(fd, 0)          # a re-written tape loses everything after the tool
                os.ftruncate(fd, img)
                _write_tape(fd, tail)
        except OSError as exc:
            raise DumpIOError(f"writing {path}: {exc.strerror or exc}") from None
    return read_device(path)


def build_multi_volume(paths: Sequence[str], size: int | None = None, force: bool = False,
                       mem_limit: int | None = None, devno_base: int = MV_DEVNO_BASE,
                       tool_version: int = DUMPER_VERSION[DUMPER_MAGIC_MV_EXT]) -> list[DeviceInfo]:
    """Install the multi-volume dump tool on 1..32 ECKD images (``zipl -M``).

    Every volume gets the tool, the same parameter table (same TOD) and, unless
    `force`, a zeroed partition start with the signature at partition + 512.
    `size` creates new images of that size; without it existing images are
    reused with their sizes (and, with `force`, their partition start kept).
    `tool_version` 2 is today's zipl's XMULT64 (table in block 7), 1 an older
    zipl's (table in block 6, what zgetdump < 2.37 reads)."""
    paths = [os.fspath(p) for p in paths]
    if tool_version not in MV_TOOL_VERSIONS:
        raise BadInputError(f"XMULT64 dump tool version {tool_version} is not supported (versions "
                            f"{', '.join(map(str, MV_TOOL_VERSIONS))})")
    if not paths:
        raise BadInputError("no volumes given for the multi-volume dump")
    if len(paths) > MAX_DUMP_VOLUMES:
        raise BadInputError(f"{len(paths)} volumes, a multi-volume dump supports at most {MAX_DUMP_VOLUMES}")
    if len({os.path.realpath(p) for p in paths}) != len(paths):
        raise BadInputError("a volume is listed twice in the multi-volume dump list")
    _check_mem_limit(mem_limit)
    sizes = []
    for p in paths:
        if size is None:
            if not os.path.isfile(p):
                raise BadInputError(f"{p} does not exist; give a --size to create the volumes")
            sizes.append(_image_size("eckd", os.path.getsize(p)))
        else:
            sizes.append(_image_size("eckd", size))
    vols = []
    for i, img in enumerate(sizes):
        vols.append(dict(devno=(devno_base + i) & 0xFFFF, start_blk=ECKD_PART_START,
                         end_blk=img // ECKD_BLOCK_SIZE - 1, blk_size=ECKD_BLOCK_SIZE >> 8, bpt=ECKD_BPT,
                         num_heads=ECKD_HEADS))
    empty = dict(devno=0, start_blk=0, end_blk=0, blk_size=0, bpt=0, num_heads=0)
    table = MvdumpParmTable.build(dict(
        tod=tod_now(), vol_cnt=len(vols), vol_parm=vols + [empty] * (MAX_DUMP_VOLUMES - len(vols)),
        ssid=bytes(MAX_DUMP_VOLUMES), reserved=bytes(MVDUMP_PARM_TABLE_SIZE - 458)))
    tail = _parm_tail(mem_limit, False, force)
    with contextlib.ExitStack() as stack:
        for i, (p, img) in enumerate(zip(paths, sizes)):
            fd, have = stack.enter_context(_image(p, None if size is None else img))
            if have != img:
                os.ftruncate(fd, img)
            try:
                # --force: zipl leaves the partition start (and any old signature) alone
                _write_eckd(fd, img, DUMPER_MAGIC_MV_EXT, tail, table, vols[i]["devno"], True, not force,
                            size is not None, tool_version)
            except OSError as exc:
                raise DumpIOError(f"writing {p}: {exc.strerror or exc}") from None
    return read_devices(paths)


# -- reading -------------------------------------------------------------------------------


def read_device(path: str) -> DeviceInfo:
    """Parse a dump device image as a dumper needs it: meminfo_abi.s390_dump.read_dump_area, then
    DumpArea.check_for_dumper.  A wrong or corrupt boot record is a one-line BadInputError."""
    path = os.fspath(path)
    try:
        fd = os_open_input(path, noun="dump device")
    except FileNotFoundError:
        raise BadInputError(f"dump device {path} does not exist") from None
    except OSError as exc:
        raise DumpIOError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):        # os.open takes a directory without complaint
            raise BadInputError(f"dump device {path} is a directory")
        area = read_dump_area(fd, path)
    finally:
        os.close(fd)
    area.check_for_dumper()
    return DeviceInfo.from_area(area)


def read_devices(paths: Sequence[str]) -> list[DeviceInfo]:
    """Parse one device, or the volumes of a multi-volume set given in table order."""
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise BadInputError("no dump device given")
    devs = [read_device(p) for p in paths]
    check_device_set(devs)
    return devs


def check_device_set(devs: Sequence[DeviceInfo]) -> None:
    """A list of devices is one single-volume device or one complete multi-volume set in order
    (meminfo_abi.s390_dump.check_volume_set, and the dumper takes the volumes in table order)."""
    if len(devs) == 1 and not devs[0].multi_volume:
        return
    ordered = check_volume_set([d.area for d in devs])
    for i, (d, area) in enumerate(zip(devs, ordered)):
        if d.area is not area:
            raise BadInputError(f"{d.path} is volume {d.volnr}, but listed as volume {i}")


# -- capacity ------------------------------------------------------------------------------


def dump_mem_size(devs: DeviceInfo | Sequence[DeviceInfo], memory_size: int) -> int:
    first = devs if isinstance(devs, DeviceInfo) else devs[0]
    return memory_size if first.mem_limit is None else min(memory_size, first.mem_limit)


def fits(device: DeviceInfo | Sequence[DeviceInfo], memory_size: int) -> Fit:
    """Whether a machine of `memory_size` bytes fits, assuming no MiB is zero and nothing compresses:
    dump area >= header + memory + segment headers + end marker."""
    devs = [device] if isinstance(device, DeviceInfo) else list(device)
    mem = dump_mem_size(devs, memory_size)
    d0 = devs[0]
    if d0.type == "tape":
        blocks = -(-mem // TAPE_BLK_SIZE)
        needed = (AWS_HEADER_SIZE * 2 + DF_S390_HDR_SIZE + blocks * (AWS_HEADER_SIZE + TAPE_BLK_SIZE)
                  + AWS_HEADER_SIZE + DF_S390_EM_SIZE + AWS_HEADER_SIZE)
        avail = d0.dump_size
        per = [avail]
    elif d0.multi_volume:
        # per volume: header + 2 blocks reserve; each segment needs a header block and >= 1 MiB
        per = []
        left = mem
        needed = 0
        for d in devs:
            free = d.dump_size - DF_S390_HDR_SIZE - 2 * d.block_size
            take = min(left, max(0, free - free % MIB))
            per.append(take)
            left -= take
            needed += DF_S390_HDR_SIZE + 2 * d.block_size + take
        avail = sum(d.dump_size for d in devs)
        needed += left + (DF_S390_HDR_SIZE + 2 * d0.block_size if left else 0)
        ok = left == 0
        return Fit(ok, needed, avail, mem, "" if ok else
                   f"{human(left)} of memory do not fit on the {len(devs)} volumes", per)
    else:
        compressed = d0.supports_compression
        segs = 1 + (-(-max(0, mem - MIB) // DUMP_SEGM_ZLIB_MAXLEN) if compressed else 0)
        if mem <= MIB and compressed:
            segs = 1
        needed = DF_S390_HDR_SIZE + mem + segs * DUMP_SEGM_HDR_SIZE + max(d0.block_size, DF_S390_EM_SIZE)
        avail = d0.dump_size
        per = [avail]
    ok = needed <= avail
    return Fit(ok, needed, avail, mem, "" if ok else
               f"the dump may need {human(needed)}, the dump area has {human(avail)}", per)


def parse_device_list(text: str) -> list[str]:
    """'A,B,C' -> ['A', 'B', 'C'] (empty items rejected)."""
    items = [t.strip() for t in str(text).split(",")]
    if not items or any(not t for t in items):
        raise BadInputError(f"device list {text!r} has an empty entry")
    return items


__all__ = [
    "DEVICE_TYPES", "DeviceInfo", "Fit", "MV_TOOL_VERSIONS", "MvTable", "build_device", "build_multi_volume",
    "mvdump_table_block", "read_device", "read_devices", "check_device_set", "fits", "dump_mem_size", "parse_device_list",
]
