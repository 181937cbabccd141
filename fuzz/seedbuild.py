"""Seed inputs, built at run time from the suite's own outputs.

Everything here calls the suite's writers - the synthetic production kernel, the
kexec loader, the ELF writer, the sadump device builder and full-dump writer,
the printk writers - on machines small enough that a seed is a few KiB once
encoded (fuzz/sparse.py keeps only the non-zero pages of a file).  The results
are written once per run into WORK/seeds/<harness>/ and libFuzzer starts from
them (plus the small committed seeds in fuzz/seeds/<harness>/).
"""

from __future__ import annotations

import glob
import hashlib
import os
import struct
import tempfile
from functools import cached_property

MIB = 1 << 20

# the compact memory image (addresses chosen so that everything fits 256 KiB)
COMPACT_SIZE = 0x40000
MEMINFO_AT = 0x3000
NOTE_AT = 0x5000
PRINTK_AT = 0x8000
PRINTK_SIZE = 0x3000
CK_BASE = 0x20000
CK_SIZE = 0x20000


class ByteMemory(bytearray):
    """Absolute storage in a bytearray, with the PhysicalMemory calls the loader makes."""

    @property
    def size(self) -> int:
        return len(self)

    def read(self, addr: int, length: int) -> bytes:
        from dumpkit.errors import BadInputError
        if addr < 0 or length < 0 or addr + length > len(self):
            raise BadInputError(f"0x{addr:x}+0x{length:x} outside memory")
        return bytes(self[addr:addr + length])

    def view(self, addr: int, length: int) -> memoryview:
        return memoryview(self)[addr:addr + length]

    def write(self, addr: int, data) -> None:
        self[addr:addr + len(data)] = data

    def fill(self, addr: int, length: int, byte: int = 0) -> None:
        self[addr:addr + length] = bytes([byte]) * length

    def flush(self) -> None:
        pass

    def punch_hole(self, addr: int, length: int) -> None:
        self.fill(addr, length, 0)

    def data_ranges(self, start: int = 0, end: int | None = None):
        end = len(self) if end is None else min(end, len(self))
        if start < end:
            yield start, end

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self[addr:addr + 8], "big")

    def write_u64(self, addr: int, value: int) -> None:
        self[addr:addr + 8] = value.to_bytes(8, "big")


class _MiniMachine:
    """Just enough of s390_machine.Machine for s390_machine.kexec.kexec_load."""

    def __init__(self, memory: ByteMemory, path: str):
        from meminfo_abi.cpu import CpuRegs
        from s390_machine.state import Crashkernel, MachineState
        self.memory = memory
        self.path = path
        self.state = MachineState(memory_size=memory.size, cpus=[CpuRegs(address=0, prefix=0)],
                                  crashkernel=Crashkernel(CK_BASE, CK_SIZE))

    def save_state(self) -> None:
        pass


def _records(n: int = 7, long_text: bool = False) -> list[dict]:
    out = []
    for i in range(n):
        text = f"fuzz seed record {i}: s390-dumptools printk"
        if long_text and i % 3 == 0:
            text += " " + "x" * 200 + "\nsecond line"
        out.append(dict(ts_nsec=i * 1_250_000, level=i % 8, facility=i % 3, text=text,
                        caller_id=(0x80000000 | i) if i % 2 else i))
    return out


class SeedContext:
    """Shared artifacts, built on first use in `workdir`."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)

    def tmp(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    # -- printk and VMCOREINFO -------------------------------------------------------------
    def printk_image(self, layout: str, records: list[dict], base: int = PRINTK_AT, **kw) -> tuple[dict, ByteMemory]:
        from s390_machine.printk import build_legacy_logbuf, build_ringbuffer
        mem = ByteMemory(COMPACT_SIZE)
        fn = build_ringbuffer if layout == "ringbuffer" else build_legacy_logbuf
        keys = fn(mem.write, base, PRINTK_SIZE, records, **kw)
        return keys, mem

    def vmcoreinfo_text(self, printk_keys: dict | None = None, crashtime: bool = True) -> bytes:
        from s390_machine.synth import SynthOptions, build_vmcoreinfo
        vi = build_vmcoreinfo(SynthOptions(memory_size=64 * MIB), printk_keys or {})
        vi.set("BUILD-ID", "0123456789abcdef0123456789abcdef01234567")
        vi.set("CONFIG_KEXEC", "y")
        if crashtime:
            vi.set("CRASHTIME", "1700000000")
        return vi.to_bytes()

    # -- the compact machine: meminfo, kexec segments, VMCOREINFO note ------------------------
    @cached_property
    def compact(self) -> ByteMemory:
        """256 KiB of absolute storage with lowcore pointers, meminfo, the VMCOREINFO note, a
        printk ring buffer and a kdump loaded by the real loader (kdump_intact holds)."""
        from meminfo_abi.elfnotes import vmcoreinfo_note
        from meminfo_abi.lowcore import LC_OS_INFO, LC_VMCORE_INFO
        from meminfo_abi.meminfo import (
            OS_INFO_VMCOREINFO, SEGMENT_KIND_INITRD, SEGMENT_KIND_KERNEL, SEGMENT_KIND_PURGATORY, MemInfo,
            check_meminfo,
        )
        from meminfo_abi.kexec import KEXEC_ARCH_S390, KEXEC_ON_CRASH, LoadSegment
        from s390_machine.kexec import kexec_load
        keys, mem = self.printk_image("ringbuffer", _records(), count_bits=3, size_bits=10)
        text = self.vmcoreinfo_text(keys)
        note = vmcoreinfo_note(text)
        mem.write(NOTE_AT, note)
        mem.write_u64(LC_VMCORE_INFO, NOTE_AT)
        mi = MemInfo(crashkernel_addr=CK_BASE, crashkernel_size=CK_SIZE)
        mi.set_data_entry(OS_INFO_VMCOREINFO, NOTE_AT + 24, text)
        mem.write(MEMINFO_AT, mi.to_bytes())
        mem.write_u64(LC_OS_INFO, MEMINFO_AT)
        kernel = bytes(hashlib.sha256(b"k%d" % i).digest()[i % 32] for i in range(0x1800))
        initrd = self._file("initrd.bin", bytes(range(256)) * 6)
        segs = [
            LoadSegment(mem=CK_BASE + 0x3000, memsz=0x1000, kind=SEGMENT_KIND_PURGATORY, bufsz=0x200,
                        data=b"\x07\x07" * 0x100, name="purgatory"),
            LoadSegment(mem=CK_BASE + 0x10000, memsz=0x2000, kind=SEGMENT_KIND_KERNEL, bufsz=len(kernel),
                        data=kernel, name="kernel"),
            LoadSegment(mem=CK_BASE + 0x18000, memsz=0x1000, kind=SEGMENT_KIND_INITRD, bufsz=os.path.getsize(initrd),
                        path=initrd, name="initrd"),
        ]
        machine = _MiniMachine(mem, self.workdir)
        kexec_load(machine, CK_BASE + 0x10010, segs, KEXEC_ON_CRASH | KEXEC_ARCH_S390)
        rep = check_meminfo(mem)
        assert rep.kdump_intact, rep.reason
        return mem

    def _file(self, name: str, data: bytes) -> str:
        path = self.tmp(name)
        with open(path, "wb") as fh:
            fh.write(data)
        return path

    # -- dumps ---------------------------------------------------------------------------------
    def dump_model(self, *, gaps: bool = False, vector: bool = True, vmcoreinfo: bool = True, cpus: int = 2):
        from s390_machine.synth import cpu_registers
        from vmcore.model import KIND_ZERO, BytesSource, Dump, DumpAttrs, MemChunk
        mem = bytes(self.compact)
        if gaps:
            chunks = [MemChunk(0, 0x10000, BytesSource(mem[:0x10000]), "ram"),
                      MemChunk(0x10000, 0x10000, None, KIND_ZERO),
                      MemChunk(0x20000, 0x20000, BytesSource(mem[0x20000:]), "ram")]
        else:
            chunks = [MemChunk(0, len(mem), BytesSource(mem), "ram")]
        regs = []
        for i in range(cpus):
            r = cpu_registers(i, vector)
            r.prefix = 0x2000 * (i + 1) if i else 0x2000
            regs.append(r)
        attrs = DumpAttrs(format="seed")
        if vmcoreinfo:
            attrs.set_vmcoreinfo(self.vmcoreinfo_text(), "seed")
        return Dump(chunks, regs, attrs)

    def elf_file(self, name: str, **kw) -> str:
        from vmcore.formats.elf import write_elf
        todpreg = kw.pop("todpreg_size", 4)
        path = self.tmp(name)
        with self.dump_model(**kw) as d:
            write_elf(d, path, todpreg_size=todpreg)
        return path

    def kdump_file(self, name: str, **opts) -> str:
        from vmcore.formats import write_dump
        path = self.tmp(name)
        with self.dump_model(gaps=opts.pop("gaps", False)) as d:
            write_dump(d, path, "kdump", **opts)
        return path

    # -- dump devices ---------------------------------------------------------------------------
    def device(self, name: str, type_: str = "eckd", size: int = 8 * MIB, **kw) -> str:
        from zipl_sadump.device import build_device
        path = self.tmp(name)
        build_device(path, type_, size, **kw)
        return path

    def mv_devices(self, prefix: str, n: int = 2, size: int = 4 * MIB) -> list[str]:
        from zipl_sadump.device import build_multi_volume
        paths = [self.tmp(f"{prefix}{i}") for i in range(n)]
        build_multi_volume(paths, size)
        return paths

    @cached_property
    def dump_memory(self) -> ByteMemory:
        """4 MiB: the compact machine in MiB 0, a few pages of data in MiB 2 and 3."""
        mem = ByteMemory(4 * MIB)
        mem[:COMPACT_SIZE] = self.compact
        for mib, fill in ((2, b"S390PAGE"), (3, b"\x5a")):
            for page in range(0, 3):
                off = mib * MIB + page * 4096 * 17
                mem[off:off + 64] = (fill * 64)[:64]
        return mem

    def dumped_device(self, name: str, type_: str = "eckd", compress: bool = True, size: int = 8 * MIB,
                      memory=None) -> list[str]:
        from zipl_sadump.fulldump import write_full_dump
        paths = self.mv_devices(name, 2, size) if type_ == "mv" else [self.device(name, type_, size)]
        mem = memory if memory is not None else self.dump_memory
        if memory is None and type_ == "tape":      # every 32 KiB block has a header: keep it short
            mem = ByteMemory(MIB)
            mem[:COMPACT_SIZE] = self.compact
        write_full_dump(paths, mem, [0x2000, 0x4000], 2, tod=0xD000000000000000, cpu_id=0xFF00000390600000,
                        compress=compress, tod_end=lambda: 0xD000000100000000, workers=1)
        return paths

    def extracted(self, name: str, devices: list[str]) -> str:
        from zipl_sadump.extract import extract_dump
        path = self.tmp(name)
        extract_dump(devices, path)
        return path

    # -- kernel images ----------------------------------------------------------------------------
    def kernel_head(self) -> bytes:
        """The head of a kernel image as the synthetic production kernel lays it out in memory,
        plus a version string the parameter area points to."""
        from meminfo_abi.parmarea import HEAD_END, PARMAREA
        from s390_machine.synth import SynthOptions, synthesize
        from s390_machine.memory import PhysicalMemory
        path = self.tmp("kernelmem.img")
        with open(path, "wb") as fh:
            fh.truncate(64 * MIB)
        with PhysicalMemory(path, writable=True) as mem:
            synthesize(mem, SynthOptions(memory_size=64 * MIB, fill=0.0, crashkernel_size=16 * MIB))
            head = bytearray(mem.read(0, HEAD_END + 0x100))
        os.unlink(path)
        version = b"6.1.0-fuzz (seed@s390-dumptools) #1 SMP\0"
        at = HEAD_END - 0x200
        head[at:at + len(version)] = version
        struct.pack_into(">Q", head, PARMAREA + 0x28, at)
        return bytes(head)

    def debian_kernel_head(self) -> bytes | None:
        """The first 0x13000 bytes of the cached Debian s390x kernel, if a test run fetched it."""
        cache = os.environ.get("S390_DUMPTOOLS_CACHE", os.path.expanduser("~/.cache/s390-dumptools"))
        found = sorted(glob.glob(os.path.join(cache, "root", "*", "boot", "vmlinuz-*")))
        if not found:
            return None
        with open(found[0], "rb") as fh:
            return fh.read(0x13000)

    # -- machine state -----------------------------------------------------------------------------
    @cached_property
    def machine_dir(self) -> str:
        from s390_machine.ops import create_machine
        from s390_machine.synth import SynthOptions
        path = self.tmp("machine")
        create_machine(path, SynthOptions(memory_size=64 * MIB, cpus=3, crashkernel_size=16 * MIB, fill=0.0))
        return path

    def panicked_state(self) -> bytes:
        from s390_machine.crash import panic
        from s390_machine.machine import Machine
        src = self.machine_dir
        dst = tempfile.mkdtemp(dir=self.workdir)
        from dumpkit.fileio import sparse_copy
        for name in os.listdir(src):
            with open(os.path.join(dst, name), "wb") as fh:
                sparse_copy(os.path.join(src, name), fh)
        with Machine.open(dst, "write") as m:
            panic(m, 1, "seed panic")
        with open(os.path.join(dst, "machine.json"), "rb") as fh:
            return fh.read()
