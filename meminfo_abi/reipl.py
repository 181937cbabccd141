"""The re-IPL parameter block a dumper finds through lowcore 0xE00/0xE08 (s390-tools' stand-alone dumpers (zipl/boot/stage2dump.c)).

struct ipl_parameter_block: a list header {u32 len, u8 flags, u8 reserved[2], u8 version},
then the block {u32 len, u8 pbt (parameter block type), u8 flags, u16 reserved, ...}.  For CCW
(pbt 2) the device follows: {u8 reserved[2]?, u16 ssid/devno ...}; we declare what the re-IPL
decision needs: the length, the type and, for CCW, the device number.
"""

from __future__ import annotations

from construct import Int8ub, Int16ub, Int32ub, Padding, Struct

IPL_PARM_BLOCK_VERSION = 1
IPL_PBT_FCP, IPL_PBT_SCP_DATA, IPL_PBT_CCW, IPL_PBT_ECKD, IPL_PBT_NVME, IPL_PBT_PV = 0, 1, 2, 3, 4, 5
PBT_NAMES = {0: "FCP", 1: "SCP_DATA", 2: "CCW", 3: "ECKD", 4: "NVME", 5: "PV"}

# DIAGNOSE 308 subcodes
DIAG308_CLEAR_RESET = 0
DIAG308_LOAD_NORMAL_RESET = 1
DIAG308_REL_HSA = 2
DIAG308_LOAD_CLEAR = 3
DIAG308_LOAD_NORMAL_DUMP = 4
DIAG308_SET = 5
DIAG308_STORE = 6
DIAG308_LOAD_NORMAL = 7
DIAG308_NAMES = {3: "LOAD_CLEAR", 4: "LOAD_NORMAL_DUMP", 7: "LOAD_NORMAL", 5: "SET"}

IplPbHdr = Struct(
    "len" / Int32ub,            # of the whole block, header included
    "flags" / Int8ub,
    Padding(2),
    "version" / Int8ub,
)
IplPb0Common = Struct(
    "len" / Int32ub,
    "pbt" / Int8ub,
    "flags" / Int8ub,
    Padding(2),
)
IplPb0Ccw = Struct(
    "len" / Int32ub,
    "pbt" / Int8ub,
    "flags" / Int8ub,
    Padding(2),
    Padding(8),
    Padding(4),
    "reserved" / Int16ub,
    "devno" / Int16ub,          # ssid is in the flags of newer blocks; devno is what a user knows
)
IPL_PB_HDR_SIZE = 8
IPL_PB0_CCW_SIZE = IplPb0Ccw.sizeof()       # 24


def build_ccw_block(devno: int) -> bytes:
    body = IplPb0Ccw.build(dict(len=IPL_PB0_CCW_SIZE, pbt=IPL_PBT_CCW, flags=0, reserved=0, devno=devno))
    return IplPbHdr.build(dict(len=IPL_PB_HDR_SIZE + len(body), flags=0, version=IPL_PARM_BLOCK_VERSION)) + body
