"""Dump device images: where a stand-alone dump lives, read once for sadump and vmcore alike.

What a reader needs to find the dump on an image of a dump device as zipl leaves it
(the image layouts are described in zipl_sadump/device.py, which writes them):
  ECKD  4 KiB blocks; the IPL2 record (block 1) carries the boot_info with the dump
        partition's first/last block; the dump tool starts at block 3 (XECKD64 or
        XMULT64, the latter followed by the multi-volume parameter table, which is at
        block 6 behind a version-1 tool and at block 7 behind a version-2 one); the VOL1
        label in block 2 names the device number ("DVxxxx").
  FBA   512-byte blocks; boot_info in block 0; the dumper writes blk_start .. blk_end - 1.
  tape  AWSTAPE image: the dump tool block, then a tapemark, the header block, the memory
        in 32 KiB blocks, the end-marker block and a tapemark.
This is the one parser of these records: the vmcore reader and sadump (build, show, ipl,
extract) both read devices through read_dump_area.  Every value taken from an image is
bounded before it is used; the boot record, the ECKD geometry and the multi-volume parameter
table are checked strictly.  An area cut short by the end of the image file is reported as
smaller (`size`), not refused: the dump on it is then incomplete, which the reader reports with
the missing range.  The dump tool is reported as found; a dumper needs the whole area and a
tool it knows (DumpArea.check_for_dumper), a reader needs neither.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Sequence

from dumpkit.errors import BadInputError, DumpIOError
from meminfo_abi.s390_dump import (
    AWS_FLAG_ENDREC, AWS_FLAG_NEWREC, AWS_FLAG_TAPEMARK, AWS_HEADER_SIZE, BOOT_INFO_BP_TYPE_DUMP,
    BOOT_INFO_BP_TYPE_IPL, BOOT_INFO_DEV_TYPE_ECKD, BOOT_INFO_DEV_TYPE_FBA, BOOT_INFO_MAGIC,
    BOOT_INFO_OFFSET_ECKD_STAGE1, BOOT_INFO_OFFSET_FBA_STAGE0, BOOT_INFO_VERSION, DEVICE_PROBE_SIZE,
    DF_S390_HDR_SIZE, DF_S390_MAGIC_BLK_ECKD, DF_S390_MAGIC_EXT, DUMPER_DESCRIPTION,
    DUMPER_MAGIC_ECKD_EXT, DUMPER_MAGIC_FBA_EXT, DUMPER_MAGIC_MV_EXT, DUMPER_MAGIC_TAPE, DUMPER_SIZE,
    DUMPER_SIZES, DUMPER_VERSION, DUMPER_VERSIONS, ECKD_BLOCK_SIZE, ECKD_VOL1_BLOCK, FBA_BLOCK_SIZE, FBA_STAGE1B_BLOCKS, FBA_TOOL_BLOCKS,
    MAX_DUMP_VOLUMES, MEM_UPPER_LIMIT_NONE, MVDUMP_PARM_TABLE_SIZE, MVDUMP_SIGN_OFFSET, TAPE_BLK_SIZE,
    TAPE_DUMP_OFFSET, TAPE_HEAD_PSW, TAPE_RECORD_SIZE, TAPE_TOOL_SIZE, AwsTapeHeader, BootInfo, DumperHead,
    EckdDumpParam, FbaDumpParam, MvdumpParmTable, Stage2dumpParmTail, TapeHead, parse_header,
)
from meminfo_abi.tod import tod_text



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
    for a known magic and version only: they give the tool's size, hence where the tail is)."""

    magic: bytes = b""                  # as found; b"" when the image ends before it
    version: int = 0
    mem_limit: int | None = None        # mem_upper_limit (zipl -d DEV,SIZE); None: no limit
    no_compress: bool = False
    mvdump_force: bool = False

    @property
    def name(self) -> str:
        """"XECKD64", "XMULT64", "XDFBA64", "XTAPE64"; "" for an unknown or absent tool."""
        return self.magic.decode() if self.magic in DUMPER_VERSION else ""

    @property
    def size(self) -> int | None:
        """Bytes of the tool image (its version's); None for a tool we do not know."""
        return DUMPER_SIZES.get((self.magic, self.version))


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
        if version not in DUMPER_VERSIONS[magic]:
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
    size = DUMPER_SIZES.get((magic, head.version))
    if size is None:
        return DumpTool(magic, head.version)
    raw = _pread_some(fd, _PARM_TAIL_SIZE, offset + size - _PARM_TAIL_SIZE)
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
        if tool.size is None:                         # the table is behind the tool: where, its version says
            raise BadInputError(f"{path}: XMULT64 dump tool version {tool.version} is not supported (versions "
                                f"{', '.join(map(str, DUMPER_VERSIONS[DUMPER_MAGIC_MV_EXT]))}); its multi-volume "
                                "parameter table cannot be found")
        table = _mv_table(fd, path, tool_offset + tool.size)
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
