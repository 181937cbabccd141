"""`vmcore mount` / `vmcore umount` (issue 20): a dump read from a device image, served as
DIR/dump.elf on demand, opened by gdb, eu-readelf, libkdumpfile, drgn and zgetdump 2.35."""
from __future__ import annotations

import json
import os
import random
import subprocess
import time

import pytest

from tests.conftest import peer_drgn, peer_kdumpfile, run_cli
from tests.realdata import s390x_peers
from tests.test_elf_format import assert_drgn_reads_the_same, gdb_registers
from vmcore.formats import open_dump
from vmcore.model import page_digests

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse on this host")


def mount_processes(directory: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "vmcore" in cmd and " mount " in cmd and directory in cmd:
            found.append(f"{pid}: {cmd}")
    return found


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """A full stand-alone dump of a 2-CPU machine on an ECKD device image, and the machine."""
    d = tmp_path_factory.mktemp("mount")
    m, dev = str(d / "m"), str(d / "dasd.img")
    run_cli("s390_machine.cli", "create", m, "--memory", "128M", "--cpus", "2", "--crashkernel", "32M",
            "--fill", "0.25", check=True)
    run_cli("zipl_sadump.cli", "build", "--device", dev, "--type", "eckd", "--size", "512M", check=True)
    run_cli("zipl_sadump.cli", "ipl", "--device", dev, "--machine", m, "--kdump", "off", "--no-map", check=True)
    return d, m, dev


@pytest.fixture
def mounted(device, tmp_path):
    d, m, dev = device
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    proc = run_cli("vmcore.cli", "mount", dev, mnt)
    assert proc.returncode == 0, proc.stderr
    assert f"{mnt}/dump.elf" in proc.stdout
    try:
        yield dev, mnt, os.path.join(mnt, "dump.elf")
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", mnt])


def test_mounted_device_dump_is_what_convert_writes(mounted, tmp_path):
    dev, mnt, path = mounted
    conv = str(tmp_path / "conv.elf")
    run_cli("vmcore.cli", "convert", dev, "-o", conv, "-f", "elf", check=True)
    assert os.path.getsize(path) == os.path.getsize(conv)
    with open(path, "rb") as a, open(conv, "rb") as b:
        while True:
            x, y = a.read(1 << 22), b.read(1 << 22)
            assert x == y
            if not x:
                break
    assert os.stat(path).st_mode & 0o777 == 0o400          # dumps are private, and read-only
    with pytest.raises(OSError):
        open(path, "r+b")


def test_peers_open_the_mounted_file(mounted, device):
    _d, m, _dev = device
    dev, mnt, path = mounted
    out = subprocess.run(["eu-readelf", "-h", "-l", "-n", path], capture_output=True, text=True, check=True)
    assert out.stdout.count("PRSTATUS") == 2 and "CORE (Core file)" in out.stdout
    from s390_machine.state import load_state
    state = load_state(m)
    for thread, cpu in ((1, state.cpu(0)), (2, state.cpu(1))):
        regs = gdb_registers(path, f"thread {thread}", "info registers pswm pswa r15")
        assert (regs["pswm"], regs["pswa"], regs["r15"]) == (cpu.psw_mask, cpu.psw_addr, cpu.gprs[15])
    kdumpfile = peer_kdumpfile()
    ctx = kdumpfile.kdumpfile(path)
    with open_dump(dev) as src:
        page = sorted(page_digests(src))[3]
        assert ctx.read(kdumpfile.KDUMP_MACHPHYSADDR, page, 4096) == src.read(page, 4096)
    assert_drgn_reads_the_same(peer_drgn(), path)


def test_500_random_pages_through_the_mount_equal_the_source(mounted):
    dev, mnt, path = mounted
    from vmcore.formats.elf import read_elf
    rng = random.Random(20)
    with open_dump(dev) as src, read_elf(path) as view:
        pages = rng.sample(sorted(page_digests(src)), 480)                 # pages holding data
        pages += [rng.randrange(src.size // 4096) * 4096 for _ in range(20)]  # anywhere, zeros too
        for p in pages:
            assert view.read(p, 4096) == src.read(p, 4096), hex(p)
        assert len(view.cpus) == len(src.cpus) == 2


def test_zgetdump_235_reads_the_mounted_file(mounted, tmp_path):
    dev, mnt, path = mounted
    zgetdump = s390x_peers()["ZGETDUMP"]
    proc = subprocess.run([*zgetdump, "-i", path], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout + proc.stderr          # zgetdump -i reports on stderr
    assert "Dump format........: elf" in text and "CPU count (online).: 2" in text, text
    assert "Dump memory range..: 128 MB" in text and "6.1.0-s390dumptools" in text, text


def test_umount_leaves_no_process_and_no_mount(device, tmp_path):
    _d, _m, dev = device
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    run_cli("vmcore.cli", "mount", dev, mnt, check=True)
    assert os.path.ismount(mnt) and mount_processes(mnt)
    proc = run_cli("vmcore.cli", "umount", mnt)
    assert proc.returncode == 0, proc.stderr
    deadline = time.monotonic() + 10
    while mount_processes(mnt) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.ismount(mnt) and not mount_processes(mnt)
    again = run_cli("vmcore.cli", "umount", mnt)
    assert again.returncode == 2 and "not mounted" in again.stderr


def test_mount_errors_are_one_line(device, tmp_path):
    _d, _m, dev = device
    full, empty = tmp_path / "full", tmp_path / "empty"
    full.mkdir()
    empty.mkdir()
    (full / "x").write_text("x")
    for args, code, message in (
        ([dev, str(full)], 2, "not empty"),
        ([dev, str(tmp_path / "missing")], 2, "not a directory"),
        ([str(tmp_path / "nodump"), str(empty)], 3, "does not exist"),
    ):
        proc = run_cli("vmcore.cli", "mount", *args)
        assert proc.returncode == code and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not os.path.ismount(str(empty)) and not mount_processes(str(empty))


def test_a_terabyte_machine_mounts_in_two_seconds(tmp_path):
    """Mounting costs what the dump's layout costs, not what its memory costs."""
    m = str(tmp_path / "big")
    run_cli("s390_machine.cli", "create", m, "--memory", "1T", "--cpus", "2", "--crashkernel", "256M",
            "--fill", "0.0001", check=True)
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    start = time.monotonic()
    proc = run_cli("vmcore.cli", "mount", m, mnt, "--json")
    elapsed = time.monotonic() - start
    try:
        assert proc.returncode == 0, proc.stderr
        pid = json.loads(proc.stdout)["pid"]
        with open(f"/proc/{pid}/status") as fh:
            rss_kib = int(next(line for line in fh if line.startswith("VmRSS:")).split()[1])
        assert elapsed < 2.0, elapsed                 # interpreter start included
        assert rss_kib < 100 * 1024, rss_kib
        assert os.path.getsize(os.path.join(mnt, "dump.elf")) > 1 << 40
        with open(os.path.join(mnt, "dump.elf"), "rb") as fh:
            assert fh.read(4) == b"\x7fELF"
    finally:
        run_cli("vmcore.cli", "umount", mnt)
