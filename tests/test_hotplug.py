"""Issue 10: hotplug after kexec-s390 load; the kdump kernel's header follows the machine as it was
at the crash, while a header prepared at load time (kexec-tools' way elsewhere) goes stale."""

import pytest

from s390_machine.machine import Machine
from tests.conftest import cli_json, run_cli
from tests.realdata import debian_kernel, make_initrd
from vmcore.formats import open_dump

MIB = 1 << 20
MARK = b"HOT-ADDED MEMORY PAGE"


@pytest.fixture(scope="module")
def plugged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hotplug")
    m = str(tmp / "m")
    run_cli("s390_machine.cli", "create", m, "--memory", "512M", "--cpus", "2", "--crashkernel", "128M@256M",
            check=True)
    run_cli("kexec_s390.cli", "load", "-p", debian_kernel(), "--initrd", make_initrd(str(tmp / "i.img")),
            "--machine", m, check=True)
    # what a header built at load time would describe (kexec-tools' approach on other architectures)
    with Machine.open(m, "read") as mach:
        load_time = {"cpus": sorted(c.address for c in mach.cpus),
                     "ram": [(0, 256 * MIB), (384 * MIB, 512 * MIB)]}
    assert cli_json("s390_machine.cli", "hotplug", m, "--add-cpu", "--add-memory", "256M") == \
        {"memory_size": 768 * MIB, "added_cpu": 2}
    with Machine.open(m, "write") as mach:
        mach.memory.write(700 * MIB, MARK)
        added = next(c for c in mach.cpus if c.address == 2)
    assert cli_json("s390_machine.cli", "hotplug", m, "--remove-cpu", "1") == {"removed_cpu": 1}
    run_cli("s390_machine.cli", "panic", m, check=True)
    out = str(tmp / "vmcore.elf")
    run_cli("vmcore.cli", "save", "--machine", m, "-o", out, check=True)
    return out, load_time, added


def test_vmcore_has_exactly_the_cpus_and_memory_at_the_crash(plugged):
    out, _, added = plugged
    with open_dump(out) as d:
        assert [(c.start, c.end) for c in d.chunks] == [(0, 256 * MIB), (384 * MIB, 768 * MIB)]
        assert d.read(700 * MIB, len(MARK)) == MARK
        prefixes = sorted(c.prefix for c in d.cpus)
        assert len(d.cpus) == 2 and added.prefix in prefixes
        hot = next(c for c in d.cpus if c.prefix == added.prefix)
        assert (hot.psw_addr, hot.gprs, hot.vxrs) == (added.psw_addr, added.gprs, added.vxrs)
    regs = cli_json("vmcore.cli", "regs", out)
    assert any(int(r["prefix"], 16) == added.prefix for r in regs)        # vmcore regs lists the new CPU


def test_a_load_time_header_would_have_been_wrong(plugged):
    out, load_time, added = plugged
    with open_dump(out) as d:
        at_crash_ram = [(c.start, c.end) for c in d.chunks]
        at_crash_cpus = len(d.cpus)
    # the load-time header misses the added memory (and the data in it) ...
    covered = lambda addr, ranges: any(s <= addr < e for s, e in ranges)  # noqa: E731
    assert covered(700 * MIB, at_crash_ram) and not covered(700 * MIB, load_time["ram"])
    # ... and describes CPU 1, which was gone at the crash, but not CPU 2, which was there
    assert 1 in load_time["cpus"] and 2 not in load_time["cpus"]
    assert at_crash_cpus == 2


def test_hotplug_bad_input(plugged, machine_1g):
    proc = run_cli("s390_machine.cli", "hotplug", machine_1g, "--add-memory", "1000K")
    assert proc.returncode == 3 and "multiple of 1 MiB" in proc.stderr
    proc = run_cli("s390_machine.cli", "hotplug", machine_1g, "--remove-cpu", "7")
    assert proc.returncode == 3 and "no CPU 7" in proc.stderr
    proc = run_cli("s390_machine.cli", "hotplug", machine_1g)
    assert proc.returncode == 2 and "say what to plug" in proc.stderr
