"""Issue 6: inspection commands on the dump model, whatever the format."""

import json
import os

import pytest

from s390_machine.machine import Machine
from tests.conftest import cli_json, run_cli
from tests.realdata import debian_kernel, make_initrd


@pytest.fixture(scope="module", params=["ringbuffer", "legacy"])
def crashed_elf(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"inspect-{request.param}")
    m = str(tmp / "m")
    run_cli("s390_machine.cli", "create", m, "--memory", "256M", "--cpus", "2", "--crashkernel", "64M",
            "--printk", request.param, check=True)
    initrd = make_initrd(str(tmp / "initrd.img"))
    run_cli("kexec_s390.cli", "load", "-p", debian_kernel(), "--initrd", initrd, "--machine", m, check=True)
    run_cli("s390_machine.cli", "panic", m, "--message", "test marker 4711", check=True)
    out = str(tmp / "vmcore.elf")
    run_cli("vmcore.cli", "save", "--machine", m, "-o", out, check=True)
    with Machine.open(m, "read") as mach:
        written = list(mach.state.kernel["printk_log"])
    return out, written, request.param


def test_dmesg_prints_every_record_in_order_with_timestamps(crashed_elf):
    out, written, layout = crashed_elf
    text = run_cli("vmcore.cli", "dmesg", out, check=True).stdout.splitlines()
    want = [f"[{r['ts_nsec'] // 10**9:5d}.{r['ts_nsec'] % 10**9 // 1000:06d}] {r['text']}" for r in written]
    assert text == want
    assert any("Kernel panic - not syncing: test marker 4711" in line for line in text)
    recs = cli_json("vmcore.cli", "dmesg", out)
    assert [r["ts_nsec"] for r in recs] == [r["ts_nsec"] for r in written]
    assert [r["level"] for r in recs] == [r["level"] for r in written]


def test_info_regs_vmcoreinfo_read(crashed_elf):
    out, _, _ = crashed_elf
    info = cli_json("vmcore.cli", "info", out)
    assert info["format"] == "elf" and info["complete"] and info["cpus"] == 2
    assert info["vmcoreinfo"]["osrelease"] == "6.1.0-s390dumptools"
    assert info["vmcoreinfo"]["crashtime"] is not None
    assert info["meminfo"]["header_valid"]
    regs = cli_json("vmcore.cli", "regs", out, "--cpu", "1")
    assert len(regs) == 1 and regs[0]["index"] == 1
    text = run_cli("vmcore.cli", "vmcoreinfo", out, check=True).stdout
    assert "OSRELEASE=6.1.0-s390dumptools\n" in text and "SYMBOL(prb)=" in text or "SYMBOL(log_buf)=" in text
    data = cli_json("vmcore.cli", "read", out, "0x10008", "6")
    assert bytes.fromhex(data["data"]) == b"S390EP"      # the old kernel's image head at 0x10000
    hexdump = run_cli("vmcore.cli", "read", out, "0x10000", "32", check=True).stdout
    assert hexdump.startswith("0000000000010000  ") and "S390EP" in hexdump


def test_inspection_errors_are_one_line(tmp_path, crashed_elf):
    out, _, _ = crashed_elf
    garbage = tmp_path / "garbage"
    garbage.write_bytes(os.urandom(8192))
    proc = run_cli("vmcore.cli", "info", str(garbage))
    assert proc.returncode == 3 and "unknown dump format" in proc.stderr
    proc = run_cli("vmcore.cli", "regs", out, "--cpu", "9")
    assert proc.returncode == 3 and "not 9" in proc.stderr
    trunc = tmp_path / "trunc.elf"
    with open(out, "rb") as src, open(trunc, "wb") as dst:
        dst.write(src.read(64 << 20))
    proc = run_cli("vmcore.cli", "info", str(trunc), "--json")
    assert proc.returncode == 4
    info = json.loads(proc.stdout)
    assert not info["complete"] and "0x" in info["incomplete_reason"]
    for p in (proc,):
        assert "Traceback" not in p.stderr
