"""Synthesize a production s390x system in a memory image, as a booted Linux leaves it.

Physical layout of the synthetic kernel (identity mapped: virtual == physical,
KERNELOFFSET=0, as s390 kernels before 6.10 without KASLR):

  0x000000-0x001FFF  absolute lowcore: IPL PSW, 0xE0C -> VMCOREINFO note, 0xE18 -> meminfo
  0x010000-0x0103FF  kernel image head: entry 0x10000, "S390EP" at 0x10008, kdump entry 0x10010
  0x010400-0x0114FF  parameter area (command line at 0x10480)
  0x100000-0x3FFFFF  kernel text (_stext) - pseudo-random, deterministic
  0x400000           meminfo (os_info) page
  0x401000           VMCOREINFO ELF note (header + text, 8 KiB buffer)
  0x403000           init_uts_ns
  0x404000           lowcore_ptr[NR_CPUS], high_memory
  0x405000           re-IPL block and flags
  0x406000           node_online_map, vmap_area_list, mem_map and the objects struct pages point at
  0x408000-0x40BFFF  swapper_pg_dir (region-third table; region-second from ~3.4 TiB on)
  0x40C000-0x40E1FF  contig_page_data (struct pglist_data: zones, NR_FREE_PAGES)
  0x410000-0x48FFFF  per-CPU lowcores (8 KiB each, the CPUs' prefixes)
  0x490000-0x4AFFFF  per-CPU machine-check extended save areas (vector registers)
  0x500000-0x5FFFFF  printk ring buffer (or legacy log_buf)
  [crash base, +size) reserved, left zero until kexec-s390 loads kdump
  top of storage     the memory model (s390_machine/mm.py), below a top crashkernel: mem_section
                     roots (SYMBOL(mem_section)), page and segment tables, shared and own struct
                     page frames of the vmemmap (virtual 0x37200000000 on a 3-level kernel)
  elsewhere          recognisable data: each non-zero page starts "S390PAGE" + its address; its
                     struct pages give each page a class (--pages: free, page cache, anonymous,
                     slab, hugetlb, offline, kernel data), the free storage between is buddy
                     blocks, a few MiBs after data MiBs are in-use zero pages
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from meminfo_abi.cpu import CpuRegs
from meminfo_abi.elfnotes import vmcoreinfo_note
from dumpkit.errors import BadInputError
from meminfo_abi.lowcore import (
    LC_EXT_CPU_ADDR, LC_IPIB, LC_IPIB_CHECKSUM, LC_IPL_PSW, LC_MCESAD, LC_OS_INFO, LC_RESTART_PSW, LC_VMCORE_INFO, LOWCORE_SIZE,
)
from meminfo_abi.checksum import csum_partial
from meminfo_abi.meminfo import (
    OS_INFO_FLAG_REIPL_CLEAR, OS_INFO_FLAGS_ENTRY, OS_INFO_REIPL_BLOCK, OS_INFO_VMCOREINFO, MemInfo,
)
from meminfo_abi.reipl import build_ccw_block
from meminfo_abi.parmarea import (
    EP_OFFSET, EP_STRING, IMAGE_ENTRY, PARM_COMMAND_LINE, PARM_MAX_COMMAND_LINE_SIZE,
)
from meminfo_abi.vmcoreinfo import VmcoreInfo
from s390_machine import mm
from s390_machine.memory import PhysicalMemory
from s390_machine.printk import build_legacy_logbuf, build_ringbuffer
from s390_machine.state import Crashkernel, MachineState

MIB = 1 << 20
KERNEL_TEXT = 0x100000
KERNEL_TEXT_SIZE = 0x300000
MEMINFO_ADDR = 0x400000
VMCOREINFO_NOTE_ADDR = 0x401000
VMCOREINFO_NOTE_AREA = 0x2000
INIT_UTS_NS = 0x403000
LOWCORE_PTR = 0x404000
HIGH_MEMORY_VAR = 0x404800
REIPL_BLOCK = 0x405000               # the re-IPL parameter block (CCW) the kernel keeps
REIPL_FLAGS = 0x405800               # the u64 behind meminfo's FLAGS entry
SWAPPER_PG_DIR = 0x408000            # the kernel's top-level page table (16 KiB region table)
LOWCORES = 0x410000
MCESA_AREAS = 0x490000
MCESA_STRIDE = 0x800
PRINTK_AREA = 0x500000
PRINTK_AREA_SIZE = 0x100000
KERNEL_END = 0x800000                 # nothing of the crashkernel may lie below this
NR_CPUS = 64
MIN_MEMORY = 64 * MIB
COMMAND_LINE_SIZE = 4096
PAGE_STAMP = b"S390PAGE"

KERNEL_PSW_MASK = 0x0704C00180000000  # DAT, I/O, external, key 0, machine check, EA+BA
IPL_PSW = 0x0008000080010000          # short PSW to the kernel entry


@dataclass
class SynthOptions:
    memory_size: int
    cpus: int = 2
    crashkernel_size: int = 0
    crashkernel_base: int | None = None
    release: str = "6.1.0-s390dumptools"
    command_line: str = "root=/dev/vda1 console=ttysclp0 crashkernel={ck}"
    fill: float = 1 / 32              # fraction of the free MiBs holding data
    printk: str = "ringbuffer"         # ringbuffer (5.10+) | legacy (3.5-5.9)
    vector: bool = True
    seed: int = 390
    reipl_devno: int | None = 0x0000     # CCW re-IPL device, None: no re-IPL block
    reipl_clear: bool = False            # the configured re-IPL has clear=1 (meminfo FLAGS REIPL_CLEAR)
    pages: mm.Populations = field(default_factory=mm.Populations)   # page classes of the data MiBs


def validate(opts: SynthOptions) -> Crashkernel | None:
    """Every check before anything is written; returns the crashkernel reservation."""
    m = opts.memory_size
    if m % MIB:
        raise BadInputError(f"memory size {m} is not a multiple of 1 MiB")
    if m < MIN_MEMORY:
        raise BadInputError(f"memory size {m >> 20} MiB is below the minimum of {MIN_MEMORY >> 20} MiB")
    if m > 1 << 56:
        raise BadInputError(f"memory size {m} is larger than any s390x machine")
    if not 1 <= opts.cpus <= NR_CPUS:
        raise BadInputError(f"cpu count {opts.cpus} is outside 1..{NR_CPUS}")
    if opts.printk not in ("ringbuffer", "legacy"):
        raise BadInputError(f"printk layout {opts.printk!r} is not ringbuffer or legacy")
    if not 0.0 <= opts.fill <= 1.0:
        raise BadInputError(f"fill fraction {opts.fill} is outside 0..1")
    opts.pages.validate()
    size, base = opts.crashkernel_size, opts.crashkernel_base
    if size == 0:
        if base is not None:
            raise BadInputError("crashkernel base given without a size")
        return None
    if size % MIB:
        raise BadInputError(f"crashkernel size 0x{size:x} is not a multiple of 1 MiB")
    if size > m:
        raise BadInputError(f"crashkernel size 0x{size:x} lies outside memory (0x{m:x} bytes)")
    if base is None:  # the kernel's memblock allocator takes the top of memory
        base = (m - size) // MIB * MIB
    if base % MIB:
        raise BadInputError(f"crashkernel base 0x{base:x} is not 1 MiB aligned")
    if base + size > m:
        raise BadInputError(
            f"crashkernel 0x{base:x}-0x{base + size - 1:x} lies outside memory (0x{m:x} bytes)")
    if base < KERNEL_END:
        raise BadInputError(
            f"crashkernel at 0x{base:x} overlaps the lowcore and kernel image (below 0x{KERNEL_END:x})")
    if base < size:
        raise BadInputError(
            f"crashkernel at 0x{base:x} overlaps [0, 0x{size:x}), the area kdump swaps it with")
    return Crashkernel(base, size)


def cpu_registers(index: int, vector: bool) -> CpuRegs:
    """Plausible, distinct register contents for CPU `index` of a running kernel."""
    rnd = random.Random(0x5390 + index)
    prefix = LOWCORES + index * LOWCORE_SIZE
    regs = CpuRegs(
        address=index,
        prefix=prefix,
        psw_mask=KERNEL_PSW_MASK,
        psw_addr=KERNEL_TEXT + 0x1000 + index * 0x40,
        gprs=[(0x0000_0000_0000_0000 | (index << 48) | (r << 40) | rnd.getrandbits(32)) for r in range(16)],
        acrs=[rnd.getrandbits(32) if r < 2 else 0 for r in range(16)],
        crs=[0x0000000014066A54 + index, 0x00000000000101C7, 0, 0, 0, 0, 0, 0,
             0, 0, 0, 0, 0, 0x00000000000101C7, 0x00000000DB000000, 0],
        fprs=[rnd.getrandbits(64) for _ in range(16)],
        fpc=0x00080000 if index % 2 else 0,
        cpu_timer=0x7FFFFFFF_00000000 - index * 0x1000_0000,
        clock_comparator=0x00DC_0000_0000_0000 + index * 0x100,
        todpreg=0,
        last_break=KERNEL_TEXT + 0x2000 + index * 0x10,
    )
    if vector:  # V0-V15 bits 0-63 are the FPRs (z/Architecture): keep them consistent
        low, high = rnd.randbytes(128), rnd.randbytes(256)
        regs.vxrs = CpuRegs.vxrs_from_parts(regs.fprs, low, high)
    return regs


def boot_log(opts: SynthOptions, ck: Crashkernel | None) -> list[dict]:
    lines = [
        f"Linux version {opts.release} (s390-dumptools synthetic) #1 SMP",
        "setup: Linux is running natively in 64-bit mode",
        f"setup: The maximum memory size is {opts.memory_size >> 20}MB",
    ]
    if ck:
        lines.append(f"setup: Reserving {ck.size >> 20}MB of memory at {ck.base >> 20}MB for crashkernel "
                     f"(System RAM: {opts.memory_size >> 20}MB)")
    lines += [
        f"Kernel command line: {command_line(opts, ck)}",
        f"smp: Brought up 1 node, {opts.cpus} CPUs",
        "s390-dumptools: synthetic production system is up",
    ]
    recs = []
    for i, text in enumerate(lines):
        recs.append(dict(ts_nsec=i * 1_250_000 + (0 if i == 0 else 40_000_000), level=6 if i else 5,
                         facility=0, text=text, caller_id=0x80000000 if i < 3 else 1))
    return recs


def command_line(opts: SynthOptions, ck: Crashkernel | None) -> str:
    spec = "" if ck is None else f"{ck.size >> 20}M@{ck.base >> 20}M"
    line = opts.command_line.format(ck=spec)
    return line if ck else line.replace(" crashkernel=", "").strip()


def build_vmcoreinfo(opts: SynthOptions, printk_keys: dict[str, str], mem_section: int | None = None) -> VmcoreInfo:
    """The lines a 6.1 s390x kernel writes, in its order (kernel/crash_core.c, then the printk,
    page-flag and arch parts); mem_section: the SPARSEMEM root array (default: where
    synthesize puts it)."""
    if mem_section is None:
        mem_section = memory_model_area(opts, validate(opts))[0]
    vi = VmcoreInfo()
    vi.set("OSRELEASE", opts.release)
    vi.set("PAGESIZE", "4096")
    vi.set_symbol("init_uts_ns", INIT_UTS_NS)
    vi.set_offset("uts_namespace.name", 0)
    vi.set_symbol("node_online_map", mm.NODE_ONLINE_MAP)
    vi.set_symbol("swapper_pg_dir", SWAPPER_PG_DIR)
    vi.set_symbol("_stext", KERNEL_TEXT)
    mm.vmcoreinfo_keys(vi, mem_section, "layout")
    for key, value in printk_keys.items():
        vi.set(key, value)
    mm.vmcoreinfo_keys(vi, mem_section, "numbers")
    vi.set_symbol("lowcore_ptr", LOWCORE_PTR)
    vi.set_symbol("high_memory", HIGH_MEMORY_VAR)
    vi.set_length("lowcore_ptr", NR_CPUS)
    vi.set("KERNELOFFSET", "0")
    return vi


def write_vmcoreinfo(mem: PhysicalMemory, vi: VmcoreInfo) -> tuple[int, int]:
    """Write the VMCOREINFO note; point 0xE0C at it.  Returns (text address, text length)."""
    text = vi.to_bytes()
    note = vmcoreinfo_note(text)
    if len(note) > VMCOREINFO_NOTE_AREA:
        raise BadInputError(f"VMCOREINFO note of {len(note)} bytes does not fit its 8 KiB buffer")
    mem.fill(VMCOREINFO_NOTE_ADDR, VMCOREINFO_NOTE_AREA, 0)
    mem.write(VMCOREINFO_NOTE_ADDR, note)
    mem.write_u64(LC_VMCORE_INFO, VMCOREINFO_NOTE_ADDR)
    return VMCOREINFO_NOTE_ADDR + 24, len(text)   # 12-byte Nhdr + "VMCOREINFO\0" padded to 12


def vmcoreinfo_entry(mem: PhysicalMemory, text_addr: int, text_len: int) -> bytes:
    """What meminfo entry 0 covers: the note's descriptor in whole 4-byte words, as the note
    pads it with NULs, so every reader's checksum agrees (libkdumpfile sums a partial last word
    differently from CKSM, which pads it with zeros on the right)."""
    return mem.read(text_addr, (text_len + 3) & ~3)


def write_printk(mem: PhysicalMemory, layout: str, records: list[dict]) -> dict[str, str]:
    """(Re)write the synthetic kernel's log buffer; the same layout gives the same symbols."""
    mem.fill(PRINTK_AREA, PRINTK_AREA_SIZE, 0)
    if layout == "ringbuffer":
        return build_ringbuffer(mem.write, PRINTK_AREA, PRINTK_AREA_SIZE, records)
    return build_legacy_logbuf(mem.write, PRINTK_AREA, PRINTK_AREA_SIZE, records)


def write_meminfo(mem: PhysicalMemory, mi: MemInfo, addr: int = MEMINFO_ADDR) -> None:
    mem.write(addr, mi.to_bytes())
    mem.write_u64(LC_OS_INFO, addr)


def _utsname(opts: SynthOptions) -> bytes:
    fields = ["Linux", "s390-sim", opts.release, "#1 SMP s390-dumptools", "s390x", "(none)"]
    return b"".join(f.encode()[:64].ljust(65, b"\0") for f in fields)


def _free_mibs(opts: SynthOptions, ck: Crashkernel | None) -> list[tuple[int, int]]:
    """MiB ranges outside the kernel image and the crashkernel."""
    first, total = KERNEL_END // MIB, opts.memory_size // MIB
    free = [(first, total)]
    if ck:
        free = [(a, b) for a, b in ((first, ck.base // MIB), (ck.end // MIB, total)) if b > a]
    return free


def memory_model_area(opts: SynthOptions, ck: Crashkernel | None) -> tuple[int, int]:
    """(base, size) of the storage the kernel's memory map takes (page tables, mem_section,
    struct pages): the top of storage below a top crashkernel, sized for the data MiBs."""
    count_free = sum(b - a for a, b in _free_mibs(opts, ck))
    n_data = int(count_free * opts.fill)
    size = mm.area_size(opts.memory_size, n_data, int(n_data * opts.pages.zero) + 1, 4)
    base = mm.place_area(opts.memory_size, KERNEL_END, None if ck is None else (ck.base, ck.end), size)
    return base, size


def data_mibs(opts: SynthOptions, ck: Crashkernel | None) -> list[int]:
    """The MiB numbers that hold recognisable data: every (1/fill)-th free MiB, spread evenly
    over memory outside kernel, crashkernel and the kernel's memory map (computed, not scanned:
    a 16 TiB machine has 16 million MiBs)."""
    base, size = memory_model_area(opts, ck)
    lo, hi = base // MIB, (base + size) // MIB
    free = []
    for a, b in _free_mibs(opts, ck):
        free += [(x, y) for x, y in ((a, min(b, lo)), (max(a, hi), b)) if y > x]
    count_free = sum(b - a for a, b in free)
    want = int(count_free * opts.fill)
    out = []
    for j in range(want):
        k = int(j / opts.fill)              # the j-th chosen free MiB
        for a, b in free:
            if k < b - a:
                out.append(a + k)
                break
            k -= b - a
    return out


def _template(seed: int) -> bytes:
    """1 MiB of page bodies: half random, half text-like, so pages compress like real ones."""
    rnd = random.Random(seed)
    body = bytearray(rnd.randbytes(MIB))
    text = (b"s390-dumptools synthetic page payload; " * 64)[:2048]
    for page in range(0, MIB, 4096):
        body[page + 2048 : page + 4096] = text
    return bytes(body)


def fill_data(mem: PhysicalMemory, mibs: list[int], seed: int, progress=None) -> None:
    template = _template(seed)
    buf = bytearray(template)
    stamp = struct.Struct(">8sQ")
    # No early writeback here (unlike dump writers and kexec loads): these MiBs are spread over
    # the whole image, and sync_file_range on such scattered ranges stalls the writer (create of
    # 1 TiB / 8 GiB: 10-12 s without, 13-20 s with); the kernel's own writeback does better.
    for mib in mibs:
        base = mib * MIB
        for off in range(0, MIB, 4096):
            stamp.pack_into(buf, off, PAGE_STAMP, base + off)
        mem.write(base, buf)
        if progress:
            progress(MIB)


def synthesize(mem: PhysicalMemory, opts: SynthOptions, progress=None) -> MachineState:
    """Write a booted production system into `mem` (which must be all zero); return its state."""
    ck = validate(opts)
    rnd = random.Random(opts.seed)

    # absolute lowcore
    mem.write_u64(LC_IPL_PSW, IPL_PSW)
    # kernel image head and parameter area
    mem.write(IMAGE_ENTRY, bytes.fromhex("a7f40008") + bytes(4))   # j to 0x10010+ (entry code)
    mem.write(EP_OFFSET, EP_STRING + b"\x00\x01")
    mem.write(IMAGE_ENTRY + 0x10, bytes.fromhex("a7f40004") + bytes(4))  # kdump entry
    mem.write_u64(PARM_MAX_COMMAND_LINE_SIZE, COMMAND_LINE_SIZE)
    cmdline = command_line(opts, ck).encode()
    mem.write(PARM_COMMAND_LINE, cmdline + b"\0")
    # kernel text
    mem.write(KERNEL_TEXT, rnd.randbytes(KERNEL_TEXT_SIZE))
    # uts name, high_memory
    mem.write(INIT_UTS_NS, _utsname(opts))
    mem.write_u64(HIGH_MEMORY_VAR, opts.memory_size)

    asce = mm.kernel_asce(opts.memory_size, SWAPPER_PG_DIR)
    # CPUs: lowcore in each prefix area, lowcore_ptr[], machine-check extended save areas
    cpus = []
    for i in range(opts.cpus):
        regs = cpu_registers(i, opts.vector)
        regs.crs[1] = regs.crs[13] = asce      # primary and home space: the kernel's ASCE
        cpus.append(regs)
        lc = regs.prefix
        mem.write_u16(lc + LC_EXT_CPU_ADDR, regs.address)
        mem.write(lc + LC_RESTART_PSW, struct.pack(">QQ", 0x0000000180000000, KERNEL_TEXT + 0x800))
        if opts.vector:
            mem.write_u64(lc + LC_MCESAD, MCESA_AREAS + i * MCESA_STRIDE)
        mem.write_u64(LOWCORE_PTR + 8 * i, lc)

    # kernel log
    records = boot_log(opts, ck)
    printk_keys = write_printk(mem, opts.printk, records)

    # VMCOREINFO note and meminfo
    # the memory model: page tables, mem_section, struct pages of every class
    area = memory_model_area(opts, ck)
    data = data_mibs(opts, ck)
    model = mm.build(mem, opts.memory_size, KERNEL_END, None if ck is None else (ck.base, ck.end), area,
                     data, opts.pages, opts.seed, SWAPPER_PG_DIR)

    vi = build_vmcoreinfo(opts, printk_keys, model.mem_section)
    text_addr, text_len = write_vmcoreinfo(mem, vi)
    mi = MemInfo()
    if ck:
        mi.crashkernel_addr, mi.crashkernel_size = ck.base, ck.size
    mi.set_data_entry(OS_INFO_VMCOREINFO, text_addr, vmcoreinfo_entry(mem, text_addr, text_len))
    if opts.reipl_devno is not None:   # lowcore 0xE00/0xE08 and meminfo REIPL_BLOCK, as ipl.c sets them
        block = build_ccw_block(opts.reipl_devno)
        mem.write(REIPL_BLOCK, block)
        mem.write_u64(LC_IPIB, REIPL_BLOCK)
        mem.write_u32(LC_IPIB_CHECKSUM, csum_partial(block))
        mi.set_data_entry(OS_INFO_REIPL_BLOCK, REIPL_BLOCK, block)
    if opts.reipl_clear:
        flags = OS_INFO_FLAG_REIPL_CLEAR.to_bytes(8, "big")
        mem.write(REIPL_FLAGS, flags)
        mi.set_data_entry(OS_INFO_FLAGS_ENTRY, REIPL_FLAGS, flags)
    write_meminfo(mem, mi)

    # recognisable data everywhere else
    fill_data(mem, data, opts.seed, progress)

    state = MachineState(memory_size=opts.memory_size, cpus=cpus, ipl_cpu=0, crashkernel=ck)
    state.kernel = {
        "origin": "synthetic",
        "release": opts.release,
        "command_line": cmdline.decode(),
        "printk": opts.printk,
        "printk_log": records,          # what this synthetic kernel logged (to append at panic)
        "vmcoreinfo_note": f"0x{VMCOREINFO_NOTE_ADDR:x}",
        "meminfo": f"0x{MEMINFO_ADDR:x}",
        "memory_model": {"vmemmap": f"0x{model.vmemmap:x}", "mem_section": f"0x{model.mem_section:x}",
                         "swapper_pg_dir": f"0x{SWAPPER_PG_DIR:x}", "asce": f"0x{model.asce:x}",
                         "page_table_levels": model.levels, "area": [f"0x{area[0]:x}", f"0x{area[1]:x}"],
                         "populations": opts.pages.to_spec(), "pages": model.page_classes},
    }
    state.record("created", f"{opts.memory_size >> 20} MiB, {opts.cpus} CPUs, crashkernel "
                 + ("none" if ck is None else f"{ck.size >> 20}M@{ck.base >> 20}M"))
    return state
