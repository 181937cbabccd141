"""The kdump kernel a dump device carries (ours; the seed's "load the kdump kernel at boot time
into the crashkernel memory", realised by zipl as the stand-alone kdump boot entry).

On an ECKD dump device image the section sits after the dump partition (behind the boot
record's blk_end, so the dumper never writes there): the kernel image, the initrd, each
4 KiB aligned, and in the image's last 4 KiB a component table:

  0x000 magic "zKDUMP01"   0x008 version u32 (1)   0x00C flags u32
  0x010 kernel_offset u64  0x018 kernel_size u64   0x020 initrd_offset u64   0x028 initrd_size u64
  0x030 kernel_sha256[32]  0x050 initrd_sha256[32]  0x070 cmdline_len u32   0x074 reserved u32
  0x078 cmdline[3972] (NUL padded)                  0xFFC table_csum u32 (CKSM over 0x000..0xFFB)
"""

from __future__ import annotations

from construct import Bytes, Const, Int32ub, Int64ub, Struct

KDUMP_DEV_MAGIC = b"zKDUMP01"
KDUMP_DEV_VERSION = 1
KDUMP_DEV_TABLE_SIZE = 4096
KDUMP_DEV_CMDLINE_MAX = 3972

KdumpDeviceTable = Struct(
    "magic" / Const(KDUMP_DEV_MAGIC),
    "version" / Int32ub,
    "flags" / Int32ub,
    "kernel_offset" / Int64ub,
    "kernel_size" / Int64ub,
    "initrd_offset" / Int64ub,
    "initrd_size" / Int64ub,
    "kernel_sha256" / Bytes(32),
    "initrd_sha256" / Bytes(32),
    "cmdline_len" / Int32ub,
    "reserved" / Int32ub,
    "cmdline" / Bytes(KDUMP_DEV_CMDLINE_MAX),
    "table_csum" / Int32ub,
)
