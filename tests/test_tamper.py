"""Issue 7: the tamper matrix of the two-stage decision.

A machine with a real kdump loaded (Debian s390x kernel + initrd).  For every byte of the
meminfo page, every byte of the kexec segment table, and a sample of every segment (the first
and the last byte and TAMPER_SAMPLES random offsets), flip the byte (XOR 0xFF), ask the
dumper's stage 1 (meminfo_abi.meminfo.check_meminfo on the machine's storage - what
`sadump ipl` decides with) and flip it back.  Every flip must give "full dump"
(kdump_intact False) and name the first failing check correctly:

  meminfo bytes 0-7          magic             (wait code 0x4520)
  meminfo bytes 8-4095       header checksum   (0x4521: the checksum covers 0x0C-0xFFF)
  segment table bytes        segment table     (0x4581: the table's CKSM in meminfo entry 200)
  segment N bytes            segment N (kind)  (0x4583: the segment's CKSM)

A handful of flips go through `sadump ipl` end to end.  Each region prints one summary line
(pytest -s), e.g. "tamper: 4096/4096 meminfo bytes -> full dump, 0 wrong decisions".
"""

from __future__ import annotations

import json
import os
import random

import pytest

from meminfo_abi.lowcore import LC_OS_INFO
from meminfo_abi.meminfo import (
    EKDUMP_SEGMENT_CSUM, EKDUMP_SEGTAB_INVALID, EOS_INFO_CSUM_FAILED, EOS_INFO_MISSING, MEMINFO_KEXEC_SEGMENTS,
    OS_INFO_SIZE, check_meminfo,
)
from s390_machine.machine import Machine
from tests.conftest import copy_machine, run_cli
from tests.realdata import debian_kernel, make_initrd

SAMPLES = int(os.environ.get("TAMPER_SAMPLES", "200"))
SEED = int(os.environ.get("TAMPER_SEED", "7"))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    d = tmp_path_factory.mktemp("tamper")
    path = str(d / "m")
    run_cli("s390_machine.cli", "create", path, "--memory", "256M", "--cpus", "2", "--crashkernel", "64M",
            check=True)
    initrd = make_initrd(str(d / "initrd.img"), payload_size=1 << 20)
    run_cli("kexec_s390.cli", "load", "-p", debian_kernel(), "--initrd", initrd, "--machine", path, check=True)
    return path


@pytest.fixture(scope="module")
def layout(loaded):
    """Where the meminfo page, the segment table and the segments are."""
    with Machine.open(loaded, "read") as m:
        rep = check_meminfo(m.memory)
        assert rep.kdump_intact, rep.reason
        table = rep.meminfo.entries[MEMINFO_KEXEC_SEGMENTS]
        return {"meminfo": m.memory.read_u64(LC_OS_INFO), "table": (table.addr, table.size),
                "segments": [(s.mem, s.memsz, s.kind_name) for s in rep.table.segments]}


def expected_meminfo(offset: int) -> tuple[str, int]:
    return ("magic", EOS_INFO_MISSING) if offset < 8 else ("header checksum", EOS_INFO_CSUM_FAILED)


def tamper(machine: str, addresses, expect) -> tuple[int, list[str], list[str]]:
    """Flip each address, decide, flip back.  Returns (flips, wrong decisions, wrong reasons)."""
    wrong_decision, wrong_reason = [], []
    n = 0
    with Machine.open(machine, "write") as m:
        mem = m.memory
        for addr in addresses:
            old = mem.read(addr, 1)
            mem.write(addr, bytes([old[0] ^ 0xFF]))
            try:
                rep = check_meminfo(mem)
            finally:
                mem.write(addr, old)
            n += 1
            name, code = expect(addr)
            f = rep.first_failure
            if rep.kdump_intact:
                wrong_decision.append(f"0x{addr:x}: kdump ({rep.reason})")
            elif f is None or f.name != name or f.wait_code != code:
                wrong_reason.append(f"0x{addr:x}: {rep.reason} (wait code {f and f.wait_code}), expected {name}")
        assert check_meminfo(mem).kdump_intact, "the machine was not restored after the flips"
    return n, wrong_decision, wrong_reason


def report(what: str, n: int, total: int, wrong_decision: list[str], wrong_reason: list[str]) -> None:
    print(f"\ntamper: {n}/{total} {what} \u2192 full dump, {len(wrong_decision)} wrong decisions, "
          f"{len(wrong_reason)} wrong reasons")
    assert not wrong_decision, wrong_decision[:10]
    assert not wrong_reason, wrong_reason[:10]
    assert n == total


def test_every_meminfo_byte(loaded, layout):
    base = layout["meminfo"]
    n, wd, wr = tamper(loaded, range(base, base + OS_INFO_SIZE), lambda a: expected_meminfo(a - base))
    report("meminfo bytes", n, OS_INFO_SIZE, wd, wr)


def test_every_segment_table_byte(loaded, layout):
    addr, size = layout["table"]
    n, wd, wr = tamper(loaded, range(addr, addr + size), lambda a: ("segment table", EKDUMP_SEGTAB_INVALID))
    report("segment table bytes", n, size, wd, wr)


def test_sampled_bytes_of_every_segment(loaded, layout):
    rng = random.Random(SEED)
    assert layout["segments"], "no segments loaded"
    for i, (mem, memsz, kind) in enumerate(layout["segments"]):
        offsets = sorted({0, memsz - 1} | set(rng.sample(range(1, memsz - 1), min(SAMPLES, memsz - 2))))
        name = f"segment {i} ({kind})"
        n, wd, wr = tamper(loaded, [mem + o for o in offsets], lambda a, name=name: (name, EKDUMP_SEGMENT_CSUM))
        report(f"sampled bytes of {name}, first and last included", n, len(offsets), wd, wr)
        assert n >= min(SAMPLES, memsz - 2) + 2


@pytest.mark.parametrize("region", ["none", "meminfo", "table", "segment-0", "segment-last"])
def test_sadump_ipl_end_to_end(region, loaded, layout, tmp_path):
    """The decision the dumper makes when IPLed: kdump when nothing was touched, else a full dump
    that names the first failing check."""
    machine = copy_machine(loaded, str(tmp_path / "m"))
    segs = layout["segments"]
    addr, expect = {
        "none": (None, None),
        "meminfo": (layout["meminfo"] + 0x10, "header checksum"),
        "table": (layout["table"][0] + 0x40, "segment table"),
        "segment-0": (segs[0][0] + segs[0][1] // 3, f"segment 0 ({segs[0][2]})"),
        "segment-last": (segs[-1][0] + segs[-1][1] - 1, f"segment {len(segs) - 1} ({segs[-1][2]})"),
    }[region]
    if addr is not None:
        with Machine.open(machine, "write") as m:
            m.memory.write(addr, bytes([m.memory.read(addr, 1)[0] ^ 0xFF]))
    dev = str(tmp_path / "dev.img")
    run_cli("zipl_sadump.cli", "build", "--device", dev, "--size", "300M", check=True)
    proc = run_cli("zipl_sadump.cli", "ipl", "--device", dev, "--machine", machine, "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    print(f"\ntamper via sadump ipl: {region} \u2192 {res['decision']} ({res['reason'][:70]})")
    if expect is None:
        assert res["decision"] == "kdump", res["reason"]
        return
    assert res["decision"] == "full dump"
    assert res["reason"].startswith(expect + ":"), res["reason"]
    assert res["dump"]["complete"], res["dump"]
