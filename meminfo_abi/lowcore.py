"""s390x lowcore (prefix area) fields that dumps need, and the store-status save area.

arch/s390/include/asm/lowcore.h and the Principles of Operation (prefixing).  Every CPU's prefix register P maps real [0, 8 KiB) to absolute
[P, P + 8 KiB); "absolute lowcore" is absolute [0, 8 KiB).  The 0xE00-0xF00
pointers are a dump-tool ABI and live in the absolute lowcore.
"""

from __future__ import annotations

from construct import Array, Bytes, Int16ub, Int32ub, Int64ub, Padding, Struct

LOWCORE_SIZE = 0x2000            # 8 KiB, two pages, 8 KiB aligned

# Fixed lowcore offsets (names follow the kernel's __LC_* / struct lowcore fields)
LC_IPL_PSW = 0x000               # 8-byte short IPL/restart PSW at absolute 0
LC_IPL_PARMBLOCK_PTR = 0x014     # u32
LC_EXT_CPU_ADDR = 0x084          # u16 cpu address (zgetdump dfi_lowcore_64.cpu_addr)
LC_RESTART_OLD_PSW = 0x120
LC_RESTART_PSW = 0x1A0
LC_IPLDEV = 0xC6C                # u32 IPL subchannel id (s390-tools __LC_IPLDEV)
LC_IPIB = 0xE00                  # u64 phys addr of the re-IPL parameter block
LC_IPIB_CHECKSUM = 0xE08         # u32 CKSM over the ipib (hdr.len bytes)
LC_VMCORE_INFO = 0xE0C           # u64 (unaligned) phys addr of the VMCOREINFO ELF note
LC_OS_INFO = 0xE18               # u64 phys addr of the os_info page == our meminfo block
LC_MEMINFO = LC_OS_INFO          # the seed's name for the same ABI slot
LC_STFLE_FAC_LIST = 0xF00
LC_MCESAD = 0x11B0               # u64 machine-check extended save area designation (VX save area)
LC_VECTOR_SAVE_AREA_ADDR = LC_MCESAD  # older name
LC_SAVE_AREA = 0x1200            # architected store-status area 0x1200-0x13FF
MCESA_ORIGIN_MASK = ~0x3FF & 0xFFFFFFFFFFFFFFFF  # 1 KiB aligned origin, low bits = length char.

# Save area field offsets relative to LC_SAVE_AREA (arch/s390/include/asm/lowcore.h)
SA_FPRS = 0x000
SA_GPRS = 0x080
SA_PSW = 0x100
SA_PREFIX = 0x118
SA_FPC = 0x11C
SA_TODPREG = 0x124
SA_CPU_TIMER = 0x128
SA_CLOCK_COMP = 0x130
SA_LAST_BREAK = 0x138
SA_ACRS = 0x140
SA_CRS = 0x180

PSW = Struct("mask" / Int64ub, "addr" / Int64ub)

# The 512-byte store-status block (SIGP STORE STATUS AT ADDRESS target, or lowcore 0x1200).
SaveArea = Struct(
    "floating_pt_save_area" / Array(16, Int64ub),      # +0x000 FPR0-15
    "gpregs_save_area" / Array(16, Int64ub),           # +0x080 GPR0-15
    "psw_save_area" / PSW,                             # +0x100
    Padding(8),                                        # +0x110
    "prefixreg_save_area" / Int32ub,                   # +0x118
    "fpt_creg_save_area" / Int32ub,                    # +0x11C FPC
    Padding(4),                                        # +0x120
    "tod_progreg_save_area" / Int32ub,                 # +0x124
    "cpu_timer_save_area" / Int64ub,                   # +0x128
    "clock_comp_save_area" / Int64ub,                  # +0x130
    "last_break_save_area" / Int64ub,                  # +0x138
    "access_regs_save_area" / Array(16, Int32ub),      # +0x140 AR0-15
    "cregs_save_area" / Array(16, Int64ub),            # +0x180 CR0-15
)
SAVE_AREA_SIZE = 0x200

# Machine-check extended save area: 32 vector registers of 16 bytes at its origin.
VX_SAVE_AREA_SIZE = 32 * 16
VectorSaveArea = Struct("vector_save_area" / Array(32, Bytes(16)))

# The lowcore fields a dump reader touches, as one declaration (offsets checked in tests).
LowcoreDumpFields = Struct(
    Padding(LC_EXT_CPU_ADDR),
    "ext_cpu_addr" / Int16ub,
    Padding(LC_IPIB - LC_EXT_CPU_ADDR - 2),
    "ipib" / Int64ub,
    "ipib_checksum" / Int32ub,
    "vmcore_info" / Int64ub,
    Padding(LC_OS_INFO - LC_VMCORE_INFO - 8),
    "os_info" / Int64ub,
    Padding(LC_MCESAD - LC_OS_INFO - 8),
    "mcesad" / Int64ub,
    Padding(LC_SAVE_AREA - LC_MCESAD - 8),
    "save_area" / SaveArea,
)
LOWCORE_DUMP_FIELDS_SIZE = LC_SAVE_AREA + SAVE_AREA_SIZE

# Linux's per-CPU stack pointers in the lowcore (struct lowcore, arch/s390/include/asm/lowcore.h,
# 5.x - 6.1 layout): each holds the initial sp of a THREAD_SIZE stack (its top less the first
# frame and a pt_regs), so sp & ~(THREAD_SIZE - 1) is the stack's base.  Later kernels moved
# them; a backtrace uses them only where all five agree on the in-stack offset.
LC_CURRENT_TASK = 0x340
LC_KERNEL_STACK = 0x348             # the current task's stack
LC_ASYNC_STACK = 0x350              # interrupts (IRQ / softirq)
LC_NODAT_STACK = 0x358              # code running with DAT off
LC_RESTART_STACK = 0x360            # the restart interrupt (panic's stop, dump on restart)
LC_MCCK_STACK = 0x368               # machine checks
LC_LINUX_STACKS = (("task", LC_KERNEL_STACK), ("irq", LC_ASYNC_STACK), ("nodat", LC_NODAT_STACK),
                   ("restart", LC_RESTART_STACK), ("mcck", LC_MCCK_STACK))
