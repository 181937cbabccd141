"""vmcore.formats.elf (+ registry, raw reader): s390x ELF core dumps written and read.

Peers on the other side: eu-readelf and readelf (headers, notes), gdb-multiarch
(registers from the core), libkdumpfile and drgn (physical memory), and a
QEMU 7.2-style dump-guest-memory file built here with QEMU's quirks.
"""

from __future__ import annotations

import os
import random
import re
import resource
import shutil
import subprocess
import tempfile
from dataclasses import asdict

import pytest

from tests.conftest import exercise_dump, peer_drgn, peer_kdumpfile
from construct import Int32ul, Int64ul, Struct
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meminfo_abi import elfnotes as en
from meminfo_abi.cpu import CpuRegs
from meminfo_abi.elfcore import (
    EHDR_SIZE, PHDR_SIZE, PN_XNUM, PT_LOAD, PT_NOTE, Elf64_Ehdr, Elf64_Shdr, phdr_bytes, read_core_headers,
)
from dumpkit.errors import BadInputError, DumpToolError, IncompleteDumpError
from meminfo_abi.lowcore import LC_OS_INFO, LC_VMCORE_INFO
from dumpkit.fileio import sparse_copy
from s390_machine.memory import PhysicalMemory
from s390_machine.state import load_state
from vmcore.formats import READERS, WRITERS, open_dump, probe_format, write_dump
from vmcore.formats.elf import plan_layout
from vmcore.model import BytesSource, Dump, DumpAttrs, MappedSource, MemChunk, MemoryImageSource, page_digests

MiB, GiB = 1 << 20, 1 << 30


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------

def kdump_like(machine: str) -> Dump:
    """The machine's memory as the kdump kernel describes it: RAM minus the crashkernel,
    cut at 512 MiB so the ELF has two PT_LOADs."""
    state = load_state(machine)
    ck = state.crashkernel
    mem = PhysicalMemory(os.path.join(machine, "memory.img"))
    lo = MemoryImageSource(mem, 0, 512 * MiB, owns=True)
    hi = MemoryImageSource(mem, 512 * MiB, ck.base - 512 * MiB)
    raw = open_dump(machine)
    attrs = DumpAttrs(format="test")
    attrs.set_vmcoreinfo(raw.attrs.vmcoreinfo_raw, "machine")
    cpus = raw.cpus
    raw.close()
    return Dump([MemChunk(0, lo.size, lo), MemChunk(512 * MiB, hi.size, hi)], cpus, attrs)


@pytest.fixture(scope="module")
def written(machine_1g, tmp_path_factory):
    """(machine dir, ELF path, progress total, layout) of the kdump-like ELF of machine_1g."""
    out = str(tmp_path_factory.mktemp("elf") / "vmcore.elf")
    done = []
    with kdump_like(machine_1g) as d:
        layout = write_dump(d, out, "elf", progress=done.append)
        assert sum(done) == d.present_bytes
    return machine_1g, out, layout


def regs_without_last_break(c: CpuRegs) -> dict:
    # The kdump note set (and so our ELF) has no NT_S390_LAST_BREAK: that register
    # is not carried by the ELF format and is left out of the comparison.
    d = asdict(c)
    d.pop("last_break")
    return d


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------

def test_registry_lists_elf_and_raw():
    assert [r.name for r in READERS][:1] == ["elf"]
    assert {"elf", "raw"} <= set(WRITERS)


def test_garbage_is_an_unknown_dump_format(tmp_path):
    junk = tmp_path / "junk.elf"          # the name says ELF; the content decides
    junk.write_bytes(bytes(random.Random(1).randrange(256) for _ in range(10000)))
    with pytest.raises(BadInputError, match="unknown dump format"):
        open_dump(junk)
    x86 = tmp_path / "x86core"
    x86.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + (4).to_bytes(2, "little") + (62).to_bytes(2, "little")
                    + bytes(4000))
    with pytest.raises(BadInputError, match="unknown dump format"):
        open_dump(x86)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(BadInputError, match="empty"):
        open_dump(tmp_path / "empty")
    with pytest.raises(BadInputError, match="does not exist"):
        open_dump(tmp_path / "missing")
    with pytest.raises(BadInputError, match="unknown dump format"):
        open_dump(tmp_path)                # a directory that is no machine
    with pytest.raises(DumpToolError, match="unknown input format"):
        open_dump(junk, fmt="nosuch")


def test_raw_images_open_only_by_name(machine_1g):
    img = os.path.join(machine_1g, "memory.img")
    assert probe_format(img) is None
    assert probe_format(machine_1g).name == "raw"
    with open_dump(img, fmt="raw", cpus_from=machine_1g) as d, open_dump(machine_1g) as m:
        assert d.size == m.size == 1 * GiB
        assert [c.address for c in d.cpus] == [c.address for c in m.cpus]
        assert d.attrs.vmcoreinfo_raw == m.attrs.vmcoreinfo_raw
        assert d.read(0x100000, 4096) == m.read(0x100000, 4096)


# ---------------------------------------------------------------------------------------------
# round trip
# ---------------------------------------------------------------------------------------------

def test_round_trip_pages_cpus_vmcoreinfo(written):
    machine, path, _ = written
    with open_dump(machine) as src, open_dump(path) as elf:
        assert elf.attrs.format == "elf" and elf.attrs.complete
        assert [(c.start, c.size, c.kind) for c in elf.chunks] == [(0, 512 * MiB, "ram"),
                                                                   (512 * MiB, 256 * MiB, "ram")]
        assert page_digests(elf) == page_digests(src)      # crashkernel memory is all zero
        assert len(elf.cpus) == len(src.cpus) == 2
        for a, b in zip(src.cpus, elf.cpus):
            assert a.vxrs is not None and b.vxrs == a.vxrs
            assert regs_without_last_break(b) == regs_without_last_break(a)
        assert elf.attrs.vmcoreinfo_raw == src.attrs.vmcoreinfo_raw
        assert elf.attrs.vmcoreinfo_source == "ELF note"
        assert elf.attrs.vmcoreinfo.osrelease == "6.1.0-s390dumptools"


def test_layout_is_what_the_kdump_kernel_writes(written):
    _, path, layout = written
    with open(path, "rb") as fh:
        eh = Elf64_Ehdr.parse(fh.read(EHDR_SIZE))
        hdrs = read_core_headers(fh)
    assert (eh.e_phoff, eh.e_ehsize, eh.e_phentsize, eh.e_shnum, eh.e_entry) == (64, 64, 56, 0, 0)
    assert [p.p_type for p in hdrs.phdrs] == [PT_NOTE, PT_LOAD, PT_LOAD]
    for p in hdrs.phdrs[1:]:
        assert p.p_vaddr == p.p_paddr and p.p_filesz == p.p_memsz
        assert p.p_flags == 7 and p.p_align == 4096 and p.p_offset % 4096 == 0
    assert layout.file_size == os.path.getsize(path)


def test_output_is_sparse(written):
    _, path, _ = written
    st_ = os.stat(path)
    assert st_.st_size > 768 * MiB
    assert st_.st_blocks * 512 < st_.st_size // 10


# ---------------------------------------------------------------------------------------------
# peers: elfutils, binutils, gdb, libkdumpfile, drgn
# ---------------------------------------------------------------------------------------------

def test_eu_readelf_lists_every_note_and_load(written):
    _, path, _ = written
    out = subprocess.run(["eu-readelf", "-n", "-l", path], capture_output=True, text=True, check=True)
    assert out.stderr == ""
    loads = re.findall(r"^\s+LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)",
                       out.stdout, re.M)
    assert [(int(v, 16), int(p, 16), int(s, 16)) for _, v, p, s, _m in loads] == [
        (0, 0, 512 * MiB), (512 * MiB, 512 * MiB, 256 * MiB)]
    notes = re.findall(r"^  (CORE|LINUX|VMCOREINFO)\s+(\d+)\s+(\S.*?)\s*$", out.stdout, re.M)
    counts: dict[tuple[str, str], int] = {}
    for owner, _size, kind in notes:
        counts[owner, kind] = counts.get((owner, kind), 0) + 1
    ncpu = 2
    assert counts.pop(("CORE", "PRPSINFO")) == 1
    assert counts.pop(("CORE", "PRSTATUS")) == ncpu
    assert counts.pop(("CORE", "FPREGSET")) == ncpu
    for kind in ("S390_TIMER", "S390_TODCMP", "S390_TODPREG", "S390_CTRS", "S390_PREFIX"):
        assert counts.pop(("LINUX", kind)) == ncpu
    # elfutils has no names for NT_S390_VXRS_LOW/HIGH (0x309/0x30a)
    assert counts.pop(("LINUX", "<unknown>: 777")) == ncpu
    assert counts.pop(("LINUX", "<unknown>: 778")) == ncpu
    assert counts.pop(("VMCOREINFO", "<unknown>: 0")) == 1
    assert counts == {}
    assert "OSRELEASE=6.1.0-s390dumptools" in out.stdout


def test_binutils_readelf_reads_it_without_warnings(written):
    _, path, _ = written
    out = subprocess.run(["readelf", "-W", "-h", "-l", "-n", path], capture_output=True, text=True, check=True)
    assert "Warning" not in out.stderr + out.stdout
    assert "CORE (Core file)" in out.stdout and "IBM S/390" in out.stdout
    assert out.stdout.count("NT_PRSTATUS") == 2 and out.stdout.count("NT_S390_VXRS_HIGH") == 2


def gdb_registers(path: str, *cmds: str) -> dict[str, int]:
    args = ["gdb-multiarch", "-nx", "-batch", "-ex", "set architecture s390:64-bit", "-ex", f"core-file {path}"]
    for c in cmds:
        args += ["-ex", c]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    regs = {}
    for line in out.stdout.splitlines():
        m = re.match(r"(\w+)\s+.*\(raw (0x[0-9a-f]+)\)", line) or re.match(r"(\w+)\s+(0x[0-9a-f]+)\b", line)
        if m:
            regs[m.group(1)] = int(m.group(2), 16)
    assert regs, out.stdout + out.stderr
    return regs


def test_gdb_shows_the_machines_registers(written):
    """gdb opens a core without an executable; it builds its register sets from
    NT_PRSTATUS/NT_FPREGSET, one thread (LWP = pr_pid) per CPU."""
    machine, path, _ = written
    state = load_state(machine)
    for thread, cpu in ((1, state.cpu(0)), (2, state.cpu(1))):
        regs = gdb_registers(path, f"thread {thread}", "info registers pswm pswa r0 r1 r15 acr0 f0 fpc")
        assert regs["pswa"] == cpu.psw_addr and regs["pswm"] == cpu.psw_mask
        assert (regs["r0"], regs["r1"], regs["r15"]) == (cpu.gprs[0], cpu.gprs[1], cpu.gprs[15])
        assert regs["acr0"] == cpu.acrs[0] and regs["f0"] == cpu.fprs[0] and regs["fpc"] == cpu.fpc


def sample_addresses(dump: Dump, n: int, seed: int = 7) -> list[int]:
    """Addresses in pages holding data, and anywhere in the dump (64 bytes fit before a chunk end)."""
    rng = random.Random(seed)
    pages = sorted(page_digests(dump))
    out = [p + rng.randrange(4096 - 64) for p in rng.sample(pages, n)]
    for _ in range(n // 2):
        c = rng.choice([c for c in dump.chunks if c.kind != "absent"])
        out.append(c.start + rng.randrange(c.size - 64))
    return out


def assert_drgn_reads_the_same(drgn, path: str) -> None:
    """drgn takes the dump at path for an s390x Linux kernel core and reads what we read."""
    prog = drgn.Program()
    prog.set_core_dump(path)
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL
    assert prog.platform.arch == drgn.Architecture.S390X
    with open_dump(path) as d:
        for a in sample_addresses(d, 120, seed=8):
            assert prog.read(a, 64, True) == d.read(a, 64), hex(a)


def test_libkdumpfile_reads_the_same_bytes(written):
    """libkdumpfile (Debian python3-libkdumpfile) opens our ELF as-is: it takes the
    architecture from e_machine and the byte order from e_ident; no attributes to set."""
    kdumpfile = peer_kdumpfile()
    _, path, _ = written
    k = kdumpfile.kdumpfile(path)
    assert k.attr["file.format"] == "elf" and k.attr["arch.name"] == "s390x"
    assert k.attr["linux.uts.release"] == "6.1.0-s390dumptools"          # from our VMCOREINFO note
    with open_dump(path) as d:
        addrs = sample_addresses(d, 120)
        assert len(addrs) >= 100
        for a in addrs:
            assert bytes(k.read(kdumpfile.KDUMP_KPHYSADDR, a, 64)) == d.read(a, 64), hex(a)


def test_drgn_reads_the_same_bytes(written, tmp_path):
    """drgn takes the dump as a Linux kernel core because of our VMCOREINFO note.  It
    insists on SYMBOL(swapper_pg_dir) ("VMCOREINFO does not contain valid swapper_pg_dir"),
    which every real kernel exports but the synthetic machine's VMCOREINFO lacks, so
    the test adds it (any address: physical reads do not walk page tables)."""
    drgn = peer_drgn()
    machine, _, _ = written
    path = str(tmp_path / "drgn.elf")
    with kdump_like(machine) as d:
        d.attrs.set_vmcoreinfo(d.attrs.vmcoreinfo_raw + b"SYMBOL(swapper_pg_dir)=800000\n", "machine + test")
        write_dump(d, path, "elf")
    assert_drgn_reads_the_same(drgn, path)


# ---------------------------------------------------------------------------------------------
# QEMU 7.2 dump-guest-memory
# ---------------------------------------------------------------------------------------------

Elf64_Shdr_LE = Struct(          # QEMU 7.2 wrote its .shstrtab section header in host byte order
    "sh_name" / Int32ul, "sh_type" / Int32ul, "sh_flags" / Int64ul, "sh_addr" / Int64ul,
    "sh_offset" / Int64ul, "sh_size" / Int64ul, "sh_link" / Int32ul, "sh_info" / Int32ul,
    "sh_addralign" / Int64ul, "sh_entsize" / Int64ul,
)
assert Elf64_Shdr_LE.sizeof() == 64


def qemu_cpu_notes(regs: CpuRegs, cpu_index: int) -> bytes:
    """QEMU's s390x per-CPU notes: its own order, GS_CB, pr_pid = index+1 little-endian (7.2)."""
    pr = bytearray(en.NtPrstatus.build(dict(pr_reg=dict(psw=dict(mask=regs.psw_mask, addr=regs.psw_addr),
                                                        gprs=regs.gprs, acrs=regs.acrs))))
    pr[en.PRSTATUS_PID_OFFSET:en.PRSTATUS_PID_OFFSET + 4] = (cpu_index + 1).to_bytes(4, "little")
    core, linux = "CORE", "LINUX"
    return b"".join([
        en.build_note(core, en.NT_PRSTATUS, bytes(pr)),
        en.build_note(core, en.NT_FPREGSET, en.NtPrfpreg.build(dict(fpc=regs.fpc, fprs=regs.fprs))),
        en.build_note(linux, en.NT_S390_PREFIX, en.NtS390Prefix.build(dict(prefix=regs.prefix))),
        en.build_note(linux, en.NT_S390_CTRS, en.NtS390Ctrs.build(dict(ctrs=regs.crs))),
        en.build_note(linux, en.NT_S390_TIMER, en.NtS390Timer.build(dict(timer=regs.cpu_timer))),
        en.build_note(linux, en.NT_S390_TODCMP, en.NtS390Todcmp.build(dict(todcmp=regs.clock_comparator))),
        en.build_note(linux, en.NT_S390_TODPREG, en.NtS390Todpreg.build(dict(todpreg=regs.todpreg))),
        en.build_note(linux, en.NT_S390_VXRS_LOW, regs.vxrs_low()),
        en.build_note(linux, en.NT_S390_VXRS_HIGH, regs.vxrs_high()),
        en.build_note(linux, en.NT_S390_GS_CB, bytes(32)),
    ])


def build_qemu72_elf(machine: str, path: str) -> None:
    """A dump-guest-memory ELF as QEMU 7.2 writes it for an s390x guest: section headers
    right after the ELF header (the second little-endian), e_ehsize 8, notes without
    PRPSINFO and VMCOREINFO, unaligned memory offsets, p_vaddr virtual (paging) and the
    physical address in p_paddr.  The meminfo pointer at 0xE18 is cleared, so VMCOREINFO
    can only be found through lowcore 0xE0C."""
    state = load_state(machine)
    mem = PhysicalMemory(os.path.join(machine, "memory.img"))
    notes = b"".join(qemu_cpu_notes(c, i) for i, c in enumerate(state.cpus))
    strtab = b"\0.shstrtab\0"
    loads = [(0, 512 * MiB), (512 * MiB, mem.size - 512 * MiB)]
    shoff, phoff = 64, 64 + 2 * 64
    notes_off = phoff + (1 + len(loads)) * PHDR_SIZE
    strtab_off = notes_off + len(notes)
    data_off = strtab_off + len(strtab)                      # not page aligned
    ehdr = Elf64_Ehdr.build(dict(
        e_ident_class=2, e_ident_data=2, e_ident_version=1, e_ident_osabi=0, e_ident_abiversion=0,
        e_type=4, e_machine=22, e_version=1, e_entry=0, e_phoff=phoff, e_shoff=shoff, e_flags=0,
        e_ehsize=8, e_phentsize=PHDR_SIZE, e_phnum=1 + len(loads), e_shentsize=64, e_shnum=2, e_shstrndx=1))
    shdrs = Elf64_Shdr.build(dict(sh_name=0, sh_type=0, sh_flags=0, sh_addr=0, sh_offset=0, sh_size=0, sh_link=0,
                                  sh_info=0, sh_addralign=0, sh_entsize=0))
    shdrs += Elf64_Shdr_LE.build(dict(sh_name=1, sh_type=3, sh_flags=0, sh_addr=0, sh_offset=strtab_off,
                                      sh_size=len(strtab), sh_link=0, sh_info=0, sh_addralign=1, sh_entsize=0))
    phdrs = phdr_bytes(PT_NOTE, notes_off, 0, 0, len(notes), len(notes))
    off = data_off
    placed = []
    for start, size in loads:
        phdrs += phdr_bytes(PT_LOAD, off, 0x3FF_0000_0000 + start, start, size, size, flags=7)
        placed.append((start, size, off))
        off += size
    with open(path, "wb") as fh:
        fh.write(ehdr + shdrs + phdrs + notes + strtab)
        fd = fh.fileno()
        for start, size, foff in placed:
            for s, e in mem.data_ranges(start, start + size):
                os.pwrite(fd, mem.read(s, e - s), foff + s - start)
        os.pwrite(fd, bytes(8), placed[0][2] + LC_OS_INFO)
        fh.truncate(off)
    mem.close()


def test_qemu72_dump_is_read_with_its_quirks(machine_1g, tmp_path):
    path = str(tmp_path / "qemu72.elf")
    build_qemu72_elf(machine_1g, path)
    assert probe_format(path).name == "elf"
    with open_dump(path) as q, open_dump(machine_1g) as m:
        assert [(c.start, c.size) for c in q.chunks] == [(0, 512 * MiB), (512 * MiB, 512 * MiB)]
        assert any("e_ehsize 8" in x for x in q.attrs.extra["quirks"])
        assert any("pr_pid little-endian" in x for x in q.attrs.extra["quirks"])
        # VMCOREINFO came from memory, through the note lowcore 0xE0C points to
        note_ptr = int.from_bytes(m.read(LC_VMCORE_INFO, 8), "big")
        assert q.attrs.vmcoreinfo_source == f"lowcore 0xE0C note at 0x{note_ptr + 24:x}"
        assert q.attrs.vmcoreinfo_raw.rstrip(b"\0") == m.attrs.vmcoreinfo_raw.rstrip(b"\0")
        for a, b in zip(m.cpus, q.cpus):
            assert regs_without_last_break(b) == regs_without_last_break(a)
        qd, md = page_digests(q), page_digests(m)
        assert qd.pop(0) != md.pop(0)                         # the page with the cleared 0xE18
        assert qd == md
    # the raw reader takes CPUs from a QEMU dump of the same guest
    with open_dump(os.path.join(machine_1g, "memory.img"), fmt="raw", cpus_from=path) as r:
        assert [c.psw_addr for c in r.cpus] == [c.psw_addr for c in load_state(machine_1g).cpus]


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

def test_truncated_file_is_incomplete_and_names_the_missing_range(written, tmp_path):
    _, path, layout = written
    cut = str(tmp_path / "cut.elf")
    with open(cut, "wb") as fh:
        sparse_copy(path, fh)
    first_off = layout.loads[0][1]
    os.truncate(cut, first_off + 300 * MiB)
    with open_dump(cut) as d:
        assert not d.attrs.complete
        assert "0x12c00000-0x1fffffff" in d.attrs.incomplete_reason
        assert "0x20000000-0x2fffffff" in d.attrs.incomplete_reason
        with open_dump(path) as whole:
            assert d.read(0x100000, 16) == whole.read(0x100000, 16)
        with pytest.raises(IncompleteDumpError, match="0x12c00000"):
            d.read(300 * MiB, 16)
        with pytest.raises(IncompleteDumpError, match="0x20000010"):
            d.read(512 * MiB + 16, 16)
    os.truncate(cut, 100)                                       # inside the program headers
    with pytest.raises(BadInputError, match="do not fit"):
        open_dump(cut)


def test_overlapping_loads_are_rejected(tmp_path):
    notes = en.prpsinfo_note()
    hdr = Elf64_Ehdr.build(dict(
        e_ident_class=2, e_ident_data=2, e_ident_version=1, e_ident_osabi=0, e_ident_abiversion=0,
        e_type=4, e_machine=22, e_version=1, e_entry=0, e_phoff=64, e_shoff=0, e_flags=0,
        e_ehsize=64, e_phentsize=56, e_phnum=3, e_shentsize=0, e_shnum=0, e_shstrndx=0))
    body = (phdr_bytes(PT_NOTE, 232, 0, 0, len(notes), len(notes))
            + phdr_bytes(PT_LOAD, 4096, 0x2000, 0x2000, 8192, 8192)
            + phdr_bytes(PT_LOAD, 4096, 0x1000, 0x1000, 8192, 8192))
    p = tmp_path / "overlap.elf"
    p.write_bytes(hdr + body + notes + bytes(4096 - 232 - len(notes)) + bytes(8192))
    with pytest.raises(BadInputError, match="overlaps"):
        open_dump(p)


def small_dump() -> Dump:
    """Two ram chunks, a zero chunk, two CPUs, VMCOREINFO reachable through 0xE0C."""
    text = b"OSRELEASE=6.1.0-small\nPAGESIZE=4096\n"
    low = bytearray(32 * 1024)
    note = en.vmcoreinfo_note(text)
    low[0x4000:0x4000 + len(note)] = note
    low[LC_VMCORE_INFO:LC_VMCORE_INFO + 8] = (0x4000).to_bytes(8, "big")
    low[0x6000:0x6010] = b"low memory data!"
    high = bytes(4096) + b"high memory data" * 256
    cpus = []
    for i in range(2):
        fprs = [0x4000_0000_0000_0000 + 17 * j + i for j in range(16)]
        vxrs = CpuRegs.vxrs_from_parts(fprs, bytes(range(128)), bytes(range(128, 256)) * 2)  # V0-15 high = FPRs
        cpus.append(CpuRegs(address=i, prefix=0x2000 * i, psw_addr=0x1000 + i, gprs=list(range(i, i + 16)),
                            fprs=fprs, vxrs=vxrs))
    attrs = DumpAttrs(format="test")
    attrs.set_vmcoreinfo(text, "test")
    return Dump([MemChunk(0, len(low), BytesSource(low)), MemChunk(64 * 1024, len(high), BytesSource(high)),
                 MemChunk(96 * 1024, 32 * 1024, None, "zero")], cpus, attrs)


def test_small_dump_round_trip_keeps_zero_chunks(tmp_path):
    p = str(tmp_path / "small.elf")
    with small_dump() as d:
        write_dump(d, p, "elf")
        with open_dump(p) as e:
            assert [(c.start, c.size, c.kind) for c in e.chunks] == [
                (0, 32768, "ram"), (65536, 8192, "ram"), (98304, 32768, "ram")]
            assert e.read(0, 32768) == d.read(0, 32768)
            assert page_digests(e) == page_digests(d)
            assert [regs_without_last_break(c) for c in e.cpus] == [regs_without_last_break(c) for c in d.cpus]


def test_writer_never_reads_holes_and_skips_zero_pages(tmp_path):
    size = 8 * MiB
    page = b"\x5a" * 4096

    def read(off, n):
        assert 1 * MiB <= off and off + n <= 3 * MiB, f"read outside the data ranges: {off:#x}+{n:#x}"
        out = bytearray(n)
        if off <= 2 * MiB < off + n:
            out[2 * MiB - off:2 * MiB - off + 4096] = page
        return bytes(out)

    src = MappedSource(read, size, lambda s, e: [(1 * MiB, 3 * MiB)])
    p = str(tmp_path / "holes.elf")
    with Dump([MemChunk(0, size, src)]) as d:
        lay = write_dump(d, p, "elf")
    load_off = lay.loads[0][1]
    fd = os.open(p, os.O_RDONLY)
    try:
        extents = []
        pos = load_off
        while True:
            try:
                s = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            e = os.lseek(fd, s, os.SEEK_HOLE)
            extents.append((s - load_off, e - load_off))
            pos = e
    finally:
        os.close(fd)
    assert extents == [(2 * MiB, 2 * MiB + 4096)]
    with open_dump(p) as e:
        assert e.read(2 * MiB, 4096) == page


@pytest.mark.slow
def test_huge_sparse_dump_costs_what_its_data_costs(tmp_path):
    """A 1 TiB dump with one page of data per GiB: fast, sparse, small RSS."""
    size, step = 1 << 40, GiB
    marks = {a: (a + 1).to_bytes(8, "big") * 512 for a in range(0, size, step)}

    def read(off, n):
        out = bytearray(n)
        for a in range(off // step * step, off + n, step):
            if a in marks and off <= a < off + n:
                out[a - off:a - off + 4096] = marks[a]
        return bytes(out)

    src = MappedSource(read, size, lambda s, e: [(a, a + 4096) for a in range(s // step * step, e, step)
                                                 if a + 4096 > s and a < e])
    p = str(tmp_path / "huge.elf")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with Dump([MemChunk(0, size, src)]) as d:
        write_dump(d, p, "elf")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 100 * 1024     # KiB
    st_ = os.stat(p)
    assert st_.st_size > size and st_.st_blocks * 512 < 64 * MiB
    with open_dump(p) as e:
        assert e.read(5 * step, 8) == (5 * step + 1).to_bytes(8, "big")
        assert len(page_digests(e)) == 1024


def test_pn_xnum_for_more_than_65534_program_headers(tmp_path):
    n = PN_XNUM                      # loads; with the PT_NOTE that is 65536 headers
    chunks = [MemChunk(i * 8192, 4096, BytesSource(i.to_bytes(8, "big") * 512) if i % 4096 == 0 else None,
                       "ram" if i % 4096 == 0 else "zero") for i in range(n)]
    p = str(tmp_path / "xnum.elf")
    with Dump(chunks) as d:
        lay = write_dump(d, p, "elf")
    assert lay.phnum == n + 1 and lay.shoff
    with open(p, "rb") as fh:
        eh = Elf64_Ehdr.parse(fh.read(64))
        assert eh.e_phnum == PN_XNUM and eh.e_shnum == 1
        fh.seek(eh.e_shoff)
        assert Elf64_Shdr.parse(fh.read(64)).sh_info == n + 1
    out = subprocess.run(["readelf", "-h", p], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Number of program headers:\s+65535 \(65536\)", out), out
    with open_dump(p) as e:
        assert len(e.chunks) == n
        assert e.read(4096 * 8192, 8) == (4096).to_bytes(8, "big")


# ---------------------------------------------------------------------------------------------
# fuzz: corrupted headers and notes never escape as anything but the suite's errors
# ---------------------------------------------------------------------------------------------

_FUZZ_DIR = tempfile.mkdtemp(prefix="elf-fuzz-")
_FUZZ_SRC = os.path.join(_FUZZ_DIR, "base.elf")
with small_dump() as _d:
    _FUZZ_LAYOUT = plan_layout(_d)
    write_dump(_d, _FUZZ_SRC, "elf")
with open(_FUZZ_SRC, "rb") as _fh:
    _FUZZ_BYTES = _fh.read()
_FUZZ_HEAD = _FUZZ_LAYOUT.notes_offset + len(_FUZZ_LAYOUT.notes)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, _FUZZ_HEAD - 1), st.integers(0, 255)), min_size=1, max_size=8),
    words=st.lists(st.tuples(st.integers(0, (_FUZZ_HEAD - 8) // 8), st.sampled_from(
        [0, 1, 0xFFFF, 1 << 31, (1 << 63) - 1, (1 << 64) - 1, 1 << 40, 4096])), max_size=2),
    truncate=st.one_of(st.none(), st.integers(0, len(_FUZZ_BYTES))),
)
def test_fuzzed_headers_raise_only_suite_errors(edits, words, truncate):
    data = bytearray(_FUZZ_BYTES)
    for off, val in edits:
        data[off] = val
    for idx, val in words:
        data[idx * 8:idx * 8 + 8] = val.to_bytes(8, "big")
    if truncate is not None:
        del data[truncate:]
    path = os.path.join(_FUZZ_DIR, "fuzz.elf")
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        exercise_dump(path)
    except DumpToolError:
        pass


def teardown_module(module):
    shutil.rmtree(_FUZZ_DIR, ignore_errors=True)
