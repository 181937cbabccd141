"""Issue 2: the simulated machine - create, show, import, bad input."""

import json
import os
import struct

import pytest

from meminfo_abi.elfcore import PT_NOTE, ehdr_bytes, phdr_bytes
from meminfo_abi.elfnotes import cpu_notes
from meminfo_abi.locate import find_vmcoreinfo
from meminfo_abi.lowcore import LC_OS_INFO, LC_VMCORE_INFO
from meminfo_abi.meminfo import check_meminfo
from s390_machine.machine import Machine
from s390_machine.state import MEMORY_FILE
from tests.conftest import cli_json, copy_machine, run_cli, tree_digest

MIB = 1 << 20
GIB = 1 << 30


def test_create_reports_valid_meminfo_crashkernel_and_cpus(machine_1g):
    d = cli_json("s390_machine.cli", "show", machine_1g)
    assert d["memory_size"] == GIB
    assert d["meminfo"]["header_valid"] is True
    assert d["crashkernel"] == {"base": GIB - 256 * MIB, "size": 256 * MIB}
    assert d["meminfo"]["crashkernel"] == {"base": hex(GIB - 256 * MIB), "size": hex(256 * MIB)}
    assert len(d["cpus"]) == 2
    assert d["vmcoreinfo"]["osrelease"] == "6.1.0-s390dumptools"
    assert d["vmcoreinfo"]["source"] == "meminfo entry 0"
    # the default, human table form names the same facts
    out = run_cli("s390_machine.cli", "show", machine_1g, check=True).stdout
    assert "intact (os_info 1.1)" in out and "0x30000000-0x3fffffff" in out and "2 CPUs" in out


def test_create_is_sparse(machine_1g):
    st = os.stat(os.path.join(machine_1g, MEMORY_FILE))
    assert st.st_size == GIB
    assert st.st_blocks * 512 < 100 * MIB


def test_memory_image_is_pmemsave_layout(machine_1g):
    """Absolute address N is file offset N: the lowcore pointers read straight from the file."""
    with open(os.path.join(machine_1g, MEMORY_FILE), "rb") as fh:
        fh.seek(LC_OS_INFO)
        meminfo = struct.unpack(">Q", fh.read(8))[0]
        fh.seek(meminfo)
        assert fh.read(8) == b"OSINFOSZ"
        fh.seek(LC_VMCORE_INFO)
        note = struct.unpack(">Q", fh.read(8))[0]
        fh.seek(note + 12)
        assert fh.read(11) == b"VMCOREINFO\0"
        fh.seek(0x10008)
        assert fh.read(6) == b"S390EP"


def test_cpus_have_distinct_lowcores(machine_1g):
    with Machine.open(machine_1g, "read") as m:
        prefixes = [c.prefix for c in m.cpus]
        assert len(set(prefixes)) == 2 and all(p % 0x2000 == 0 and p >= 0x10000 for p in prefixes)
        for c in m.cpus:
            assert m.memory.read_u16(c.prefix + 0x84) == c.address
            # real address 0x84 of this CPU is its own lowcore
            assert m.read_real(c, 0x84, 2) == c.address.to_bytes(2, "big")
            assert c.vxrs is not None and len(c.vxrs) == 512
        vi = find_vmcoreinfo(m.memory).info
        assert vi.symbol("lowcore_ptr") is not None and vi.length("lowcore_ptr") == 64
        for i, c in enumerate(m.cpus):
            assert m.memory.read_u64(vi.symbol("lowcore_ptr") + 8 * i) == c.prefix


def test_every_meminfo_byte_flip_makes_show_invalid(machine_1g, tmp_path):
    path = str(tmp_path / "m")
    copy_machine(machine_1g, path)
    with Machine.open(path, "write") as m:
        page = m.meminfo_pointer
        reasons = {}
        for off in range(4096):
            m.memory.write(page + off, bytes([m.memory.read(page + off, 1)[0] ^ 0x01]))
            rep = check_meminfo(m.memory)
            assert not rep.header_valid, f"flip at +0x{off:x} not detected"
            reasons.setdefault(rep.first_failure.name, []).append(off)
            m.memory.write(page + off, bytes([m.memory.read(page + off, 1)[0] ^ 0x01]))
        m.memory.flush()
    assert set(reasons) == {"magic", "header checksum"}
    assert reasons["magic"] == list(range(8))
    # and the CLI says so, with the reason
    with Machine.open(path, "write") as m:
        m.memory.write(m.meminfo_pointer + 0x10, b"\xff")
    d = cli_json("s390_machine.cli", "show", path)
    assert d["meminfo"]["header_valid"] is False
    assert d["meminfo"]["reason"].startswith("header checksum")


@pytest.mark.parametrize("args, message", [
    (["--memory", "1000K"], "not a multiple of 1 MiB"),
    (["--memory", "1G", "--crashkernel", "256M@1G"], "outside memory"),
    (["--memory", "1G", "--crashkernel", "2G"], "outside memory"),
    (["--memory", "1G", "--crashkernel", "4M@0"], "overlaps the lowcore"),
    (["--memory", "1G", "--crashkernel", "256M@128M"], "overlaps [0, 0x10000000)"),
    (["--memory", "1G", "--crashkernel", "100K"], "not a multiple of 1 MiB"),
    (["--memory", "1G", "--cpus", "0"], "cpu count"),
])
def test_create_bad_input(tmp_path, args, message):
    path = tmp_path / "m"
    proc = run_cli("s390_machine.cli", "create", str(path), *args)
    assert proc.returncode == 3
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == []   # nothing left behind, not even a temporary


def test_create_size_that_is_not_a_size_is_a_usage_error(tmp_path):
    proc = run_cli("s390_machine.cli", "create", str(tmp_path / "m"), "--memory", "lots")
    assert proc.returncode == 2 and "not a size" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and os.listdir(tmp_path) == []


def test_show_rejects_what_is_not_a_machine(tmp_path, machine_1g):
    proc = run_cli("s390_machine.cli", "show", str(tmp_path))
    assert proc.returncode == 3 and "not a machine directory" in proc.stderr
    proc = run_cli("s390_machine.cli", "show", str(tmp_path / "missing"))
    assert proc.returncode == 3 and "not a machine directory" in proc.stderr
    (tmp_path / "machine.json").write_text("{not json")
    proc = run_cli("s390_machine.cli", "show", str(tmp_path))
    assert proc.returncode == 3 and "not valid JSON" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_truncated_memory_image_is_reported(tmp_path, machine_1g):
    path = tmp_path / "m"
    copy_machine(machine_1g, path)
    os.truncate(path / MEMORY_FILE, GIB - 4096)
    before = tree_digest(str(path))
    proc = run_cli("s390_machine.cli", "show", str(path))
    assert proc.returncode == 3 and "truncated" in proc.stderr
    assert tree_digest(str(path)) == before


def test_create_refuses_existing_directory(tmp_path, machine_1g):
    before = tree_digest(machine_1g)
    proc = run_cli("s390_machine.cli", "create", machine_1g, "--memory", "64M")
    assert proc.returncode == 3 and "already exists" in proc.stderr
    assert tree_digest(machine_1g) == before


def test_import_of_a_memory_image_with_cpus_from_an_elf_dump(tmp_path, machine_1g):
    """import wraps a raw image: the meminfo, crashkernel and vmcoreinfo are found in it."""
    with Machine.open(machine_1g, "read") as m:
        cpus = m.cpus
    notes = b"".join(cpu_notes(c, i + 1) for i, c in enumerate(cpus))
    elf = tmp_path / "qemu.elf"
    elf.write_bytes(ehdr_bytes(1) + phdr_bytes(PT_NOTE, 64 + 56, 0, 0, len(notes), 0) + notes)
    path = str(tmp_path / "imp")
    d = cli_json("s390_machine.cli", "import", path, "--memory", os.path.join(machine_1g, MEMORY_FILE),
                 "--cpus-from", str(elf))
    assert d["meminfo"]["header_valid"] is True
    assert d["crashkernel"] == {"base": GIB - 256 * MIB, "size": 256 * MIB}
    assert d["kernel"]["release"] == "6.1.0-s390dumptools"
    assert "crashkernel=256M@768M" in d["kernel"]["command_line"]
    with Machine.open(path, "read") as imp:
        assert [(c.psw_addr, c.gprs, c.prefix, c.vxrs) for c in imp.cpus] == \
               [(c.psw_addr, c.gprs, c.prefix, c.vxrs) for c in cpus]
    st = os.stat(os.path.join(path, MEMORY_FILE))
    assert st.st_blocks * 512 < 100 * MIB      # the copy stayed sparse


def test_import_bad_input(tmp_path):
    odd = tmp_path / "odd.img"
    odd.write_bytes(b"\0" * 5000)
    proc = run_cli("s390_machine.cli", "import", str(tmp_path / "x"), "--memory", str(odd))
    assert proc.returncode == 3 and "whole number of pages" in proc.stderr
    proc = run_cli("s390_machine.cli", "import", str(tmp_path / "x"), "--memory", str(tmp_path / "none"))
    assert proc.returncode == 3 and "does not exist" in proc.stderr
    img = tmp_path / "ok.img"
    img.write_bytes(b"\0" * 65536)
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"garbage" * 20)
    proc = run_cli("s390_machine.cli", "import", str(tmp_path / "x"), "--memory", str(img), "--cpus-from", str(junk))
    assert proc.returncode == 3 and "not an ELF file" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_create_progress_counts_the_data_it_writes(tmp_path):
    """Creating a big machine takes seconds: --progress draws a bar on stderr that ends at the
    data written (the fill MiBs), and --json stays clean on stdout."""
    from s390_machine.synth import SynthOptions, data_mibs, validate

    path = str(tmp_path / "m")
    proc = run_cli("s390_machine.cli", "create", path, "--memory", "256M", "--fill", "0.5", "--progress",
                   "--json", check=True)
    json.loads(proc.stdout)
    opts = SynthOptions(memory_size=256 << 20, fill=0.5)
    mib = len(data_mibs(opts, validate(opts)))
    assert mib > 100
    assert "creating" in proc.stderr and f"{mib}.0/{mib}.0 MiB" in proc.stderr, proc.stderr
    quiet = run_cli("s390_machine.cli", "create", str(tmp_path / "q"), "--memory", "256M", "--no-progress",
                    check=True)
    assert "creating" not in quiet.stderr
