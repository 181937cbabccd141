"""Issue 8: a 17 TiB sparse machine, more than the u32 `num_pages` of the s390 dump header counts.

What the real tools do at that limit (s390-tools' include/boot/s390_dump.h, makedumpfile's diskdump_mod.h):
  * s390 dump header: zipl's stand-alone dumper (zipl/boot/stage2dump.c) and zgetdump -f s390
    (zdump/dfo_s390.c) assign mem_size / 4096 to the u32 num_pages, i.e. it wraps modulo 2^32;
    mem_size (u64) stays exact, and zgetdump reads only mem_size.  libkdumpfile's s390dump
    reader takes num_pages as its max_pfn, so it sees the wrapped count (asserted below).
  * kdump-compressed: makedumpfile (and QEMU) write header version 6; the u32 max_mapnr of
    disk_dump_header saturates at UINT_MAX and the exact count is max_mapnr_64 in the sub
    header; the obsolete u32 split start_pfn/end_pfn saturate too, *_64 are exact
    (makedumpfile commit 8e124174 "Fix max_mapnr issue on system has over 44-bit addressing").

The machine, the dump device and every output live in one directory under /dev/shm (tmpfs holds
a 17 TiB sparse file; ext4's largest file is 16 TiB) and stay sparse: a few MiB of data each,
bitmap 1 of the kdump file aside (544 MiB: one bit per page of 17 TiB, all set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from meminfo_abi import diskdump as dd
from meminfo_abi.s390_dump import (
    DF_S390_HDR_SIZE, DF_S390_MAGIC, DF_S390_MAGIC_EXT, DF_S390_VERSION_EXT_ZLIB, DF_S390_VERSION_FLAT,
)
from meminfo_abi.s390_dump_device import read_dump_area
from meminfo_abi.s390_dump_stream import read_header
from s390_machine.memory import PhysicalMemory
from s390_machine.synth import PAGE_STAMP, SynthOptions, data_mibs, validate
from tests.conftest import cli_json, peer_kdumpfile, run_cli
from vmcore.formats import open_dump
from vmcore.formats import kdump as kc
from vmcore.formats.kdump import writer as kdump_writer

pytestmark = pytest.mark.slow      # make check (a 17 TiB machine: minutes of I/O on a small host)

SHM = "/dev/shm"
TIB = 1 << 40
MIB = 1 << 20
PAGE = 4096
TIB16 = 16 * TIB                     # 2^32 pages: the first address a u32 page count cannot reach
MEM = 17 * TIB
CRASHKERNEL = 256 * MIB
FILL = 2e-6                          # 35 data MiBs, one every ~488 GiB, the last above 16 TiB
PAGES = MEM // PAGE                  # 0x110000000
NUM_PAGES_U32 = PAGES & 0xFFFFFFFF   # what the dumpers store: 0x10000000 (= 1 TiB of pages)
NEED_FREE = 3 << 30                  # the outputs take ~0.7 GiB; leave room


def _shm_reason() -> str | None:
    """Why this machine cannot run the test (None: it can)."""
    if not os.path.isdir(SHM):
        return f"{SHM} does not exist"
    st = os.statvfs(SHM)
    if st.f_bavail * st.f_frsize < NEED_FREE:
        return f"{SHM} has {st.f_bavail * st.f_frsize >> 20} MiB free, the test needs {NEED_FREE >> 20} MiB"
    fd, probe = tempfile.mkstemp(dir=SHM, prefix="s390dt-16t-probe.")
    try:
        os.ftruncate(fd, MEM)
    except OSError as exc:
        return f"{SHM} cannot hold a {MEM >> 40} TiB sparse file ({exc.strerror})"
    finally:
        os.close(fd)
        os.unlink(probe)
    return None


def _stamp(addr: int) -> bytes:
    """A page nobody else writes: marker, its own address, a pattern."""
    head = b"16TIB-EDGE" + addr.to_bytes(8, "big")
    return (head + bytes(range(256)) * 16)[:PAGE]


class Big:
    """The 17 TiB machine after its stand-alone full dump, and where the conversions went."""

    def __init__(self, root: str):
        self.root = root
        self.machine = os.path.join(root, "m17t")
        self.device = os.path.join(root, "dasd.img")
        # the last page a u32 page count reaches, the first it cannot, the last page of memory
        self.edge = {TIB16 - PAGE: _stamp(TIB16 - PAGE), TIB16: _stamp(TIB16), MEM - PAGE: _stamp(MEM - PAGE)}
        opts = SynthOptions(memory_size=MEM, cpus=3, crashkernel_size=CRASHKERNEL, fill=FILL)
        above = [m for m in data_mibs(opts, validate(opts)) if m * MIB >= TIB16]
        assert above, "--fill put no data above 16 TiB: the stamped edge pages would be all there is"
        self.fill_page = above[0] * MIB       # synth stamps each data page with PAGE_STAMP + its address

    def expect(self) -> dict[int, bytes]:
        """addr -> bytes every dump of this machine must give back (a prefix of the fill page)."""
        out = dict(self.edge)
        out[self.fill_page] = PAGE_STAMP + self.fill_page.to_bytes(8, "big")
        return out


@pytest.fixture(scope="module")
def big():
    why = _shm_reason()
    if why:
        pytest.skip(f"needs a tmpfs that holds 17 TiB sparse files: {why}")
    root = tempfile.mkdtemp(dir=SHM, prefix="s390dt-16t.")
    try:
        b = Big(root)
        run_cli("s390_machine.cli", "create", b.machine, "--memory", "17T", "--cpus", "3",
                "--crashkernel", "256M", "--fill", repr(FILL), check=True)
        with PhysicalMemory(os.path.join(b.machine, "memory.img"), writable=True) as mem:
            for addr, data in b.edge.items():
                mem.write(addr, data)
        run_cli("zipl_sadump.cli", "build", "--device", b.device, "--type", "eckd", "--size", "1G", check=True)
        res = cli_json("zipl_sadump.cli", "ipl", "--device", b.device, "--machine", b.machine, "--kdump", "off")
        assert res["decision"] == "full dump", res
        yield b
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _allocated(path: str) -> int:
    return os.stat(path).st_blocks * 512


def _read_cli(path: str, addr: int, n: int) -> bytes:
    return bytes.fromhex(cli_json("vmcore.cli", "read", path, hex(addr), str(n))["data"])


def _assert_pages(path: str, expect: dict[int, bytes]) -> None:
    for addr, data in expect.items():
        assert _read_cli(path, addr, len(data)) == data, f"{path} at 0x{addr:x}"


def _info(path: str) -> dict:
    return cli_json("vmcore.cli", "info", path)


def _convert(big: Big, fmt: str, *extra: str) -> str:
    out = os.path.join(big.root, f"out.{fmt}")
    if not os.path.exists(out):
        res = cli_json("vmcore.cli", "convert", big.device, "-o", out, "-f", fmt, "--no-progress", *extra)
        assert res["memory"] == MEM and res["complete"], res
    return out


# ---------------------------------------------------------------------------------------------
# the stand-alone dump on the device
# ---------------------------------------------------------------------------------------------

def test_full_dump_header_truncates_num_pages_as_the_dumper(big):
    """mem_size exact; num_pages = mem_size >> 12 stored in a u32, as stage2dump.c does."""
    fd = os.open(big.device, os.O_RDONLY)
    try:
        area = read_dump_area(fd, big.device)
        hdr = read_header(fd, area.offset)
    finally:
        os.close(fd)
    assert (hdr.magic, hdr.version) == (DF_S390_MAGIC_EXT, DF_S390_VERSION_EXT_ZLIB)
    assert (hdr.mem_size, hdr.mem_end, hdr.mem_size_real) == (MEM, MEM, MEM)
    assert hdr.num_pages == NUM_PAGES_U32 == 0x10000000
    assert hdr.cpu_cnt == 3
    # the dump stayed small: data MiBs and segment headers, no zeros
    assert _allocated(big.device) < 64 * MIB


def test_info_gives_the_full_size_and_says_num_pages_cannot(big):
    info = _info(big.device)
    assert info["memory_size"] == MEM and info["complete"], info["incomplete_reason"]
    assert info["cpus"] == 3
    ext = info["extra"]
    assert ext["layout"] == "extended" and ext["mem_size"] == MEM
    assert ext["num_pages"] == NUM_PAGES_U32
    note = ext["num_pages_note"]
    assert "cannot describe 17 TiB" in note and f"0x{MEM:x}" in note and str(NUM_PAGES_U32) in note


def test_read_above_16_tib_from_the_device(big):
    _assert_pages(big.device, big.expect())
    assert _read_cli(big.device, TIB16 + PAGE, 64) == bytes(64)        # a gap between segments


# ---------------------------------------------------------------------------------------------
# conversions
# ---------------------------------------------------------------------------------------------

def test_flat_s390_keeps_the_pages_and_truncates_num_pages_as_zgetdump(big):
    out = _convert(big, "s390")
    with open(out, "rb") as fh:
        hdr = read_header(fh)
    assert (hdr.magic, hdr.version) == (DF_S390_MAGIC, DF_S390_VERSION_FLAT)
    assert (hdr.mem_size, hdr.mem_end) == (MEM, MEM)
    assert hdr.num_pages == NUM_PAGES_U32                     # dfo_s390.c: mem_size / PAGE_SIZE into a u32
    assert os.path.getsize(out) == DF_S390_HDR_SIZE + MEM + 16 and _allocated(out) < 64 * MIB
    info = _info(out)
    assert info["memory_size"] == MEM and info["complete"] and info["extra"]["layout"] == "flat"
    assert "cannot describe" in info["extra"]["num_pages_note"]
    _assert_pages(out, big.expect())


def test_libkdumpfile_trusts_the_truncated_num_pages_of_a_flat_dump(big):
    """libkdumpfile's s390dump reader sets max_pfn from num_pages: with what the real tools write
    for 17 TiB it sees 2^28 pages (1 TiB) and refuses the rest; below that it reads our bytes."""
    kdumpfile = peer_kdumpfile()
    k = kdumpfile.kdumpfile(_convert(big, "s390"))
    assert k.attr["max_pfn"] == NUM_PAGES_U32
    low = 0x800000                                            # kernel data, below 1 TiB
    assert bytes(k.read(kdumpfile.KDUMP_KPHYSADDR, low, 64)) == _read_cli(big.device, low, 64)
    with pytest.raises(kdumpfile.exceptions.NoDataException):
        k.read(kdumpfile.KDUMP_KPHYSADDR, TIB16, 16)


def test_elf_keeps_the_pages(big):
    out = _convert(big, "elf")
    assert _allocated(out) < 64 * MIB
    _assert_pages(out, big.expect())
    # elfutils: the PT_LOADs are contiguous and end at 17 TiB
    if shutil.which("eu-readelf") is None:
        pytest.fail("eu-readelf (elfutils) is not installed")
    text = subprocess.run(["eu-readelf", "-l", out], capture_output=True, text=True, check=True).stdout
    loads = []
    for line in text.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            loads.append((int(f[3], 16), int(f[5], 16)))      # PhysAddr, MemSiz
    assert loads[0][0] == 0
    assert all(a + n == b for (a, n), (b, _) in zip(loads, loads[1:]))
    assert loads[-1][0] + loads[-1][1] == MEM
    assert any(a <= TIB16 < a + n for a, n in loads)
    kdumpfile = peer_kdumpfile()
    k = kdumpfile.kdumpfile(out)
    for addr, data in big.expect().items():
        assert bytes(k.read(kdumpfile.KDUMP_KPHYSADDR, addr, len(data))) == data, hex(addr)


def test_kdump_compressed_follows_makedumpfile_at_the_limit(big):
    """Header version 6: max_mapnr saturates at UINT_MAX, max_mapnr_64 holds the page count."""
    out = _convert(big, "kdump", "--exclude-zero")
    with open(out, "rb") as fh:
        head = fh.read(PAGE + dd.KDUMP_SUB_HEADER_SIZE)
    h = dd.BE.disk_dump_header.parse(head[:dd.DISK_DUMP_HEADER_SIZE])
    sub = dd.BE.kdump_sub_header.parse(head[PAGE:])
    assert h.signature == dd.KDUMP_SIGNATURE and h.header_version == 6
    assert h.max_mapnr == 0xFFFFFFFF and sub.max_mapnr_64 == PAGES
    assert h.bitmap_blocks == 2 * dd.bitmap_half_blocks(PAGES, PAGE) == 2 * (PAGES // 8 // PAGE)
    assert sub.split == 0 and (sub.start_pfn, sub.end_pfn, sub.start_pfn_64, sub.end_pfn_64) == (0, 0, 0, 0)
    # bitmap 1 is PAGES bits of ones (544 MiB); the rest is the data and its descriptors
    assert _allocated(out) < PAGES // 8 + 128 * MIB
    info = _info(out)
    assert info["memory_size"] == MEM and info["complete"], info["incomplete_reason"]
    assert info["extra"]["max_mapnr"] == PAGES
    _assert_pages(out, big.expect())
    kdumpfile = peer_kdumpfile()
    k = kdumpfile.kdumpfile(out)
    assert k.attr["max_pfn"] == PAGES
    for addr, data in big.expect().items():
        assert bytes(k.read(kdumpfile.KDUMP_KPHYSADDR, addr, len(data))) == data, hex(addr)


def test_kdump_split_pfns_saturate_as_makedumpfile(big):
    """A part of a split dump that ends above 2^32 pages: the obsolete u32 start_pfn/end_pfn
    saturate at UINT_MAX (makedumpfile: MIN(pfn, UINT_MAX)), the *_64 fields are exact."""
    with open_dump(big.device) as d:
        for lo, hi in ((PAGES // 2, PAGES), (0x100000000, PAGES), (0, 0xFFFFFFFF)):
            lay, _ = kc.plan_kdump(d, split=(lo, hi), exclude_zero=True)
            head, sub_raw = kdump_writer._header_bytes(d, lay, 0)
            h = dd.BE.disk_dump_header.parse(head)
            sub = dd.BE.kdump_sub_header.parse(sub_raw)
            assert h.max_mapnr == 0xFFFFFFFF and sub.max_mapnr_64 == PAGES
            assert sub.split == 1
            assert (sub.start_pfn, sub.end_pfn) == (min(lo, 0xFFFFFFFF), min(hi, 0xFFFFFFFF))
            assert (sub.start_pfn_64, sub.end_pfn_64) == (lo, hi)


def test_convert_refuses_exclude_zero_for_other_formats(big):
    proc = run_cli("vmcore.cli", "convert", big.device, "-o", os.path.join(big.root, "x.elf"), "-f", "elf",
                   "--exclude-zero")
    assert proc.returncode == 2 and "--exclude-zero" in proc.stderr
    assert not os.path.exists(os.path.join(big.root, "x.elf"))
