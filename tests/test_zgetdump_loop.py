"""Today's zgetdump (2.35, Debian trixie, s390x under qemu-user) on our dump devices (issue 20).

Since 2.2x zgetdump reads the extended s390 format only from a block device (it asks
BLKSSZGET), so each device image we build is attached as a loop device at its dump
partition's offset, with the device's block size as the sector size, as the dump partition
of a real DASD would appear.  zgetdump must find the dump complete with our release string,
and the pages of its copy (ELF, its default) must equal what our reader takes from the image
and what `sadump extract` writes by default (ELF too, which zgetdump 2.35 opens).
A multi-volume set is read the way zgetdump reads one on Linux: through the ccw bus in sysfs,
faked under $SYSFS_ROOT (see the comment above those tests), in the
XMULT64 version-1 layout 2.35 knows (`sadump build -M --tool-version 1`).
Needs root (losetup); CI runs as root.  zgetdump 2.16 stays the older peer (test_zgetdump.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time

import pytest

from tests.conftest import copy_machine, run_cli
from tests.realdata import s390x_peers
from vmcore.formats import open_dump
from vmcore.model import page_digests

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root (CI runs as root)"),
              pytest.mark.slow]   # make check: zgetdump 2.35 under qemu-user on loop devices


@pytest.fixture(scope="module")
def zgetdump235():
    return s390x_peers()["ZGETDUMP"]


@contextlib.contextmanager
def loop_device(image: str, offset: int, sector: int):
    dev = subprocess.run(["losetup", "-f", "--show", "-r", "--sector-size", str(sector), "-o", str(offset), image],
                         capture_output=True, text=True)
    if dev.returncode != 0:
        pytest.fail(f"losetup: {dev.stderr.strip()}")
    try:
        yield dev.stdout.strip()
    finally:
        subprocess.run(["losetup", "-d", dev.stdout.strip()])


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    m = str(tmp_path_factory.mktemp("zg235") / "m")
    run_cli("s390_machine.cli", "create", m, "--memory", "128M", "--cpus", "2", "--crashkernel", "32M",
            "--fill", "0.25", check=True)
    return m


@pytest.mark.parametrize("dev_type", ["eckd", "fba"])
@pytest.mark.parametrize("compress", [False, True], ids=["uncompressed", "zlib"])
def test_zgetdump_235_reads_our_device_through_a_loop_device(zgetdump235, machine, tmp_path, dev_type, compress):
    dev = str(tmp_path / f"{dev_type}.img")
    run_cli("zipl_sadump.cli", "build", "--device", dev, "--type", dev_type, "--size", "512M", check=True)
    m = copy_machine(machine, str(tmp_path / "m"))         # a dumped machine cannot be IPLed again
    run_cli("zipl_sadump.cli", "ipl", "--device", dev, "--machine", m, "--kdump", "off", "--no-map",
            *([] if compress else ["--no-compress"]), check=True)
    info = json.loads(run_cli("zipl_sadump.cli", "show", "--device", dev, "--json", check=True).stdout)
    area = info["devices"][0]
    with loop_device(dev, area["dump_offset"], area["block_size"]) as loop:
        proc = subprocess.run([*zgetdump235, "-i", loop], capture_output=True, text=True, timeout=600)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 0, text
        assert "Dump format........: s390_ext" in text and "6.1.0-s390dumptools" in text, text
        assert "CPU count (online).: 2" in text and "Dump memory range..: 128 MB" in text, text
        assert "incomplete" not in text.lower(), text
        copy = str(tmp_path / "zgetdump.elf")
        with open(copy, "wb") as fh:
            proc = subprocess.run([*zgetdump235, loop], stdout=fh, stderr=subprocess.PIPE, timeout=600)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    # sadump extract writes by default what `zgetdump DEVICE > FILE` writes: ELF, which 2.35 opens
    extracted = str(tmp_path / "extracted.elf")
    run_cli("zipl_sadump.cli", "extract", "--device", dev, "-o", extracted, check=True)
    proc = subprocess.run([*zgetdump235, "-i", extracted], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "Dump format........: elf" in proc.stdout + proc.stderr, proc.stderr
    with open_dump(dev) as ours, open_dump(copy) as theirs, open_dump(extracted) as mine:
        assert theirs.attrs.format == mine.attrs.format == "elf" and len(theirs.cpus) == len(ours.cpus) == 2
        assert page_digests(theirs) == page_digests(ours) == page_digests(mine)
        for a, b, c in zip(ours.cpus, theirs.cpus, mine.cpus):
            assert (a.psw_mask, a.psw_addr, a.gprs) == (b.psw_mask, b.psw_addr, b.gprs) == \
                (c.psw_mask, c.psw_addr, c.gprs)


# -- multi-volume sets ------------------------------------------------------------------------------
#
# zgetdump finds the other volumes of a set through sysfs: for each entry of the volume parameter
# table (devno, ssid) it wants <sysfs>/bus/ccw/devices/0.<ssid>.<devno>/ with `online` reading 1
# and a `block/dasd*/dev` file holding the whole disk's MAJOR:MINOR; it then makes a node for that
# device in $TMPDIR (opened O_RDWR once, so the loop devices are attached read-write) and reads the
# tool, the table and the dump header from the whole disk, at start_blk * block size.  Under
# qemu-user there is no ccw bus, but s390-tools' libutil takes the sysfs root from $SYSFS_ROOT, so a
# directory of such entries, pointing at loop devices of our volume images, stands in for it.
# The volume zgetdump is given must look like a whole DASD: a block device whose minor is a multiple
# of 4 (dasda = 94:0, dasdb = 94:4, ...; other minors are partitions, and zgetdump would go to the
# minor below), so each image is attached whole, with 4 KiB sectors, at a loop minor 4k.
#
# One skew, measured: zipl >= 2.37 writes the multi-volume tool as "XMULT64" version 2, 16 KiB
# long, with the parameter table behind it in block 7 (our default); older zipl wrote version 1,
# 12 KiB, table in block 6.  zgetdump 2.35 knows XMULT64 only as version 1: it takes any version-2
# tool other than XECKD64 as 8 KiB long and reads the table at block 5, which on a version-2 volume
# is tool code (zeros in our images), so it finds no volume and answers "No valid dump found".
# The first test asserts that (our reader reads the same set); the second builds the set with
# `sadump build -M --tool-version 1`, which 2.35 must read, unpatched, through the fake ccw bus.
# (The single-volume tools have no such skew: 2.35 and 2.37 size XECKD64 v2 and XDFBA64 v1 alike.)

LOOP_CTL_ADD, LOOP_CTL_REMOVE = 0x4C80, 0x4C81


@contextlib.contextmanager
def whole_disk_loops(images: list[str], sector: int):
    """Attach each image whole at /dev/loopN with N a multiple of 4, as DASDs appear."""
    import fcntl
    attached: list[tuple[str, int]] = []
    ctl = os.open("/dev/loop-control", os.O_RDWR)
    try:
        minor = 256
        for image in images:
            while True:
                minor += 4
                if minor > 4096:
                    pytest.fail("no free loop device with a minor divisible by 4")
                try:
                    fcntl.ioctl(ctl, LOOP_CTL_ADD, minor)
                except FileExistsError:
                    continue                          # someone else's: leave it alone
                dev = f"/dev/loop{minor}"
                proc = subprocess.run(["losetup", "--sector-size", str(sector), dev, image],
                                      capture_output=True, text=True)
                if proc.returncode == 0:
                    attached.append((dev, minor))
                    break
                with contextlib.suppress(OSError):
                    fcntl.ioctl(ctl, LOOP_CTL_REMOVE, minor)
        yield [dev for dev, _ in attached]
    finally:
        for dev, minor in attached:
            subprocess.run(["losetup", "-d", dev])
            for _ in range(50):                       # the detach completes asynchronously
                try:
                    fcntl.ioctl(ctl, LOOP_CTL_REMOVE, minor)
                    break
                except OSError:
                    time.sleep(0.1)
        os.close(ctl)


def fake_ccw_bus(root: str, volumes: list[dict], loops: list[str]) -> None:
    """<root>/bus/ccw/devices/0.S.DEVNO/{online, block/dasdX/dev} for each volume."""
    for i, (vol, loop) in enumerate(zip(volumes, loops)):
        rdev = os.stat(loop).st_rdev
        d = os.path.join(root, "bus", "ccw", "devices", vol["bus_id"])
        os.makedirs(os.path.join(d, "block", f"dasd{chr(ord('a') + i)}"))
        with open(os.path.join(d, "online"), "w") as fh:
            fh.write("1\n")
        with open(os.path.join(d, "block", f"dasd{chr(ord('a') + i)}", "dev"), "w") as fh:
            fh.write(f"{os.major(rdev)}:{os.minor(rdev)}\n")


def _dumped_set(machine: str, tmp_path, name: str, tool_version: int) -> tuple[list[str], dict]:
    """Three 16 MiB volumes with an XMULT64 tool of this version, dumped to by a 128 MiB machine
    (the dump fills volume 0 and goes on to 1), and `sadump show --json` of them."""
    vols = [str(tmp_path / f"{name}{i}.img") for i in range(3)]
    run_cli("zipl_sadump.cli", "build", "--multi-volume", ",".join(vols), "--size", "16M",
            "--tool-version", str(tool_version), check=True)
    m = copy_machine(machine, str(tmp_path / f"m-{name}"))
    run_cli("zipl_sadump.cli", "ipl", "--device", ",".join(vols), "--machine", m, "--kdump", "off", "--no-map",
            check=True)
    info = json.loads(run_cli("zipl_sadump.cli", "show", "--device", ",".join(vols), "--json", check=True).stdout)
    assert {(d["tool"], d["tool_version"]) for d in info["devices"]} == {("XMULT64", tool_version)}
    return vols, info


@contextlib.contextmanager
def on_fake_ccw_bus(vols: list[str], info: dict, tmp_path, name: str):
    """(the volumes' loop devices, the environment that shows them to zgetdump as DASDs)."""
    sysfs, nodes = str(tmp_path / f"sys-{name}"), tmp_path / f"nodes-{name}"
    nodes.mkdir()
    env = dict(os.environ, SYSFS_ROOT=sysfs, TMPDIR=str(nodes))
    with whole_disk_loops(vols, info["devices"][0]["block_size"]) as loops:
        fake_ccw_bus(sysfs, info["devices"][0]["mv_table"]["volumes"], loops)
        yield loops, env
    assert not os.listdir(nodes)                      # zgetdump removed the device nodes it made


def test_zgetdump_235_finds_no_dump_on_a_version_2_multi_volume_set(zgetdump235, machine, tmp_path):
    vols, info = _dumped_set(machine, tmp_path, "v2-", 2)
    with open_dump(vols) as ours:                     # a complete dump, for us and zgetdump >= 2.37
        assert ours.attrs.format == "s390" and len(ours.cpus) == 2 and not ours.missing_ranges()
    with on_fake_ccw_bus(vols, info, tmp_path, "v2") as (loops, env):
        proc = subprocess.run([*zgetdump235, "-i", loops[0]], capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 1 and "No valid dump found" in proc.stderr, proc.stdout + proc.stderr


def test_zgetdump_235_reads_our_version_1_multi_volume_set_through_a_fake_ccw_bus(zgetdump235, machine, tmp_path):
    vols, info = _dumped_set(machine, tmp_path, "v1-", 1)
    table = info["devices"][0]["mv_table"]["volumes"]
    with on_fake_ccw_bus(vols, info, tmp_path, "v1") as (loops, env):
        proc = subprocess.run([*zgetdump235, "-i", loops[0]], capture_output=True, text=True, env=env, timeout=600)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 0, text
        assert "Dump format........: s390mv_ext" in text and "6.1.0-s390dumptools" in text, text
        assert "CPU count (online).: 2" in text and "Dump memory range..: 128 MB" in text, text
        for i, vol in enumerate(table):                # the dump fills volume 0 and goes on to 1
            assert f"Volume {i}: {vol['bus_id']} (online/{'active' if i < 2 else ''}" in text, text
        assert "incomplete" not in text.lower(), text
        copy = str(tmp_path / "zgetdump.elf")
        with open(copy, "wb") as fh:
            proc = subprocess.run([*zgetdump235, loops[0]], stdout=fh, stderr=subprocess.PIPE, env=env,
                                  timeout=600)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    with open_dump(vols) as ours, open_dump(copy) as theirs:
        assert theirs.attrs.format == "elf" and len(theirs.cpus) == len(ours.cpus) == 2
        assert page_digests(theirs) == page_digests(ours)
        for a, b in zip(ours.cpus, theirs.cpus):
            assert (a.psw_mask, a.psw_addr, a.gprs) == (b.psw_mask, b.psw_addr, b.gprs)
