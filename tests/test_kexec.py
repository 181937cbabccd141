"""Issue 3: kexec-s390 loads a real Debian s390x kernel + initrd into crashkernel memory."""

import ctypes
import hashlib
import json
import os
import struct

import pytest

from kexec_s390.syscall import marshal_segments, parse_iomem_crashkernel
from meminfo_abi.kexec import kexec_segment
from meminfo_abi.checksum import csum_partial
from meminfo_abi.lowcore import LC_OS_INFO
from meminfo_abi.kexec import KEXEC_ARCH_S390, KEXEC_ON_CRASH, LoadSegment
from s390_machine.kexec import kexec_load
from s390_machine.machine import Machine
from s390_machine.state import MEMORY_FILE
from tests.conftest import cli_json, copy_machine, run_cli, tree_digest
from tests.realdata import debian_kernel, make_initrd

MIB = 1 << 20
CK_BASE = 0x30000000
CK_SIZE = 0x10000000


@pytest.fixture(scope="module")
def kernel():
    return debian_kernel()


@pytest.fixture(scope="module")
def initrd(tmp_path_factory):
    return make_initrd(str(tmp_path_factory.mktemp("initrd") / "initrd.img"), payload_size=3 * MIB)


@pytest.fixture
def machine(machine_1g, tmp_path):
    path = str(tmp_path / "m")
    copy_machine(machine_1g, path)
    return path


def kexec(*args):
    return run_cli("kexec_s390.cli", *args)


def load(machine, kernel, initrd, *extra):
    proc = kexec("load", "-p", kernel, "--initrd", initrd, "--machine", machine, *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


def expected_kernel_buffer(kernel, initrd_start, initrd_size, cmdline):
    """The kernel segment computed independently of the loader: file[0x10000:] with the parmarea
    fields patched at their kexec-tools offsets, zero-filled to a page."""
    data = bytearray(open(kernel, "rb").read()[0x10000:])
    struct.pack_into(">QQQQ", data, 0x408, initrd_start, initrd_size, CK_BASE, CK_SIZE)
    limit = struct.unpack_from(">Q", data, 0x430)[0] or 896
    data[0x480:0x480 + limit] = bytes(limit)
    data[0x480:0x480 + len(cmdline)] = cmdline.encode()
    return bytes(data) + bytes((-len(data)) % 4096)


def test_load_real_kernel_and_initrd(machine, kernel, initrd):
    load(machine, kernel, initrd, "--command-line", "console=ttysclp0", "--append", "nr_cpus=1")
    st = cli_json("kexec_s390.cli", "status", "--machine", machine)
    assert st["loaded"] and st["kdump_intact"] and st["header_valid"]
    assert all(c["ok"] for c in st["checks"])
    assert [s["kind"] for s in st["segments"]] == ["kernel", "initrd"]

    initrd_bytes = open(initrd, "rb").read()
    kernel_size = os.path.getsize(kernel)
    initrd_start = max(0x800000, (kernel_size + MIB - 1) // MIB * MIB)
    want_kernel = expected_kernel_buffer(kernel, initrd_start, len(initrd_bytes), "console=ttysclp0 nr_cpus=1")
    want_initrd = initrd_bytes + bytes((-len(initrd_bytes)) % 4096)
    with Machine.open(machine, "read") as m:
        mem = m.memory
        got = mem.read(CK_BASE + 0x10000, len(want_kernel))
        raw = open(kernel, "rb").read()
        # the bytes at crash base + 0x10000 are the image from file offset 0x10000 on ...
        assert got[:0x400] == raw[0x10000:0x10400]
        assert got[0x1000:len(raw) - 0x10000] == raw[0x11000:]
        # ... with the parameter area holding initrd start/size, OLDMEM base/size, the command line
        assert struct.unpack_from(">QQQQ", got, 0x408) == (initrd_start, len(initrd_bytes), CK_BASE, CK_SIZE)
        assert got[0x480:0x480 + 27] == b"console=ttysclp0 nr_cpus=1\0"
        assert got == want_kernel
        assert mem.read(CK_BASE + initrd_start, len(want_initrd)) == want_initrd
    # the SHA-256 equals one computed independently, in purgatory order (kernel, initrd)
    rep = cli_json("kexec_s390.cli", "load", "-p", kernel, "--initrd", initrd, "--machine", machine,
                   "--command-line", "console=ttysclp0", "--append", "nr_cpus=1")
    assert rep["sha256"] == hashlib.sha256(want_kernel + want_initrd).hexdigest()
    assert rep["segments"][0]["csum"] == f"0x{csum_partial(want_kernel):08x}"
    assert rep["flags"] == hex(KEXEC_ON_CRASH | KEXEC_ARCH_S390) == "0x160001"
    assert rep["entry"] == "0x10010"


@pytest.mark.slow
def test_flipping_a_byte_in_any_segment_fails_its_checksum(machine, kernel, initrd):
    load(machine, kernel, initrd)
    st = cli_json("kexec_s390.cli", "status", "--machine", machine)
    segs = [(int(s["mem"], 16), int(s["memsz"], 16)) for s in st["segments"]]
    img = os.path.join(machine, MEMORY_FILE)
    import random
    rnd = random.Random(3)
    for index, (mem, memsz) in enumerate(segs):
        for off in [0, memsz - 1] + [rnd.randrange(memsz) for _ in range(3)]:
            with open(img, "r+b") as fh:
                fh.seek(mem + off)
                b = fh.read(1)
                fh.seek(mem + off)
                fh.write(bytes([b[0] ^ 0x10]))
            proc = kexec("status", "--machine", machine, "--json")
            assert proc.returncode == 1
            rep = json.loads(proc.stdout)
            failed = [c for c in rep["checks"] if not c["ok"]]
            assert failed[0]["check"].startswith(f"segment {index} ") and failed[0]["wait_code"] == "0x4583"
            with open(img, "r+b") as fh:
                fh.seek(mem + off)
                fh.write(b)
    assert cli_json("kexec_s390.cli", "status", "--machine", machine)["kdump_intact"]


def test_reload_replaces_and_unload_clears(machine, kernel, initrd, tmp_path):
    load(machine, kernel, initrd)
    small = make_initrd(str(tmp_path / "small.img"))
    load(machine, kernel, small)
    st = cli_json("kexec_s390.cli", "status", "--machine", machine)
    assert st["kdump_intact"] and int(st["segments"][1]["bufsz"], 16) == os.path.getsize(small)
    assert json.loads(kexec("unload", "-p", "--machine", machine, "--json").stdout) == {"unloaded": True}
    proc = kexec("status", "--machine", machine, "--json")
    rep = json.loads(proc.stdout)
    assert proc.returncode == 1 and not rep["loaded"] and rep["header_valid"]
    assert rep["checks"][-1]["check"] == "kdump loaded" and rep["checks"][-1]["wait_code"] == "0x4580"
    with Machine.open(machine, "read") as m:
        assert m.memory.read(CK_BASE + 0x2000, 0x1000) == bytes(0x1000)


def test_dry_run_without_a_machine(kernel, initrd):
    d = cli_json("kexec_s390.cli", "load", "-p", kernel, "--initrd", initrd, "--dry-run",
                 "--crashkernel", "0x30000000:256M")
    assert d["target"] == "dry run"
    assert [s["mem"] for s in d["segments"]] == [hex(CK_BASE + 0x10000), hex(CK_BASE + 0x800000)]
    assert all(len(s["sha256"]) == 64 for s in d["segments"])
    assert d["kernel"]["version"].startswith("6.1.0-")
    proc = kexec("load", "-p", kernel, "--dry-run", "-d", "--crashkernel", "0x30000000:256M")
    assert "nr_segments = 1" in proc.stderr and "segment[0].mem   = 0x30010000" in proc.stderr
    assert "kexec_load: entry = 0x10010 flags = 0x160001" in proc.stderr


def test_real_syscall_is_refused_off_s390x(kernel, initrd):
    proc = kexec("load", "-p", kernel, "--initrd", initrd)
    assert proc.returncode == 6
    assert "not s390x" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_syscall_argument_marshalling(tmp_path):
    assert kexec_segment.sizeof() == 32        # 4 x 8 bytes: buf, bufsz, mem, memsz
    f = tmp_path / "initrd"
    f.write_bytes(b"I" * 5000)
    segs = [LoadSegment(mem=CK_BASE + 0x10000, memsz=0x2000, kind=1, bufsz=0x1234, data=b"K" * 0x1234),
            LoadSegment(mem=CK_BASE + 0x800000, memsz=0x2000, kind=2, bufsz=5000, path=str(f))]
    arr, keep = marshal_segments(segs)
    assert ctypes.sizeof(arr) == 64 and keep
    raw = ctypes.string_at(ctypes.addressof(arr), 64)
    first = struct.unpack_from("=QQQQ", raw, 0)
    second = struct.unpack_from("=QQQQ", raw, 32)
    assert first[1:] == (0x1234, CK_BASE + 0x10000, 0x2000)
    assert ctypes.string_at(first[0], 4) == b"KKKK"
    assert second[1:] == (5000, CK_BASE + 0x800000, 0x2000)
    assert ctypes.string_at(second[0], 5000) == b"I" * 5000
    iomem = "00000000-3fffffff : System RAM\n  00100000-0092afff : Kernel code\n" \
            "  30000000-3fffffff : Crash kernel\n"
    assert parse_iomem_crashkernel(iomem) == (0x30000000, 0x10000000)
    assert parse_iomem_crashkernel("00000000-3fffffff : System RAM\n") is None


def test_io_error_halfway_leaves_the_machine_unchanged(machine, kernel, initrd):
    load(machine, kernel, initrd)                 # a previous kdump must survive a failed reload
    before = tree_digest(machine)
    from meminfo_abi.kernel_image import read_kernel_image
    from kexec_s390.plan import plan_load
    from dumpkit.errors import DumpIOError
    plan = plan_load(read_kernel_image(kernel), initrd, "x", kdump=True, crash_base=CK_BASE, crash_size=CK_SIZE)
    with Machine.open(machine, "write") as m:
        with pytest.raises(DumpIOError):
            kexec_load(m, plan.entry, plan.segments, plan.flags, fail_after=6 * MIB)
    assert tree_digest(machine) == before
    assert cli_json("kexec_s390.cli", "status", "--machine", machine)["kdump_intact"]


def _x86_bzimage(path):
    data = bytearray(0x20000)
    data[0:2] = b"MZ"
    data[0x202:0x206] = b"HdrS"
    path.write_bytes(bytes(data))
    return str(path)


def _elf(path, machine):
    hdr = bytearray(64)
    hdr[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HH", hdr, 16, 2, machine)
    path.write_bytes(bytes(hdr) + bytes(0x20000))
    return str(path)


@pytest.mark.parametrize("case", ["missing", "directory", "x86", "elf-x86_64", "empty", "truncated-head",
                                  "truncated-body", "initrd-too-large", "cmdline-too-long",
                                  "no-crashkernel", "no-meminfo", "initrd-missing"])
def test_bad_input_leaves_machine_unchanged(case, machine, kernel, initrd, tmp_path, tmp_path_factory):
    k, i, extra, target = kernel, initrd, [], machine
    message = None
    if case == "missing":
        k, message = str(tmp_path / "nope"), "does not exist"
    elif case == "directory":
        k, message = str(tmp_path), "is a directory"
    elif case == "x86":
        k, message = _x86_bzimage(tmp_path / "bzImage"), "x86 bzImage"
    elif case == "elf-x86_64":
        k, message = _elf(tmp_path / "vmlinux", 62), "ELF file for x86-64"
    elif case == "empty":
        (tmp_path / "empty").write_bytes(b"")
        k, message = str(tmp_path / "empty"), "is empty"
    elif case == "truncated-head":
        (tmp_path / "t").write_bytes(open(kernel, "rb").read()[:0x11000])
        k, message = str(tmp_path / "t"), "truncated"
    elif case == "truncated-body":
        (tmp_path / "t").write_bytes(open(kernel, "rb").read()[:0x18000])
        k, message = str(tmp_path / "t"), "truncated"
    elif case == "initrd-too-large":
        big = tmp_path / "big.img"
        with open(big, "wb") as fh:
            fh.truncate(CK_SIZE)
        i, message = str(big), "not enough crashkernel memory"
    elif case == "cmdline-too-long":
        extra, message = ["--command-line", "x" * 5000], "command line of 5000 bytes is too long"
    elif case == "no-crashkernel":
        target = str(tmp_path_factory.mktemp("nock") / "m")
        run_cli("s390_machine.cli", "create", target, "--memory", "128M", check=True)
        message = "no crashkernel memory is reserved"
    elif case == "no-meminfo":
        with Machine.open(machine, "write") as m:
            m.memory.write_u64(LC_OS_INFO, 0)
        message = "no valid meminfo"
    elif case == "initrd-missing":
        i, message = str(tmp_path / "none.img"), "initrd"
    before = tree_digest(target)
    proc = kexec("load", "-p", k, "--initrd", i, "--machine", target, *extra)
    assert proc.returncode == 3, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert tree_digest(target) == before


# -- issue 21: the real host (kexec_load(2) with a purgatory page, unload, status from sysfs) --

def test_purgatory_code_is_what_purgatory_s_assembles_to(tmp_path):
    """The bytes in kexec_s390/purgatory.py are purgatory.S, assembled and linked as its header says."""
    import shutil
    import subprocess
    from kexec_s390 import purgatory
    tools = [f"s390x-linux-gnu-{t}" for t in ("as", "ld", "objcopy")]
    if any(shutil.which(t) is None for t in tools):
        pytest.skip("binutils-s390x-linux-gnu is not installed")
    src = os.path.join(os.path.dirname(purgatory.__file__), "purgatory.S")
    o, elf, binary = (str(tmp_path / n) for n in ("p.o", "p.elf", "p.bin"))
    subprocess.run([tools[0], "-m64", "-o", o, src], check=True)
    subprocess.run([tools[1], "-m", "elf64_s390", "-Ttext=0x2800", "--defsym", "segtab=0x2000",
                    "--defsym", "startup_kdump=0x10010", "-e", "_start", "-o", elf, o], check=True)
    subprocess.run([tools[2], "-O", "binary", "-j", ".text", elf, binary], check=True)
    assert open(binary, "rb").read() == purgatory.CODE


def test_real_load_adds_the_purgatory_page_with_the_simulators_table(machine, kernel, initrd):
    """The real kdump load is the simulator's plan plus one page at crash base + 0x2000: the very
    segment table the simulated kernel records there (byte for byte), the purgatory code at +0x800,
    the kexec entry inside the crashkernel memory (the kernel refuses one outside)."""
    from kexec_s390 import purgatory
    from kexec_s390.plan import plan_load
    from meminfo_abi.kernel_image import read_kernel_image
    from meminfo_abi.kexec import SEGTAB_OFFSET
    from meminfo_abi.meminfo import KexecSegmentTable
    load(machine, kernel, initrd, "--command-line", "console=ttysclp0")
    plan = plan_load(read_kernel_image(kernel), initrd, "console=ttysclp0", kdump=True,
                     crash_base=CK_BASE, crash_size=CK_SIZE)
    entry, segs, table = purgatory.add_purgatory(CK_BASE, plan.entry, plan.segments)
    assert entry == CK_BASE + 0x2800 and CK_BASE <= entry < CK_BASE + CK_SIZE
    assert [s.name for s in segs] == ["kernel", "initrd", "purgatory"]
    page = segs[-1]
    assert (page.mem, page.memsz, page.bufsz) == (CK_BASE + SEGTAB_OFFSET, 0x1000, 0x1000)
    raw = table.to_bytes()
    with Machine.open(machine, "read") as m:
        simulated = m.memory.read(CK_BASE + SEGTAB_OFFSET, len(raw))
    assert simulated == raw == page.data[:len(raw)]
    parsed = KexecSegmentTable.parse(page.data)
    assert parsed.entry == 0x10010        # where the kdump kernel starts after the swap
    assert [s.csum for s in parsed.segments] == [csum_partial(segs[0].data),      # the patched kernel buffer
                                                 csum_partial(open(initrd, "rb").read())]
    assert page.data[0x800:0x800 + len(purgatory.CODE)] == purgatory.CODE
    assert not any(page.data[len(raw):0x800]) and not any(page.data[0x800 + len(purgatory.CODE):])


def test_real_status_reads_sysfs_and_iomem(tmp_path):
    from kexec_s390.ops import real_status
    sysk = tmp_path / "sys"
    sysk.mkdir()
    (sysk / "kexec_crash_loaded").write_text("1\n")
    (sysk / "kexec_crash_size").write_text(f"{CK_SIZE}\n")
    iomem = tmp_path / "iomem"
    iomem.write_text("00000000-3fffffff : System RAM\n  30000000-3fffffff : Crash kernel\n")
    st = real_status(str(sysk), str(iomem))
    assert st["loaded"] and st["kdump_intact"] and st["crashkernel"] == {"base": hex(CK_BASE), "size": hex(CK_SIZE)}
    assert any("kexec_crash_loaded = 1" in c["detail"] for c in st["checks"])
    (sysk / "kexec_crash_loaded").write_text("0\n")
    st = real_status(str(sysk), str(iomem))
    assert not st["loaded"] and not st["kdump_intact"] and "kexec_crash_loaded = 0" in st["reason"]
    (sysk / "kexec_crash_loaded").unlink()
    from dumpkit.errors import UnsupportedError
    with pytest.raises(UnsupportedError, match="kexec_crash_loaded does not exist"):
        real_status(str(sysk), str(iomem))


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["unload", "-p"], ["unload"]])
def test_status_and_unload_without_machine_need_an_s390x_host(args):
    proc = kexec(*args)
    assert proc.returncode == 6, proc.stderr
    assert "not s390x" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
