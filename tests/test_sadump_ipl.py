"""Issues 4 and 10: `sadump ipl` - store status, the stage-1 checks, kdump if intact (swap as
purgatory does), else kdump from the device, else the full dump; then the re-IPL decision."""

import json
import os
import random

import pytest

from meminfo_abi.lowcore import LC_IPIB_CHECKSUM
from s390_machine.machine import Machine
from s390_machine.memory import PhysicalMemory
from s390_machine.state import MEMORY_FILE
from tests.conftest import copy_machine, run_cli
from tests.realdata import debian_kernel, make_initrd

MIB = 1 << 20
MEM, CK = 512 * MIB, 128 * MIB
BASE = MEM - CK


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sadump")
    plain = str(tmp / "plain")
    run_cli("s390_machine.cli", "create", plain, "--memory", "512M", "--cpus", "3", "--crashkernel", "128M",
            check=True)
    loaded = copy_machine(plain, str(tmp / "loaded"))
    initrd = make_initrd(str(tmp / "initrd.img"), payload_size=MIB)
    run_cli("kexec_s390.cli", "load", "-p", debian_kernel(), "--initrd", initrd, "--machine", loaded, check=True)
    dev = str(tmp / "dasd.img")
    run_cli("zipl_sadump.cli", "build", "--device", dev, "--type", "eckd", "--size", "1G", check=True)
    kdev = str(tmp / "kdasd.img")
    run_cli("zipl_sadump.cli", "build", "--device", kdev, "--type", "eckd", "--size", "1G", "--kdump-kernel",
            debian_kernel(), "--kdump-initrd", initrd, "--kdump-append", "console=ttysclp0", check=True)
    return {"tmp": tmp, "plain": plain, "loaded": loaded, "dev": dev, "kdev": kdev}


def fresh(base, name, which="loaded"):
    return copy_machine(base[which], str(base["tmp"] / f"{name}-{random.getrandbits(32):08x}"))


def fresh_dev(base, name, which="dev"):
    from dumpkit.fileio import sparse_copy
    path = str(base["tmp"] / f"{name}-{random.getrandbits(32):08x}.img")
    with open(path, "wb") as fh:
        sparse_copy(base[which], fh)
    return path


def ipl(dev, machine, *extra):
    proc = run_cli("zipl_sadump.cli", "ipl", "--device", dev, "--machine", machine, "--json", *extra)
    assert proc.returncode in (0, 4), proc.stderr
    return json.loads(proc.stdout)


def test_intact_kdump_is_started_and_memory_swapped_exactly(base):
    m = fresh(base, "intact")
    with PhysicalMemory(os.path.join(m, MEMORY_FILE)) as mem:
        before_low = mem.read(0, CK)
        before_ck = mem.read(BASE, CK)
    with Machine.open(m, "read") as mach:
        segs = [(s.mem, s.memsz) for s in mach.meminfo_report().table.segments]
        stored = [(c.prefix + 0x1200, 0x200) for c in mach.cpus] + \
                 [(mach.memory.read_u64(c.prefix + 0x11B0) & ~0x3FF, 512) for c in mach.cpus]
    r = ipl(fresh_dev(base, "d"), m)
    assert r["decision"] == "kdump" and r["dump"] is None
    with PhysicalMemory(os.path.join(m, MEMORY_FILE)) as mem:
        low, ck = mem.read(0, CK), mem.read(BASE, CK)
    # the crashkernel now holds the old [0, size): lowcore as stored at the IPL, the rest as it was,
    # except the purgatory window [0x2000, 0x10000)
    want = bytearray(before_low)
    for a, n in stored:                                   # store status wrote these at the IPL ...
        want[a:a + n] = ck[a:a + n]
    assert ck[0x10000:] == bytes(want[0x10000:])
    with Machine.open(m, "read") as mach:                         # ... and they hold the CPUs' registers
        for c in mach.cpus:
            assert ck[c.prefix + 0x1200:c.prefix + 0x1400] == c.to_save_area()
            assert ck[0x1200:0x1400] == mach.cpu(mach.state.ipl_cpu).to_save_area()
    assert ck[:0x1200] == low[:0x1200]                          # absolute lowcore copied last
    # the segments moved to their un-offset addresses; low memory outside them kept the old data
    covered = bytearray(CK)
    for mem_addr, memsz in segs:
        off = mem_addr - BASE
        assert low[off:off + memsz] == before_ck[off:off + memsz]
        covered[off:off + memsz] = b"\1" * memsz
    for off in range(0x10000, CK, 0x100000):
        if not covered[off]:
            assert low[off:off + 4096] == before_low[off:off + 4096]
    with Machine.open(m, "read") as mach:
        assert mach.state.status == "kdump"
        assert mach.memory.read_u64(0x10418) == BASE and mach.memory.read_u64(0x10420) == CK


@pytest.mark.parametrize("region", ["meminfo", "segment table", "segment 0", "segment 1"])
def test_one_flipped_byte_means_a_full_dump_with_the_reason(base, region):
    m = fresh(base, f"tamper-{region.replace(' ', '')}")
    with Machine.open(m, "write") as mach:
        rep = mach.meminfo_report()
        if region == "meminfo":
            addr, want = mach.meminfo_pointer + 0x123, "header checksum"
        elif region == "segment table":
            te = rep.meminfo.entries[200]
            addr, want = te.addr + 40, "segment table"
        else:
            s = rep.table.segments[int(region[-1])]
            addr, want = s.mem + random.randrange(s.memsz), region
        mach.memory.write(addr, bytes([mach.memory.read(addr, 1)[0] ^ 0x20]))
    r = ipl(fresh_dev(base, "d"), m, "--no-compress")
    assert r["decision"] == "full dump" and r["dump"]["complete"]
    assert r["reason"].startswith(want)


def test_no_kdump_loaded_means_full_dump(base):
    r = ipl(fresh_dev(base, "d"), fresh(base, "plain", "plain"))
    assert r["decision"] == "full dump" and "0x4580" in r["reason"] and r["dump"]["complete"]


def test_kdump_from_the_device_when_memory_kdump_is_damaged(base, tmp_path):
    m = fresh(base, "devkdump")
    snap = str(tmp_path / "before.img")
    from dumpkit.fileio import sparse_copy
    with open(snap, "wb") as fh:
        sparse_copy(os.path.join(m, MEMORY_FILE), fh)
    with Machine.open(m, "write") as mach:      # the in-memory kdump is overwritten
        s = mach.meminfo_report().table.segments[1]
        mach.memory.write(s.mem + 5000, b"scribbled over by a wild pointer")
        cpus = {c.address: c for c in mach.cpus}
    r = ipl(fresh_dev(base, "kd", "kdev"), m)
    assert r["decision"] == "kdump from device", r
    assert r["reason"].startswith("segment 1 (initrd)")
    out = str(tmp_path / "vmcore.elf")
    run_cli("vmcore.cli", "save", "--machine", m, "-o", out, check=True)
    from vmcore.formats import open_dump
    with open_dump(out) as d, PhysicalMemory(snap) as before:
        assert [(c.start, c.end) for c in d.chunks] == [(0, BASE)]
        skip = [(0, 0x2000)] + [(c.prefix + 0x1200, 0x200) for c in cpus.values()] + \
               [(mach_mcesa, 512) for mach_mcesa in ()]
        checked = 0
        pages = {p for s0, e0 in before.data_ranges(0, BASE) for p in range(s0 // 4096 * 4096, e0, 4096)}
        for p in sorted(pages):
            if any(a < p + 4096 and p < a + n for a, n in skip):
                continue
            if p in range(0x490000, 0x4B0000, 4096):          # vector save areas written at store status
                continue
            assert d.read(p, 4096) == before.read(p, 4096), hex(p)
            checked += 1
        assert checked > 1000
        assert sorted(c.prefix for c in d.cpus) == sorted(c.prefix for c in cpus.values())


def test_device_kdump_is_not_used_without_a_crashkernel(base):
    m = fresh(base, "noheader")
    with Machine.open(m, "write") as mach:
        mach.memory.write(mach.meminfo_pointer, b"XXXXXXXX")            # meminfo gone: no crashkernel known
    r = ipl(fresh_dev(base, "kd", "kdev"), m)
    assert r["decision"] == "full dump" and r["reason"].startswith("magic")
    assert any("not usable" in n for n in r["notes"])


def test_reipl_valid_block_corrupted_checksum_and_reipl_clear(base, tmp_path):
    r = ipl(fresh_dev(base, "d"), fresh(base, "reipl", "plain"))
    assert r["reipl"]["action"] == "re-IPL" and r["reipl"]["diag308"] == "LOAD_NORMAL_DUMP"
    m = fresh(base, "badipib", "plain")
    with Machine.open(m, "write") as mach:
        mach.memory.write_u32(LC_IPIB_CHECKSUM, mach.memory.read_u32(LC_IPIB_CHECKSUM) ^ 1)
    r = ipl(fresh_dev(base, "d"), m)
    assert r["reipl"]["action"] == "disabled wait" and "checksum" in r["reipl"]["detail"]
    assert r["reipl"]["wait_code"] == "0x0000"
    clear = str(tmp_path / "clear")
    run_cli("s390_machine.cli", "create", clear, "--memory", "128M", "--crashkernel", "32M", "--reipl-clear",
            check=True)
    r = ipl(fresh_dev(base, "d"), clear)
    assert r["reipl"]["diag308"] == "LOAD_CLEAR" and "REIPL_CLEAR" in r["reipl"]["detail"]
    with Machine.open(clear, "read") as mach:
        assert mach.state.status == "dumped" and "LOAD_CLEAR" in mach.state.psw_on_stop["what"]


def test_bad_input(base, tmp_path):
    m = fresh(base, "bad", "plain")
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(1 << 20))
    proc = run_cli("zipl_sadump.cli", "ipl", "--device", str(junk), "--machine", m)
    assert proc.returncode == 3 and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("zipl_sadump.cli", "ipl", "--device", base["dev"], "--machine", str(tmp_path))
    assert proc.returncode == 3 and "not a machine directory" in proc.stderr
    small = str(tmp_path / "small.img")
    run_cli("zipl_sadump.cli", "build", "--device", small, "--type", "eckd", "--size", "8M", check=True)
    big = str(tmp_path / "big")
    run_cli("s390_machine.cli", "create", big, "--memory", "256M", "--fill", "0.5", check=True)
    proc = run_cli("zipl_sadump.cli", "ipl", "--device", small, "--machine", big, "--no-compress", "--json")
    assert proc.returncode == 4
    r = json.loads(proc.stdout)
    assert not r["dump"]["complete"] and r["dump"]["needed"] > 8 * MIB
    with Machine.open(big, "read") as mach:
        assert mach.state.status == "disabled-wait"
