"""The full stand-alone dump: every page comes back, CPU prefixes, end marker, compression, volumes, failures."""

import hashlib
import os
import struct
import zlib

import pytest

from meminfo_abi.s390_dump import (
    DF_S390_MAGIC, DF_S390_MAGIC_EXT, DUMP_SEGM_ENTRY_UNCOMPRESSED, DUMP_SEGM_ZLIB_MAXLEN, EMEM, ENOSIGN, ENOTIME,
    MIB,
)
from meminfo_abi.s390_dump_stream import ExtStreamWalker, read_header, read_unit
from meminfo_abi.tod import tod_now
from s390_machine.machine import Machine
from tests.conftest import run_cli
from zipl_sadump.device import MVDUMP_SIGN_OFFSET, build_device, build_multi_volume, read_device, read_devices
from meminfo_abi.s390_dump_reader import open_device_dump as open_dump
from zipl_sadump.extract import extract_dump
from zipl_sadump.fulldump import write_full_dump

PAGE = 4096
ZERO_PAGE = hashlib.sha1(bytes(PAGE)).digest()
CPU_ID = 0xFF00012320978000


@pytest.fixture(scope="session")
def machine(tmp_path_factory):
    """A 128 MiB, 3-CPU machine with a quarter of its MiBs holding data (read-only use)."""
    path = str(tmp_path_factory.mktemp("fd") / "m128")
    run_cli("s390_machine.cli", "create", path, "--memory", "128M", "--cpus", "3", "--fill", "0.25", check=True)
    m = Machine.open(path, "read")
    yield m
    m.close()


@pytest.fixture(scope="session")
def memory_pages(machine):
    """sha1 of every page of the machine's memory image, and the MiBs that are not all zero."""
    digests, nonzero = [], set()
    with open(machine.memory.path, "rb") as fh:
        for mib in range(machine.memory.size // MIB):
            data = fh.read(MIB)
            if data.count(0) != MIB:
                nonzero.add(mib)
            digests += [hashlib.sha1(data[p:p + PAGE]).digest() for p in range(0, MIB, PAGE)]
    return digests, nonzero


def dump_pages(dump):
    """sha1 of every page as the dump restores it (gaps between segments are zero)."""
    digests = [ZERO_PAGE] * (dump.mem_size // PAGE)
    for addr, data in dump.units():
        assert len(data) == MIB
        for p in range(0, MIB, PAGE):
            digests[(addr + p) // PAGE] = hashlib.sha1(data[p:p + PAGE]).digest()
    return digests


def cpu_args(machine):
    return [c.prefix for c in machine.cpus], len(machine.cpus) + 1


def do_dump(devices, machine, compress=False, tod=None, **kw):
    lc, real = cpu_args(machine)
    tod = tod_now() if tod is None else tod
    return write_full_dump(devices, machine.memory, lc, real, tod=tod, cpu_id=CPU_ID, compress=compress, **kw)


def check_header(hdr, machine, *, magic=DF_S390_MAGIC_EXT, zlib_on=False, mem_size=None):
    lc, real = cpu_args(machine)
    mem = mem_size or machine.memory.size
    assert hdr.magic == magic and hdr.version == (2 if zlib_on else 1)
    assert (hdr.hdr_size, hdr.dump_level, hdr.page_size, hdr.arch, hdr.build_arch) == (4096, 4, 4096, 2, 2)
    assert (hdr.mem_size, hdr.mem_start, hdr.mem_end, hdr.num_pages) == (mem, 0, mem, mem // 4096)
    assert hdr.mem_size_real == machine.memory.size and hdr.cpu_id == CPU_ID
    assert hdr.cpu_cnt == len(lc) and hdr.lc_vec[:len(lc)] == lc and hdr.real_cpu_cnt == real
    assert not any(hdr.lc_vec[len(lc):])
    assert (hdr.zlib_version_s390, hdr.zlib_entry_size) == ((1, MIB) if zlib_on else (0, 0))


@pytest.mark.parametrize("dev_type,compress", [("eckd", False), ("eckd", True), ("fba", False), ("tape", False)])
def test_full_dump_restores_every_page(tmp_path, machine, memory_pages, dev_type, compress):
    p = str(tmp_path / "dev.img")
    dev = build_device(p, dev_type, 200 * MIB)
    start = tod_now()
    res = do_dump([dev], machine, compress, tod=start)
    assert res.complete and res.wait_code == 0 and res.reason == "complete"
    assert res.compressed == compress and res.end_tod >= start
    with open_dump(p) as dump:
        assert dump.complete, dump.reason
        check_header(dump.header, machine, magic=DF_S390_MAGIC if dev_type == "tape" else DF_S390_MAGIC_EXT,
                     zlib_on=compress)
        assert dump.end_marker_tod >= dump.header.tod == start
        assert dump_pages(dump) == memory_pages[0]
    if dev_type != "tape":
        # the walker straight on the image: segments are the maximal runs of non-zero MiB
        nonzero = memory_pages[1]
        with open(p, "rb") as fh:
            w = ExtStreamWalker(fh, dev.dump_offset, size=dev.dump_size)
            segs = list(w)
        assert w.status.complete and w.status.end_marker_tod == res.end_tod
        stored = {s.start // MIB + i for s in segs for i in range(s.units)}
        assert stored == nonzero | ({0} if compress else set())
        assert segs[-1].stop and not any(s.stop for s in segs[:-1])
        runs = [s for s in segs if s.len and not (compress and s.start == 0)]
        assert all(a.end < b.start for a, b in zip(runs, runs[1:]))          # maximal: never touching
        assert res.segments == len(segs) and res.bytes_dumped == sum(s.len for s in segs)
        assert res.needed == w.status.end_offset - dev.dump_offset + (dev.block_size - 16)


def test_compressed_units_are_standard_zlib_streams(tmp_path, machine):
    p = str(tmp_path / "dev.img")
    dev = build_device(p, "eckd", 200 * MIB)
    assert do_dump(dev, machine, compress=True).complete
    compressed = raw = 0
    with open(p, "rb") as fh:
        segs = list(ExtStreamWalker(fh, dev.dump_offset, size=dev.dump_size))
        first = segs[0]
        assert (first.start, first.len, first.compressed) == (0, MIB, False)     # first MiB never compressed
        for seg in segs[1:]:
            assert seg.len <= DUMP_SEGM_ZLIB_MAXLEN and seg.compressed
            assert len(seg.entries) == seg.units and seg.size_on_disk % PAGE == 0
            for i in range(seg.units):
                off, length, is_raw = seg.unit_location(i)
                assert off % PAGE == 0 and length % PAGE == 0
                fh.seek(off)
                blob = fh.read(length)
                want = machine.memory.read(seg.start + i * MIB, MIB)
                if is_raw:
                    assert seg.entries[i] & DUMP_SEGM_ENTRY_UNCOMPRESSED and blob == want
                    raw += 1
                    continue
                d = zlib.decompressobj()                    # the standard library's zlib, not zlib-ng
                assert d.decompress(blob) == want and d.eof and not d.unused_data.strip(b"\0")
                assert length < MIB
                compressed += 1
    assert compressed > 0


def test_serial_and_parallel_compression_write_identical_bytes(tmp_path, machine):
    images = []
    tod = tod_now()
    for workers in (1, 4):
        p = str(tmp_path / f"w{workers}.img")
        dev = build_device(p, "eckd", 200 * MIB)
        res = do_dump(dev, machine, compress=True, tod=tod, tod_end=lambda: tod + 4096, workers=workers)
        assert res.complete
        with open(p, "rb") as fh:
            images.append(hashlib.sha256(fh.read()).hexdigest())
    assert images[0] == images[1]


@pytest.mark.parametrize("tool_version", [2, 1], ids=["xmult64v2", "xmult64v1"])   # zipl >= 2.37 / older
def test_multi_volume_over_three_devices_reassembles(tmp_path, machine, memory_pages, tool_version):
    paths = [str(tmp_path / f"v{i}.img") for i in range(3)]
    vols = build_multi_volume(paths, 16 * MIB, tool_version=tool_version)
    assert {v.tool_version for v in vols} == {tool_version}
    start = tod_now()
    res = do_dump(vols, machine, compress=True, tod=start)          # MV never compresses
    assert res.complete and not res.compressed, res.reason
    used = [v for v in res.volumes if v["segments"]]
    assert len(used) >= 2 and [v["end_marker"] for v in res.volumes] == [False] * (len(res.volumes) - 1) + [True]
    for i, p in enumerate(paths[:len(res.volumes)]):
        dev = read_device(p)
        with open(p, "rb") as fh:
            hdr = read_header(fh, dev.dump_offset)
        check_header(hdr, machine)
        assert (hdr.volnr, hdr.mvdump, hdr.mvdump_sign, hdr.tod) == (i, 1, DF_S390_MAGIC_EXT, start)
        assert hdr.mvdump_zipl_time == dev.mv_table.tod
    with open_dump(paths) as dump:
        assert dump.complete, dump.reason
        assert len({vol for vol, _ in dump.segments}) == len(used)
        assert dump_pages(dump) == memory_pages[0]
    # merged into one extended stream
    out = str(tmp_path / "merged.dump")
    ex = extract_dump(paths, out)
    with open(out, "rb") as fh:
        w = ExtStreamWalker(fh)
        segs = list(w)
        assert w.status.complete and w.status.end_offset == ex.size == os.path.getsize(out)
        assert (w.header.volnr, w.header.mvdump) == (0, 0)
        got = {s.start + i * MIB: read_unit(fh, s, i) for s in segs for i in range(s.units)}
    assert {a // MIB for a in got} == memory_pages[1]
    assert all(data == machine.memory.read(a, MIB) for a, data in got.items())


def test_multi_volume_checks_signature_and_time_stamp(tmp_path, machine):
    paths = [str(tmp_path / f"v{i}.img") for i in range(3)]
    build_multi_volume(paths, 16 * MIB)                  # the dump needs more than one volume
    dev1 = read_device(paths[1])
    with open(paths[1], "r+b") as fh:                    # volume 1 lost its signature
        fh.seek(dev1.dump_offset + MVDUMP_SIGN_OFFSET)
        fh.write(bytes(8))
    res = do_dump(read_devices(paths), machine)
    assert not res.complete and res.wait_code == ENOSIGN and "Wrong signature" in res.reason
    assert res.volumes[0]["segments"] > 0
    # a volume re-installed on its own carries another time stamp
    build_multi_volume(paths, 16 * MIB)
    fresh = read_devices(paths)
    stale = build_multi_volume([paths[1]], None)[0]
    res = do_dump([fresh[0], stale, fresh[2]], machine)
    assert not res.complete and res.wait_code == ENOTIME and "time stamps" in res.reason
    # --force: the dumper does not look at signatures
    forced = build_multi_volume(paths, 16 * MIB, force=True)
    assert not any(d.signature for d in forced)
    assert do_dump(forced, machine).complete


@pytest.mark.parametrize("kind", ["eckd", "eckd-zlib", "fba", "tape", "mv"])
def test_device_too_small_stops_without_end_marker(tmp_path, machine, kind):
    small = 12 * MIB
    if kind == "mv":
        devs = build_multi_volume([str(tmp_path / f"v{i}.img") for i in range(2)], small)
    else:
        devs = [build_device(str(tmp_path / "d.img"), kind.split("-")[0], small)]
    res = do_dump(devs, machine, compress=kind.endswith("zlib"))
    assert not res.complete and res.wait_code == EMEM and "Device too small" in res.reason
    assert res.needed > sum(d.dump_size for d in devs)
    with open_dump(devs) as dump:
        assert dump.present and not dump.complete and dump.end_marker_tod is None
    for d in devs:
        with open(d.path, "rb") as fh:
            assert b"DUMP_END" not in fh.read()
    # a device of the reported size holds the dump
    if kind == "mv":
        big = build_multi_volume([str(tmp_path / f"w{i}.img") for i in range(2)], res.needed // 2 + 2 * MIB)
    else:
        big = [build_device(str(tmp_path / "big.img"), kind.split("-")[0], res.needed + 2 * MIB)]
    again = do_dump(big, machine, compress=kind.endswith("zlib"))
    assert again.complete and again.needed <= res.needed
    if kind in ("eckd", "fba"):
        assert again.needed == res.needed                     # exact for uncompressed single volume


def test_interrupted_dump_is_never_complete(tmp_path, machine):
    p = str(tmp_path / "dev.img")
    dev = build_device(p, "eckd", 200 * MIB)
    first = tod_now()
    assert do_dump(dev, machine, tod=first).complete          # an older, complete dump on the device

    seen = []

    def progress(n):
        seen.append(n)
        if sum(seen) > machine.memory.size // 2:
            raise KeyboardInterrupt("operator stopped the dumper")

    with pytest.raises(KeyboardInterrupt):
        do_dump(dev, machine, tod=first + (10 << 12), progress=progress)
    with open_dump(p) as dump:
        assert dump.present and not dump.complete
        assert dump.header.tod == first + (10 << 12)
        # the older dump's segments are still behind the interruption point, its end marker is not
        assert "no end marker after segment" in dump.reason and "(no DUMP_END string)" in dump.reason
    fresh = build_device(str(tmp_path / "fresh.img"), "eckd", 200 * MIB)
    seen.clear()
    with pytest.raises(KeyboardInterrupt):
        do_dump(fresh, machine, compress=True, progress=progress)
    with open_dump(fresh) as dump:
        assert not dump.complete and "no end marker" in dump.reason


def test_progress_covers_memory_and_end_tod_is_not_before_start(tmp_path, machine):
    dev = build_device(str(tmp_path / "d.img"), "eckd", 200 * MIB)
    total = []
    start = tod_now()
    res = do_dump(dev, machine, compress=True, tod=start, tod_end=lambda: start - 1000, progress=total.append)
    assert sum(total) == machine.memory.size
    assert res.end_tod == start
    with open_dump(dev) as dump:
        assert dump.end_marker_tod == start and dump.complete


def test_memory_limit_of_the_dump_tool(tmp_path, machine, memory_pages):
    p = str(tmp_path / "d.img")
    build_device(p, "fba", 200 * MIB, mem_limit=64 * MIB)
    res = do_dump(p, machine)
    assert res.complete and res.mem_size == 64 * MIB
    with open_dump(p) as dump:
        check_header(dump.header, machine, mem_size=64 * MIB)
        assert dump_pages(dump) == memory_pages[0][:64 * MIB // PAGE]


def test_cli_extract_single_volume_and_refuses_incomplete(tmp_path, machine):
    p = str(tmp_path / "d.img")
    dev = build_device(p, "eckd", 200 * MIB)
    assert do_dump(dev, machine, compress=True).complete
    out = str(tmp_path / "dump.s390")
    proc = run_cli("zipl_sadump.cli", "extract", "--device", p, "-f", "s390_ext", "-o", out, "--json", check=True)
    assert '"segments"' in proc.stdout
    with open(p, "rb") as fh:
        fh.seek(dev.dump_offset)
        area = fh.read(os.path.getsize(out))
    with open(out, "rb") as fh:
        assert fh.read() == area                             # the partition's stream, byte for byte
        w = ExtStreamWalker(fh)
        list(w)
        assert w.status.complete and w.header.zlib_version_s390 == 1
    text = run_cli("zipl_sadump.cli", "show", "--device", p, check=True).stdout
    assert "complete" in text and "zlib" in text

    small = build_device(str(tmp_path / "s.img"), "eckd", 12 * MIB)
    assert not do_dump(small, machine).complete
    bad = str(tmp_path / "bad.s390")
    proc = run_cli("zipl_sadump.cli", "extract", "--device", small.path, "-f", "s390_ext", "-o", bad)
    assert proc.returncode == 4 and "not complete" in proc.stderr and proc.stderr.count("\n") == 1
    assert "--allow-incomplete" in proc.stderr
    assert not os.path.exists(bad) and not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    # --allow-incomplete: a deliberate choice, and the extracted file still says incomplete
    proc = run_cli("zipl_sadump.cli", "extract", "--device", small.path, "-f", "s390_ext", "-o", bad,
                   "--allow-incomplete", check=True)
    assert "INCOMPLETE" in proc.stdout
    with open(bad, "rb") as fh:
        w = ExtStreamWalker(fh)
        assert list(w) and not w.status.complete and not w.status.end_marker
    info = run_cli("vmcore.cli", "info", bad)
    assert info.returncode == 4 and "no" in info.stdout
    verify = run_cli("vmcore.cli", "verify", bad)
    assert verify.returncode == 4 and "incomplete" in verify.stdout


def test_extract_converts_a_tape_dump(tmp_path, machine, memory_pages):
    p = str(tmp_path / "t.img")
    dev = build_device(p, "tape", 200 * MIB)
    assert do_dump(dev, machine).complete
    out = str(tmp_path / "tape.s390")
    extract_dump(p, out)
    with open(out, "rb") as fh:
        w = ExtStreamWalker(fh)
        segs = list(w)
        assert w.status.complete and w.header.magic == DF_S390_MAGIC_EXT
        assert {s.start // MIB + i for s in segs for i in range(s.units)} == memory_pages[1]
    raw = open(p, "rb").read(dev.dump_offset + 64)
    assert struct.unpack_from("<HHB", raw, dev.dump_offset) == (0, 0x3000, 0x40)    # tapemark after the tool


def test_sadump_and_vmcore_judge_a_device_alike(tmp_path, machine):
    """One reader, one set of checks: a volume whose dump header names another zipl -M set
    (mvdump_zipl_time) makes the dump incomplete for `sadump show`/`extract` and `vmcore`
    alike, with the same reason; a tape cut short is judged alike too."""
    from vmcore.formats import open_dump as open_any

    paths = [str(tmp_path / f"v{i}.img") for i in range(3)]
    build_multi_volume(paths, 16 * MIB)
    assert do_dump(read_devices(paths), machine).complete
    dev1 = read_device(paths[1])
    with open(paths[1], "r+b") as fh:                    # 0x208: mvdump_zipl_time of volume 1's header
        fh.seek(dev1.dump_offset + 0x208)
        fh.write((dev1.mv_table.tod + 1).to_bytes(8, "big"))
    with open_dump(paths) as dev_view, open_any(paths) as model:
        assert dev_view.present and not dev_view.complete and not model.attrs.complete
        assert "another zipl -M set" in dev_view.reason and "another zipl -M set" in model.attrs.incomplete_reason
    out = run_cli("zipl_sadump.cli", "show", "--device", ",".join(paths), "--json")
    assert "another zipl -M set" in out.stdout

    tape = str(tmp_path / "tape.img")
    build_device(tape, "tape", 200 * MIB)
    assert do_dump(tape, machine).complete
    os.truncate(tape, read_device(tape).dump_offset + 3 * 6 + 4096 + 100 * (6 + 32768) + 5)
    with open_dump(tape) as dev_view, open_any(tape) as model:
        assert not dev_view.complete and not model.attrs.complete
        assert "the tape ends after data block 100" in dev_view.reason
        assert "the tape ends after data block 100" in model.attrs.incomplete_reason
