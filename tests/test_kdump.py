"""Issue 5: the kdump kernel builds the ELF core header itself and serves /proc/vmcore."""

import os
import random
import re
import resource
import signal
import subprocess
import sys

import pytest

from meminfo_abi.vmcoreinfo import parse_vmcoreinfo
from meminfo_abi.locate import find_vmcoreinfo
from dumpkit.fileio import sparse_copy
from s390_machine.machine import Machine
from s390_machine.state import MEMORY_FILE
from s390_machine.synth import PRINTK_AREA, PRINTK_AREA_SIZE
from tests.conftest import ROOT, cli_json, peer_kdumpfile, run_cli
from tests.realdata import debian_kernel, make_initrd
from vmcore.formats import open_dump
from vmcore.kdump import ProcVmcore, kdump_dump

MIB = 1 << 20
MEM, CK_SIZE = 512 * MIB, 128 * MIB
CK_BASE = MEM - CK_SIZE


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """create -> kexec-s390 load -p -> snapshot of storage and CPUs -> s390-machine panic."""
    tmp = tmp_path_factory.mktemp("kdump")
    m = str(tmp / "m")
    run_cli("s390_machine.cli", "create", m, "--memory", "512M", "--cpus", "3", "--crashkernel", "128M", check=True)
    initrd = make_initrd(str(tmp / "initrd.img"), payload_size=2 * MIB)
    run_cli("kexec_s390.cli", "load", "-p", debian_kernel(), "--initrd", initrd, "--machine", m, check=True)
    snap = str(tmp / "before.img")
    with open(snap, "wb") as fh:
        sparse_copy(os.path.join(m, MEMORY_FILE), fh)
    with Machine.open(m, "read") as mach:
        cpus = [c for c in mach.cpus]
        vmcoreinfo = find_vmcoreinfo(mach.memory).raw
        changed = [(c.prefix + 0x1200, 0x200) for c in cpus]
        changed += [(mach.memory.read_u64(c.prefix + 0x11B0) & ~0x3FF, 512) for c in cpus]
        changed += [(0, 0x2000), (0x2000, 0xE000),                 # lowcore, purgatory window
                    (mach.meminfo_pointer, 0x1000), (mach.vmcoreinfo_note_pointer, 0x2000),
                    (PRINTK_AREA, PRINTK_AREA_SIZE)]                    # the panic's log lines
    out = cli_json("s390_machine.cli", "panic", m, "--cpu", "1")
    assert out["kdump_started"], out
    return {"dir": m, "tmp": tmp, "snap": snap, "cpus": cpus, "vmcoreinfo": vmcoreinfo, "changed": changed}


def _changed(page, changed):
    """Does the page overlap a range the crash legitimately rewrote?"""
    return any(a < page + 4096 and page < a + n for a, n in changed)


def assert_pages_equal(snap_path, dump, changed):
    """Every page of pre-crash memory outside the crashkernel equals the dump's page."""
    from s390_machine.memory import PhysicalMemory
    checked = 0
    with PhysicalMemory(snap_path) as before:
        candidates = set()
        for s, e in list(before.data_ranges(0, CK_BASE)) + list(dump.data_ranges(0, CK_BASE)):
            candidates.update(range(s // 4096 * 4096, e, 4096))
        for page in sorted(candidates):
            if _changed(page, changed):
                continue
            assert dump.read(page, 4096) == before.read(page, 4096), f"page 0x{page:x} differs"
            checked += 1
    assert checked > 1000
    return checked


def test_machine_is_in_kdump_state_with_oldmem_set(crashed):
    with Machine.open(crashed["dir"], "read") as m:
        assert m.state.status == "kdump"
        assert m.memory.read_u64(0x10418) == CK_BASE and m.memory.read_u64(0x10420) == CK_SIZE
        assert m.memory.read(0x10008, 6) == b"S390EP"        # the kdump kernel now runs at 0x10000
        assert m.state.psw_on_stop["addr"] == "0x10010"


def test_elf_header_built_in_the_kdump_kernel(crashed):
    with Machine.open(crashed["dir"], "read") as m, kdump_dump(m) as d:
        # one PT_LOAD per old memory range, the old crashkernel excluded
        assert [(c.start, c.end) for c in d.chunks] == [(0, CK_BASE)]
        # boot CPU (the one that panicked) first, then ascending addresses
        assert [c.address for c in d.cpus] == [1, 0, 2]
        vc = ProcVmcore(d)
        head = vc.read(0, 64)
        assert head[:6] == b"\x7fELF\x02\x02" and int.from_bytes(head[18:20], "big") == 22
        assert int.from_bytes(head[56:58], "big") == 2       # e_phnum = 1 PT_NOTE + 1 PT_LOAD


def test_save_elf_pages_registers_vmcoreinfo(crashed):
    out = str(crashed["tmp"] / "vmcore.elf")
    run_cli("vmcore.cli", "save", "--machine", crashed["dir"], "-o", out, "--format", "elf", check=True)
    with open_dump(out) as d:
        assert assert_pages_equal(crashed["snap"], d, crashed["changed"]) > 1000
        by_addr = {c.address: c for c in crashed["cpus"]}
        assert len(d.cpus) == 3
        for got in d.cpus:
            want = by_addr[got.prefix and next(a for a, c in by_addr.items() if c.prefix == got.prefix)]
            for f in ("psw_mask", "psw_addr", "gprs", "acrs", "crs", "fprs", "fpc", "cpu_timer",
                      "clock_comparator", "todpreg", "prefix", "vxrs"):
                assert getattr(got, f) == getattr(want, f), f
        vi = d.attrs.vmcoreinfo
        before = parse_vmcoreinfo(crashed["vmcoreinfo"])
        assert vi.get("CRASHTIME") is not None
        assert {k: v for k, v in vi.entries.items() if k != "CRASHTIME"} == dict(before.entries)
    # /proc/vmcore serves the same bytes as the saved file
    with Machine.open(crashed["dir"], "read") as m, kdump_dump(m) as d:
        vc = ProcVmcore(d)
        assert vc.size == os.path.getsize(out)
        rnd = random.Random(5)
        with open(out, "rb") as fh:
            for off in [0, 64, 4096] + [rnd.randrange(vc.size - 4096) for _ in range(50)]:
                fh.seek(off)
                assert vc.read(off, 4096) == fh.read(4096)
    assert os.stat(out).st_blocks * 512 < os.path.getsize(out) // 4     # sparse


def test_real_readers_open_the_kdump_elf(crashed):
    out = str(crashed["tmp"] / "vmcore2.elf")
    run_cli("vmcore.cli", "save", "--machine", crashed["dir"], "-o", out, check=True)
    text = subprocess.run(["eu-readelf", "-n", "-l", out], capture_output=True, text=True, check=True).stdout
    assert text.count("CORE") >= 7 and text.count("PRSTATUS") == 3 and "VMCOREINFO" in text
    assert len(re.findall(r"^\s+LOAD\s", text, re.M)) == 1
    gdb = subprocess.run(["gdb-multiarch", "-nx", "-batch", "-ex", "set architecture s390:64-bit",
                          "-ex", f"core-file {out}", "-ex", "info registers pswa r15"],
                         capture_output=True, text=True)
    boot = next(c for c in crashed["cpus"] if c.address == 1)
    assert f"{boot.psw_addr:#x}" in gdb.stdout and f"{boot.gprs[15]:#x}" in gdb.stdout, gdb.stdout + gdb.stderr
    kdumpfile = peer_kdumpfile()
    k = kdumpfile.kdumpfile(out)
    assert k.attr["arch.name"] == "s390x"
    with open_dump(out) as d:
        rnd = random.Random(7)
        pages = sorted(p for s, e in d.data_ranges(0, CK_BASE) for p in range(s, e, 4096))
        addrs = [p + rnd.randrange(4000) for p in rnd.sample(pages, 100)] + \
                [rnd.randrange(0, CK_BASE - 64) for _ in range(20)]
        for addr in addrs:
            assert bytes(k.read(kdumpfile.KDUMP_KPHYSADDR, addr, 64)) == d.read(addr, 64), hex(addr)


def test_save_without_machine_reads_the_vmcore_file(crashed):
    """Issue 21: in a kdump kernel `vmcore save` (no --machine) reads /proc/vmcore; --vmcore names
    the file (here the simulated kdump kernel's /proc/vmcore, saved as ELF) and any format is written."""
    elf = str(crashed["tmp"] / "proc-vmcore.elf")
    run_cli("vmcore.cli", "save", "--machine", crashed["dir"], "-o", elf, check=True)
    out = str(crashed["tmp"] / "from-proc.kdump")
    res = cli_json("vmcore.cli", "save", "--vmcore", elf, "-f", "kdump", "--exclude-zero", "-o", out)
    assert res["source"] == elf and res["complete"] and res["cpus"] == 3 and res["zero_pages_excluded"]
    with open_dump(elf) as a, open_dump(out) as b:
        assert b.attrs.vmcoreinfo.entries == a.attrs.vmcoreinfo.entries
        assert [c.psw_addr for c in b.cpus] == [c.psw_addr for c in a.cpus]
        for addr in (0x10000, 0x100000, 0x400000):
            assert b.read(addr, 4096) == a.read(addr, 4096)
    proc = run_cli("vmcore.cli", "save", "-o", str(crashed["tmp"] / "none.elf"))   # this host: no /proc/vmcore
    assert proc.returncode == 3 and "/proc/vmcore does not exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_input_not_in_kdump(tmp_path, machine_1g):
    proc = run_cli("vmcore.cli", "save", "--machine", machine_1g, "-o", str(tmp_path / "x.elf"))
    assert proc.returncode == 3 and "no kdump kernel is running" in proc.stderr
    assert not (tmp_path / "x.elf").exists()


def test_bad_input_oldmem_inconsistent(crashed, tmp_path):
    from tests.conftest import copy_machine
    m = copy_machine(crashed["dir"], str(tmp_path / "m"))
    with Machine.open(m, "write") as mach:
        mach.memory.write_u64(0x10420, CK_SIZE // 2)
    proc = run_cli("vmcore.cli", "save", "--machine", m, "-o", str(tmp_path / "x.elf"))
    assert proc.returncode == 3 and "inconsistent with meminfo" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.elf").exists()


def test_bad_output_paths_leave_nothing(crashed, tmp_path):
    proc = run_cli("vmcore.cli", "save", "--machine", crashed["dir"], "-o", str(tmp_path / "missing" / "x.elf"))
    assert proc.returncode == 3 and "does not exist" in proc.stderr
    # a full disk: the file size limit stops the write halfway
    out = tmp_path / "full.elf"
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 * MIB, 8 * MIB))
    proc = subprocess.run([sys.executable, "-m", "vmcore.cli", "save", "--machine", crashed["dir"], "-o", str(out)],
                          capture_output=True, text=True, cwd=ROOT, preexec_fn=limit)
    assert proc.returncode == 5, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == ["missing"] if (tmp_path / "missing").exists() else os.listdir(tmp_path) == []


def test_save_kdump_compressed_pages_registers_vmcoreinfo(crashed):
    out = str(crashed["tmp"] / "vmcore.kdump")
    run_cli("vmcore.cli", "save", "--machine", crashed["dir"], "-o", out, "--format", "kdump",
            "--compress", "zlib", check=True)
    with open(out, "rb") as fh:
        assert fh.read(8) == b"KDUMP   "
    with open_dump(out) as d, Machine.open(crashed["dir"], "read") as m, kdump_dump(m) as live:
        assert d.attrs.format == "kdump" and d.attrs.complete
        assert assert_pages_equal(crashed["snap"], d, crashed["changed"]) > 1000
        assert [(c.prefix, c.psw_addr, c.gprs, c.crs, c.fprs, c.vxrs) for c in d.cpus] == \
               [(c.prefix, c.psw_addr, c.gprs, c.crs, c.fprs, c.vxrs) for c in live.cpus]
        assert d.attrs.vmcoreinfo_raw == live.attrs.vmcoreinfo_raw
    k = peer_kdumpfile().kdumpfile(out)
    assert k.attr["file.format"] == "diskdump" and k.attr["linux.uts.release"] == "6.1.0-s390dumptools"
