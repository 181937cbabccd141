"""`vmcore mount` / `vmcore umount` (issue 20): a dump read from a device image, served as
DIR/dump.elf on demand, opened by gdb, eu-readelf, libkdumpfile, drgn and zgetdump 2.35 (DIR/dump.kdump
by libkdumpfile, drgn and makedumpfile 1.7.6; DIR/dump.s390 by zgetdump)."""
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


def assert_same_file(a: str, b: str) -> None:
    """The two files hold the same bytes (read 4 MiB at a time: a mounted dump is read through FUSE)."""
    assert os.path.getsize(a) == os.path.getsize(b)
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 22), fb.read(1 << 22)
            assert x == y
            if not x:
                break


def test_mounted_device_dump_is_what_convert_writes(mounted, tmp_path):
    dev, mnt, path = mounted
    conv = str(tmp_path / "conv.elf")
    run_cli("vmcore.cli", "convert", dev, "-o", conv, "-f", "elf", check=True)
    assert_same_file(path, conv)
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


@pytest.mark.parametrize("fmt", ["elf", "kdump"])
def test_a_terabyte_machine_mounts_in_two_seconds(tmp_path, fmt):
    """Mounting costs what the dump's layout costs, not what its memory costs (as ELF, and as
    kdump: its bitmaps and descriptors are computed for each read, not at mount)."""
    m = str(tmp_path / "big")
    run_cli("s390_machine.cli", "create", m, "--memory", "1T", "--cpus", "2", "--crashkernel", "256M",
            "--fill", "0.0001", check=True)
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    start = time.monotonic()
    proc = run_cli("vmcore.cli", "mount", m, mnt, "--json", "-f", fmt)
    elapsed = time.monotonic() - start
    try:
        assert proc.returncode == 0, proc.stderr
        pid = json.loads(proc.stdout)["pid"]
        with open(f"/proc/{pid}/status") as fh:
            rss_kib = int(next(line for line in fh if line.startswith("VmRSS:")).split()[1])
        assert elapsed < 2.0, elapsed                 # interpreter start included
        assert rss_kib < 100 * 1024, rss_kib
        path = os.path.join(mnt, f"dump.{fmt}")
        with open(path, "rb") as fh:
            if fmt == "elf":
                assert os.path.getsize(path) > 1 << 40 and fh.read(4) == b"\x7fELF"
            else:                                     # 2^28 pages: two 32 MiB bitmaps, 6 GiB of descriptors
                assert os.path.getsize(path) > 6 << 30 and fh.read(8) == b"KDUMP   "
    finally:
        run_cli("vmcore.cli", "umount", mnt)


# -- at scale: a terabyte, 8 GiB of it dumped ------------------------------------------------------

MIB, GIB, TIB = 1 << 20, 1 << 30, 1 << 40
SPREAD_AT = [0] + [(k + 1) * 128 * MIB - MIB for k in range(1, 8192)]   # 8192 x 1 MiB: 8 GiB of 1 TiB


def _stamp(addr: int) -> bytes:
    return ((b"MOUNT-SCALE" + addr.to_bytes(8, "big")) * 216)[:4096]


@pytest.fixture(scope="module")
def terabyte(tmp_path_factory):
    """A 1 TiB machine (110 MiB of synthesized data, a stamped page in four places) and dumps of it,
    all sparse: an ELF and a kdump-compressed file of 8 GiB of it in 8192 1 MiB pieces spread over
    the terabyte (8192 PT_LOADs; 2^21 page descriptors), written by our writers from the machine's
    sparse image, and its stand-alone dump (zlib-compressed units) on a 1 GiB ECKD image."""
    import dataclasses
    from s390_machine.memory import PhysicalMemory
    from vmcore.formats import write_dump
    from vmcore.model import Dump, FileSource, MemChunk
    d = tmp_path_factory.mktemp("tib")
    m = str(d / "m")
    run_cli("s390_machine.cli", "create", m, "--memory", "1T", "--cpus", "2", "--crashkernel", "256M",
            "--fill", "0.0001", check=True)
    image = os.path.join(m, "memory.img")
    stamps = {SPREAD_AT[k] + 7 * 4096: None for k in (1, 2048, 6000, 8191)}
    with PhysicalMemory(image, writable=True) as mem:
        for addr in stamps:
            stamps[addr] = _stamp(addr)
            mem.write(addr, stamps[addr])
    out = {"machine": m, "elf": str(d / "spread.elf"), "kdump": str(d / "spread.kdump"),
           "device": str(d / "dasd.img"), "stamps": stamps}
    with open_dump(m) as machine:
        base = FileSource(image)
        chunks = [MemChunk(a, MIB, base.region(a, MIB)) for a in SPREAD_AT]
        spread = Dump(chunks, machine.cpus, dataclasses.replace(machine.attrs, extra={}), resources=[base])
        assert spread.size == TIB and sum(c.size for c in spread.chunks) == 8 * GIB
        write_dump(spread, out["elf"], "elf")
        write_dump(spread, out["kdump"], "kdump")
        spread.close()
    run_cli("zipl_sadump.cli", "build", "--device", out["device"], "--type", "eckd", "--size", "1G", check=True)
    run_cli("zipl_sadump.cli", "ipl", "--device", out["device"], "--machine", m, "--kdump", "off", "--no-map",
            check=True)
    return out


def _proc_field(pid: int, name: str, field: str) -> int:
    with open(f"/proc/{pid}/{name}") as fh:
        return int(next(line for line in fh if line.startswith(field + ":")).split()[1])


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")     # utime + stime


class Mounted:
    """A `vmcore mount` started by the test: what it cost, and pages read through it with the
    bytes the mount process read for each (/proc/PID/io rchar: its source reads, and the few
    bytes of each FUSE request)."""

    def __init__(self, src: str, mnt: str, *args: str, fmt: str = "elf"):
        import resource
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        proc = run_cli("vmcore.cli", "mount", src, mnt, "--json", "-f", fmt, *args)
        self.seconds = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.pid = json.loads(proc.stdout)["pid"]
        self.mnt, self.path = mnt, json.loads(proc.stdout)["file"]
        # CPU: the CLI process, and the mount process it left behind (all of it spent getting ready)
        self.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) + _cpu_seconds(self.pid)
        self.rss = _proc_field(self.pid, "status", "VmRSS") * 1024
        if fmt == "s390":                           # the flat dump: memory after the 4 KiB header
            self.loads = [(0, 1 << 64, 4096)]
        elif fmt == "kdump":                        # the data pages, after the zero page
            from vmcore.formats.kdump.lazy import LazyKdump
            with open_dump(src) as dump:
                lazy = LazyKdump(dump)
            ps, at = lazy.ps, lazy.lay.offset_data + lazy.ps
            self.loads = []
            for a, b in lazy.data:
                self.loads.append((a * ps, b * ps, at))
                at += (b - a) * ps
        else:
            with open_dump(src) as dump:
                from vmcore.formats.elf import plan_layout
                self.loads = [(c.start, c.end, off) for c, off in plan_layout(dump).loads]
        self.fd = os.open(self.path, os.O_RDONLY)
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)          # no read-ahead: a page is a page

    def read(self, addr: int, n: int = 4096) -> tuple[bytes, int]:
        off = next(o + addr - s for s, e, o in self.loads if s <= addr < e)
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)        # ask the mount, not the page cache
        r0 = _proc_field(self.pid, "io", "rchar")
        data = os.pread(self.fd, n, off)
        return data, _proc_field(self.pid, "io", "rchar") - r0

    def close(self) -> None:
        os.close(self.fd)
        run_cli("vmcore.cli", "umount", self.mnt, check=True)


@pytest.mark.slow
@pytest.mark.parametrize("which,fmt", [("elf", "elf"), ("kdump", "elf"), ("device", "elf"), ("machine", "elf"),
                                       ("kdump", "s390"), ("device", "s390"), ("elf", "kdump"),
                                       ("kdump", "kdump"), ("device", "kdump"), ("machine", "kdump")])
def test_a_terabyte_mounts_in_two_seconds_and_a_page_costs_a_page(terabyte, tmp_path, which, fmt):
    """1 TiB, 8 GiB of it dumped (in 8192 pieces: PT_LOADs, page descriptors), or all of it (the
    compressed stand-alone dump, the machine itself): mounted in < 2 s with < 100 MiB RSS; one page
    read through the mount reads that page (with its descriptor and bitmap word, or its 1 MiB zlib
    unit), and a compressed page read again comes from the mount's cache."""
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    m = Mounted(terabyte[which], mnt, fmt=fmt)
    if m.seconds >= 2.0 and m.cpu < 2.0:          # the CPU was cheap, the host busy: once more
        m.close()
        m = Mounted(terabyte[which], mnt, fmt=fmt)
    try:
        print(f"{which} as {fmt}: mounted in {m.seconds:.2f} s, {m.cpu:.2f} s CPU, {m.rss >> 20} MiB RSS")
        assert m.rss < 100 * MIB, m.rss
        assert m.cpu < 2.0 and m.seconds < 2.0, (m.cpu, m.seconds)
        with open_dump(terabyte[which]) as src:
            assert src.size == TIB
            for addr, stamp in terabyte["stamps"].items():
                data, cost = m.read(addr)
                assert data == stamp == src.read(addr, 4096), hex(addr)
                if which == "device":                  # the page's unit, at most 1 MiB on disk
                    assert 4096 < cost <= MIB + 4096, (hex(addr), cost)
                else:                                  # the page (descriptor, a bitmap block): not much more
                    assert cost <= 3 * 4096, (hex(addr), cost)
            for addr, stamp in terabyte["stamps"].items():
                data, cost = m.read(addr)
                assert data == stamp
                if which in ("kdump", "device"):       # inflated before: from the cache
                    assert cost < 1024, (hex(addr), cost)
        assert m.rss < 100 * MIB
    finally:
        m.close()


@pytest.mark.slow
def test_the_unit_cache_keeps_to_its_budget(terabyte, tmp_path):
    """--cache-size 4M on the compressed stand-alone dump: 32 units read, the last few are kept,
    the first are dropped (read again from the device), and the mount's RSS grows by about the
    budget, not by what was read."""
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    with open_dump(terabyte["device"]) as src:
        units = sorted({c.start + i * MIB for c in src.chunks if c.kind == "ram"
                        for i in range(c.size // MIB)})[:32]
    assert len(units) == 32
    m = Mounted(terabyte["device"], mnt, "--cache-size", "4M")
    try:
        for a in units:
            m.read(a + 8192)
        rss = _proc_field(m.pid, "status", "VmRSS") * 1024
        assert rss < m.rss + 4 * MIB + 24 * MIB, (m.rss, rss)       # the budget, and the allocator's slack
        _data, cost = m.read(units[-1])
        assert cost < 1024, cost                                    # kept
        _data, cost = m.read(units[0])
        assert cost > 4096, cost                                    # dropped: inflated again
    finally:
        m.close()
    bad = run_cli("vmcore.cli", "mount", terabyte["device"], mnt, "--cache-size", "lots")
    assert bad.returncode == 2 and "not a size" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt", ["s390", "kdump"])
def test_cached_units_read_what_the_source_holds(device, tmp_path, fmt):
    """The view of a compressed dump (the device's zlib units, or a kdump-compressed copy's pages)
    through a small cache gives the bytes of the view without one and of `vmcore convert -f elf`;
    the cache keeps to its budget and serves what was read again."""
    from vmcore.mount import ENTRY_COST, ElfView
    _d, _m, dev = device
    src = dev
    if fmt == "kdump":
        src = str(tmp_path / "d.kdump")
        run_cli("vmcore.cli", "convert", dev, "-o", src, "-f", "kdump", check=True)
    conv = str(tmp_path / "conv.elf")
    run_cli("vmcore.cli", "convert", src, "-o", conv, "-f", "elf", check=True)
    rng = random.Random(fmt)
    with open_dump(src) as a, open_dump(src) as b, open(conv, "rb") as ref:
        cached, plain = ElfView(a, 2 << 20), ElfView(b, 0)
        assert any(r.units for r in map(cached._reader, range(len(cached.loads)))
                   if r.chunk.kind == "ram"), "no compressed units in this dump"
        spans = [(rng.randrange(cached.size - (1 << 20)), rng.choice([1, 4096, 5000, 128 << 10, 3 << 20]))
                 for _ in range(150)]
        for off, n in spans + spans[-5:]:
            want = os.pread(ref.fileno(), n, off)
            assert cached.read(off, n) == want == plain.read(off, n), (off, n)
        st = cached.cache.stats()
        assert 0 < st["bytes"] <= 2 << 20 and st["dropped"] and st["hits"], st
        assert st["bytes"] == sum(len(v) + ENTRY_COST for v in cached.cache.items.values())
        assert plain.cache.stats()["units"] == 0


# -- -f s390: the flat s390 dump, made on demand -------------------------------------------------------

def test_mount_s390_is_what_convert_writes_and_zgetdump_reads_it(device, tmp_path):
    _d, m, dev = device
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    proc = run_cli("vmcore.cli", "mount", dev, mnt, "-f", "s390", "--json")
    assert proc.returncode == 0, proc.stderr
    path = json.loads(proc.stdout)["file"]
    try:
        assert path == os.path.join(mnt, "dump.s390") and os.listdir(mnt) == ["dump.s390"]
        conv = str(tmp_path / "conv.s390")
        run_cli("vmcore.cli", "convert", dev, "-o", conv, "-f", "s390", check=True)
        assert_same_file(path, conv)
        zgetdump = s390x_peers()["ZGETDUMP"]
        proc = subprocess.run([*zgetdump, "-i", path], capture_output=True, text=True, timeout=600)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 0, text
        assert "Dump format........: s390" in text and "CPU count (online).: 2" in text, text
        assert "Dump memory range..: 128 MB" in text and "6.1.0-s390dumptools" in text, text
        # (read back from the copy, byte for byte the same: the s390 reader keeps a descriptor of
        # what it opened after close, which would keep the mount busy)
        with open_dump(dev) as src, open_dump(conv) as view:
            assert view.attrs.format == "s390" and view.attrs.complete
            assert page_digests(view) == page_digests(src)
            for a, b in zip(src.cpus, view.cpus):
                assert (a.psw_mask, a.psw_addr, a.gprs) == (b.psw_mask, b.psw_addr, b.gprs)
    finally:
        run_cli("vmcore.cli", "umount", mnt, check=True)


def test_mount_s390_refuses_a_dump_with_memory_left_out(device, tmp_path):
    """The flat format cannot leave memory out: a dump cut short is refused as `convert -f s390`
    refuses it (exit 4, one line), and mounts as ELF."""
    _d, _m, dev = device
    cut = str(tmp_path / "cut.elf")
    run_cli("vmcore.cli", "convert", dev, "-o", cut, "-f", "elf", check=True)
    os.truncate(cut, os.path.getsize(cut) // 2)
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    proc = run_cli("vmcore.cli", "mount", cut, mnt, "-f", "s390")
    assert proc.returncode == 4 and "missing" in proc.stderr and "-f elf" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not os.path.ismount(mnt) and not mount_processes(mnt)
    conv = run_cli("vmcore.cli", "convert", cut, "-o", str(tmp_path / "x.s390"), "-f", "s390")
    assert conv.returncode == 4
    run_cli("vmcore.cli", "mount", cut, mnt, check=True)
    run_cli("vmcore.cli", "umount", mnt, check=True)
    # as kdump: what convert --allow-incomplete writes, flagged incomplete, the gap missing
    run_cli("vmcore.cli", "mount", cut, mnt, "-f", "kdump", check=True)
    try:
        conv = str(tmp_path / "cut.kdump")
        run_cli("vmcore.cli", "convert", cut, "-o", conv, "-f", "kdump", "--compress", "none",
                "--allow-incomplete", check=True)
        with open_dump(cut) as src, open_dump(os.path.join(mnt, "dump.kdump")) as view:
            _same_file(os.path.join(mnt, "dump.kdump"), conv, timed=src.attrs.timestamp is not None)
            assert not view.attrs.complete and view.missing_ranges()
            assert view.missing_ranges()[0][0] <= src.missing_ranges()[0][0]
            assert page_digests(view) == page_digests(src)
    finally:
        run_cli("vmcore.cli", "umount", mnt, check=True)
    bad = run_cli("vmcore.cli", "mount", dev, mnt, "-f", "makedumpfile")
    assert bad.returncode == 2 and "elf, kdump, s390" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not os.path.ismount(mnt)


# -- -f kdump: the kdump-compressed layout with uncompressed pages, made on demand ---------------------

TIMESTAMP = slice(408, 424)      # disk_dump_header.timestamp (struct timeval, LP64) in block 0


def _same_file(a: str, b: str, timed: bool = True) -> None:
    """a and b are the same bytes; but for the header's time stamp when the dump carries no time
    of its own (not timed: the mount and convert each stamp their own time, as makedumpfile does)."""
    import struct
    from meminfo_abi import diskdump as dd
    assert os.path.getsize(a) == os.path.getsize(b)
    with open(a, "rb") as fa, open(b, "rb") as fb:
        ha, hb = fa.read(4096), fb.read(4096)
    t = dd.layouts(">").disk_dump_header.parse(hb).timestamp
    assert hb[TIMESTAMP] == struct.pack(">qq", t.tv_sec, t.tv_usec)
    if not timed:
        ha, hb = ha[:TIMESTAMP.start] + ha[TIMESTAMP.stop:], hb[:TIMESTAMP.start] + hb[TIMESTAMP.stop:]
    assert ha == hb
    proc = subprocess.run(["cmp", "-i", "4096", a, b], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("which", ["device", "machine"])
def test_mount_kdump_is_what_convert_writes_uncompressed(device, tmp_path, which):
    """-f kdump serves DIR/dump.kdump: byte for byte `vmcore convert -f kdump --compress none` (a
    compressed file's descriptors need every page compressed first: no lazy layout), opened by our
    reader, libkdumpfile, drgn and the real makedumpfile 1.7.6 (--dump-dmesg)."""
    _d, m, dev = device
    src = dev if which == "device" else m
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    proc = run_cli("vmcore.cli", "mount", src, mnt, "-f", "kdump", "--json")
    assert proc.returncode == 0, proc.stderr
    path = json.loads(proc.stdout)["file"]
    try:
        assert path == os.path.join(mnt, "dump.kdump") and os.listdir(mnt) == ["dump.kdump"]
        conv = str(tmp_path / "conv.kdump")
        run_cli("vmcore.cli", "convert", src, "-o", conv, "-f", "kdump", "--compress", "none", check=True)
        with open_dump(src) as s, open_dump(path) as view:
            _same_file(path, conv, timed=s.attrs.timestamp is not None)
            assert view.attrs.format == "kdump" and view.attrs.complete
            assert page_digests(view) == page_digests(s)
            assert [(c.psw_mask, c.psw_addr, c.gprs) for c in view.cpus] == \
                [(c.psw_mask, c.psw_addr, c.gprs) for c in s.cpus]
            kdumpfile = peer_kdumpfile()
            ctx = kdumpfile.kdumpfile(path)
            assert ctx.attr["file.format"] == "diskdump"
            for page in sorted(page_digests(s))[:40:3]:
                assert bytes(ctx.read(kdumpfile.KDUMP_MACHPHYSADDR, page, 4096)) == s.read(page, 4096)
        assert_drgn_reads_the_same(peer_drgn(), path)
        ours = run_cli("vmcore.cli", "dmesg", src)
        log = str(tmp_path / "dmesg.txt")
        mdf = subprocess.run([*s390x_peers()["MAKEDUMPFILE"], "--dump-dmesg", path, log], capture_output=True,
                             text=True, timeout=600)
        assert mdf.returncode == 0, mdf.stdout[-300:] + mdf.stderr[-300:]
        text = open(log, errors="replace").read()
        assert ours.returncode == 0 and ours.stdout.strip(), ours.stderr
        assert ours.stdout.splitlines()[0].split("]", 1)[1].strip() in text, text[:300]
    finally:
        # libkdumpfile's context keeps the file open (it has no close): lazily, as the fixture does
        if run_cli("vmcore.cli", "umount", mnt).returncode != 0:
            subprocess.run(["umount", "-l", mnt])


def test_a_window_of_a_compressed_segment_reads_through_its_units(device):
    """-s prod|kdump|all show windows of the device's segments (the swap undone): the cache finds
    the zlib units behind a window at any offset."""
    from vmcore.formats.s390 import ZlibSegmentSource
    from vmcore.select import _OffsetSource
    from vmcore.model import MemChunk
    from vmcore.mount import ByteLru, ChunkReader
    _d, _m, dev = device
    rng = random.Random(7)
    with open_dump(dev) as src:
        seg = next(c.source for c in src.chunks
                   if isinstance(c.source, ZlibSegmentSource) and c.size >= 3 * MIB)
        start = MIB + MIB // 2 + 4096
        window = _OffsetSource(seg, start, seg.size - start, "window")
        reader = ChunkReader(MemChunk(0, window.size, window), ByteLru(2 * MIB))
        assert reader.units is not None and reader.units[1] == start
        for _ in range(60):
            off = rng.randrange(window.size - 1)
            n = min(window.size - off, rng.choice([1, 4096, 300000, 2 * MIB]))
            assert reader.read(off, n) == seg.read(start + off, n), (off, n)
        assert reader.cache.hits and reader.cache.used <= 2 * MIB
