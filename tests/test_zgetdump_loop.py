"""Today's zgetdump (2.35, Debian trixie, s390x under qemu-user) on our dump devices (issue 20).

Since 2.2x zgetdump reads the extended s390 format only from a block device (it asks
BLKSSZGET), so each device image we build is attached as a loop device at its dump
partition's offset, with the device's block size as the sector size, as the dump partition
of a real DASD would appear.  zgetdump must find the dump complete with our release string,
and the pages of its copy (ELF, its default) must equal what our reader takes from the image
and what `sadump extract` writes by default (ELF too, which zgetdump 2.35 opens).
Needs root (losetup); CI runs as root.  zgetdump 2.16 stays the older peer (test_zgetdump.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess

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
