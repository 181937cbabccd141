"""s390 dump format layouts and the zipl dump device images (sadump build / show)."""

import json
import os
import struct

import pytest

from dumpkit.errors import BadInputError
from meminfo_abi.s390_dump import (
    AWS_HEADER_SIZE, BOOT_INFO_OFFSET_ECKD_STAGE1, BOOT_INFO_OFFSET_FBA_STAGE0, DF_S390_HDR_SIZE, DF_S390_MAGIC_EXT,
    DUMP_SEGM_ZLIB_MAXENTS, DUMP_SEGM_ZLIB_MAXLEN, MIB, AwsTapeHeader, BootEckdCdlStage0, BootEckdStage1,
    BootEckdStage1b, BootFbaStage0, BootFbaStage1b, BootInfo, DfS390DumpSegmHdr, DfS390Em, DfS390Hdr, DumperHead,
    EckdDumpParam, FbaDumpParam, MvdumpParam, MvdumpParmTable, ScsiDumpParam, Stage2dumpParmTail, TapeHead,
    build_end_marker, build_header, build_segment_header, dumper_magic_u64, parse_header,
)
from meminfo_abi.s390_dump_stream import ExtStreamWalker
from meminfo_abi.tod import TOD_UNIX_EPOCH, tod_to_datetime, tod_to_unix, unix_to_tod
from tests.conftest import run_cli
from zipl_sadump.device import (
    ECKD_BLOCK_SIZE, ECKD_PART_START, FBA_BLOCK_SIZE, MVDUMP_TABLE_BLOCK, TAPE_DUMP_OFFSET, build_device,
    build_multi_volume, fits, mvdump_table_block, read_device, read_devices,
)

SADUMP = "zipl_sadump.cli"


# -- layouts ------------------------------------------------------------------------------------

def test_layout_sizes_follow_the_abi():
    assert DfS390Hdr.sizeof() == DF_S390_HDR_SIZE == 4096
    assert DfS390Em.sizeof() == 16
    assert DfS390DumpSegmHdr.sizeof() == 4096
    assert DUMP_SEGM_ZLIB_MAXENTS == 1011 and DUMP_SEGM_ZLIB_MAXLEN == 1011 * MIB
    assert BootInfo.sizeof() == 40
    assert EckdDumpParam.sizeof() == FbaDumpParam.sizeof() == ScsiDumpParam.sizeof() == 16
    assert Stage2dumpParmTail.sizeof() == 16
    assert DumperHead.sizeof() == 8
    assert MvdumpParam.sizeof() == 13
    assert MvdumpParmTable.sizeof() == 512
    assert BootEckdCdlStage0.sizeof() == 24
    assert BootEckdStage1.sizeof() == 128
    assert BootEckdStage1b.sizeof() == BootFbaStage1b.sizeof() == 1024
    assert BootFbaStage0.sizeof() == 152
    assert TapeHead.sizeof() == 24
    assert AwsTapeHeader.sizeof() == AWS_HEADER_SIZE == 6


def test_header_field_offsets_including_the_unaligned_ones():
    raw = build_header(magic=DF_S390_MAGIC_EXT, version=2, mem_size=0x30000000, tod=0x1122334455667788,
                       cpu_id=0xFF00012320978000, lc_vec=[0x7FFFE000, 0x7FFFC000, 0x10000], real_cpu_cnt=5,
                       mem_size_real=0x40000000, volnr=3, mvdump=1, mvdump_sign=DF_S390_MAGIC_EXT,
                       mvdump_zipl_time=0xABCD, zlib=True)
    assert len(raw) == 4096
    assert struct.unpack_from(">QIIII", raw, 0) == (DF_S390_MAGIC_EXT, 2, 0x1000, 4, 4096)
    assert struct.unpack_from(">QQQI", raw, 0x18) == (0x30000000, 0, 0x30000000, 0x30000)
    assert struct.unpack_from(">QQII", raw, 0x38) == (0x1122334455667788, 0xFF00012320978000, 2, 3)
    assert struct.unpack_from(">IQ", raw, 0x50) == (2, 0x40000000)
    assert raw[0x5C] == 1                                            # mvdump
    assert struct.unpack_from(">H", raw, 0x5D)[0] == 3               # cpu_cnt, unaligned
    assert struct.unpack_from(">H", raw, 0x5F)[0] == 5               # real_cpu_cnt, unaligned
    assert raw[0x61] == 1 and struct.unpack_from(">I", raw, 0x62)[0] == MIB
    assert struct.unpack_from(">QQ", raw, 0x200) == (DF_S390_MAGIC_EXT, 0xABCD)
    assert struct.unpack_from(">3I", raw, 0x800) == (0x7FFFE000, 0x7FFFC000, 0x10000)
    assert raw[0x80C:] == bytes(4096 - 0x80C)
    hdr = parse_header(raw)
    assert hdr.lc_vec[:3] == [0x7FFFE000, 0x7FFFC000, 0x10000] and hdr.cpu_cnt == 3


def test_end_marker_and_segment_header_layout():
    em = build_end_marker(0x0102030405060708)
    assert em == b"DUMP_END" + bytes.fromhex("0102030405060708")
    seg = build_segment_header(0x100000, 0x300000, True, 77, [0, 20 | 0x80000000, 300])
    assert struct.unpack_from(">QQQI", seg, 0) == (0x100000, 0x300000, 0xFFFFFFFFFFFFFFFF, 77)
    assert seg[0x1C:0x30] == bytes(0x14)
    assert struct.unpack_from(">I3I", seg, 0x30) == (3, 0, 0x80000014, 300)
    with pytest.raises(BadInputError):
        build_segment_header(0, 1012 * MIB, False, 1, [0] * 1012)


def test_boot_info_sits_where_zipl_puts_it():
    assert BOOT_INFO_OFFSET_ECKD_STAGE1 == BootEckdStage1.sizeof() - BootInfo.sizeof() == 0x58
    assert BOOT_INFO_OFFSET_FBA_STAGE0 == BootFbaStage0.sizeof() - BootInfo.sizeof() == 0x70


def test_dumper_magics_and_tod():
    assert dumper_magic_u64(b"XECKD64", 2) == 0x5845434B44363402
    assert dumper_magic_u64(b"XMULT64", 2) == 0x584D554C54363402
    assert dumper_magic_u64(b"XDFBA64", 1) == 0x5844464241363401
    assert unix_to_tod(0) == TOD_UNIX_EPOCH == 0x7D91048BCA000000
    assert unix_to_tod(0.000001) - unix_to_tod(0) == 1 << 12           # bit 51 = 1 microsecond
    assert tod_to_unix(unix_to_tod(1_700_000_000.25)) == 1_700_000_000.25
    assert tod_to_datetime(unix_to_tod(946684800)).year == 2000
    assert tod_to_datetime(0) is None


def test_header_validation_rejects_what_zgetdump_rejects():
    good = build_header(mem_size=64 * MIB, tod=1, lc_vec=[0x10000])
    parse_header(good)
    for off, value, fmt in [(0, 0x1234, ">Q"), (0x48, 1, ">I"), (0x50, 1, ">I"), (0x5D, 513, ">H"),
                            (0x14, 8192, ">I")]:
        bad = bytearray(good)
        struct.pack_into(fmt, bad, off, value)
        with pytest.raises(BadInputError):
            parse_header(bytes(bad))
    bad = bytearray(good)
    bad[0x61] = 1                                   # zlib segments need version 2
    with pytest.raises(BadInputError):
        parse_header(bytes(bad))
    with pytest.raises(BadInputError):
        build_header(mem_size=MIB, tod=1, lc_vec=[1] * 513)


def _stream(tmp_path, segments, em_tod=5, mem=16 * MIB, zlib=False):
    """A hand-made extended stream: segments = [(start, len, stop, size_on_disk, entries, data_len)]."""
    p = tmp_path / "stream"
    with open(p, "wb") as fh:
        fh.write(build_header(mem_size=mem, tod=4, version=2 if zlib else 1, zlib=zlib))
        for start, length, stop, sod, entries, data_len in segments:
            fh.write(build_segment_header(start, length, stop, sod, entries))
            fh.write(bytes(data_len))
        if em_tod is not None:
            fh.write(build_end_marker(em_tod))
    return str(p)


@pytest.mark.parametrize("segments,em_tod,reason", [
    ([(0, MIB, True, 0, (), MIB)], 5, "complete"),
    ([(0, MIB, True, 0, (), MIB)], None, "end marker"),
    ([(0, MIB, True, 0, (), MIB)], 3, "stale end marker"),
    ([(0, MIB, False, 0, (), MIB)], 5, "no end marker after segment ending at 0x100000"),
    ([(0, 0x1000, True, 0, (), 0x1000)], 5, "not 1 MiB aligned"),
    ([(2 * MIB, MIB, False, 0, (), MIB), (MIB, MIB, True, 0, (), MIB)], 5, "below the previous end"),
    ([(0, 32 * MIB, True, 0, (), 0)], 5, "beyond the memory size"),
    ([(0, 4 * MIB, True, 0, (), MIB)], 5, "runs past the end"),
])
def test_walker_reports_why_a_stream_is_incomplete(tmp_path, segments, em_tod, reason):
    p = _stream(tmp_path, segments, em_tod)
    with open(p, "rb") as fh:
        w = ExtStreamWalker(fh)
        segs = list(w)
    assert reason in w.status.reason
    assert w.status.complete == (reason == "complete")
    if reason == "complete":
        assert [(s.start, s.len, s.stop) for s in segs] == [(0, MIB, True)]
        assert w.status.end_marker_tod == 5


def test_walker_bounds_compressed_unit_tables(tmp_path):
    # unit offsets must increase and stay inside size_on_disk; count must equal len / 1 MiB
    for entries, sod in [((0, 0), 2), ((0, 5), 3), ((0,), 2)]:
        p = _stream(tmp_path, [(0, 2 * MIB, True, sod, entries, sod * 4096)], zlib=True)
        with open(p, "rb") as fh:
            w = ExtStreamWalker(fh)
            assert list(w) == []
        assert not w.status.complete and "corrupt segment" in w.status.reason
    # a compressed segment in a dump without zlib is refused
    p = _stream(tmp_path, [(0, MIB, True, 1, (0,), 4096)], zlib=False)
    with open(p, "rb") as fh:
        w = ExtStreamWalker(fh)
        list(w)
    assert "without zlib" in w.status.reason


# -- device images ---------------------------------------------------------------------------------

def test_eckd_image_is_laid_out_like_zipl_cdl(tmp_path):
    p = str(tmp_path / "dasd.img")
    dev = build_device(p, "eckd", 100 * MIB, mem_limit=64 * MIB)
    raw = open(p, "rb").read(ECKD_PART_START * ECKD_BLOCK_SIZE + 4096)
    bi = BootInfo.parse(raw[4096 + 4 + 0x58:])
    assert bytes(bi.magic) == b"zIPL" and (bi.version, bi.bp_type, bi.dev_type, bi.flags) == (1, 1, 0, 1)
    p_ = EckdDumpParam.parse(bi.dump_param)
    assert (p_.blk_start, p_.blk_size, p_.num_heads, p_.bpt) == (24, 4096, 15, 12)
    assert p_.blk_end == dev.size // 4096 - 1 and dev.size % (12 * 4096) == 0
    assert raw[3 * 4096:3 * 4096 + 8] == struct.pack(">Q", 0x5845434B44363402)      # XECKD64 v2 at block 3
    tail = Stage2dumpParmTail.parse(raw[3 * 4096 + 0x8000 - 16:])
    assert (tail.no_compress, tail.mvdump_force, tail.mem_upper_limit) == (0, 0, 64 * MIB)
    assert raw[2 * 4096:2 * 4096 + 4] == "VOL1".encode("cp500")
    assert (dev.dump_offset, dev.dump_size) == (24 * 4096, (p_.blk_end - 23) * 4096)
    assert (dev.mem_limit, dev.tool, dev.tool_version, dev.type) == (64 * MIB, "XECKD64", 2, "eckd")
    assert os.stat(p).st_blocks * 512 < 1 * MIB           # sparse


def test_fba_image_has_the_tool_at_the_end(tmp_path):
    p = str(tmp_path / "fba.img")
    dev = build_device(p, "fba", 50 * MIB, no_compress=True)
    data = open(p, "rb").read()
    bi = BootInfo.parse(data[0x70:])
    assert (bi.bp_type, bi.dev_type) == (1, 1)
    fp = FbaDumpParam.parse(bi.dump_param)
    total = len(data) // 512
    assert fp.blk_start == 8 and fp.blk_end == total - 24 - 2 - 1
    assert data[-0x3000:-0x3000 + 8] == struct.pack(">Q", 0x5844464241363401)          # XDFBA64 v1
    assert Stage2dumpParmTail.parse(data[-16:]).no_compress == 1
    assert dev.block_size == FBA_BLOCK_SIZE and dev.dump_size == (fp.blk_end - fp.blk_start) * 512
    assert not dev.supports_compression


def test_tape_image_is_an_awstape_file(tmp_path):
    p = str(tmp_path / "tape.img")
    dev = build_device(p, "tape", 20 * MIB)
    data = open(p, "rb").read(TAPE_DUMP_OFFSET + 12)
    h = AwsTapeHeader.parse(data)
    assert (h.curblkl, h.prvblkl, h.flags1) == (0x3000, 0, 0xA0)
    assert TapeHead.parse(data[6:]).ccw1 == 0x0700000060000001                       # rewind
    tm = AwsTapeHeader.parse(data[TAPE_DUMP_OFFSET:])
    assert (tm.curblkl, tm.prvblkl, tm.flags1) == (0, 0x3000, 0x40)                  # tapemark
    assert (dev.type, dev.dump_offset, dev.size, dev.block_size) == ("tape", TAPE_DUMP_OFFSET, 20 * MIB, 32768)


@pytest.mark.parametrize("version,table_block", [(2, 7), (1, 6)], ids=["v2", "v1"])
def test_multi_volume_table_is_identical_on_every_volume(tmp_path, version, table_block):
    paths = [str(tmp_path / f"v{i}.img") for i in range(3)]
    devs = build_multi_volume(paths, 40 * MIB, tool_version=version)
    assert mvdump_table_block(version) == table_block and MVDUMP_TABLE_BLOCK == 7    # zipl >= 2.37 / older
    tables = [open(p, "rb").read()[table_block * 4096:table_block * 4096 + 512] for p in paths]
    assert tables[0] == tables[1] == tables[2]
    t = MvdumpParmTable.parse(tables[0])
    assert t.vol_cnt == 3 and t.tod != 0
    assert [v.devno for v in t.vol_parm[:3]] == [0x4711, 0x4712, 0x4713]
    assert all(v.blk_size == 0x10 and v.start_blk == 24 for v in t.vol_parm[:3])
    for i, (p, d) in enumerate(zip(paths, devs)):
        raw = open(p, "rb").read()
        assert raw[3 * 4096:3 * 4096 + 8] == struct.pack(">Q", 0x584D554C54363400 + version)    # XMULT64 v1/v2
        tail = Stage2dumpParmTail.parse(raw[(table_block * 4096) - 16:table_block * 4096])    # the tool's end
        assert tail.mem_upper_limit == 0xFFFFFFFFFFFFFFFF and tail.mvdump_force == 0
        if version == 1:                              # stage 1b where a version-2 reader looks, no table
            assert raw[7 * 4096:7 * 4096 + 512] != tables[0] and raw[7 * 4096] == 0x07
        assert (d.tool, d.tool_version) == ("XMULT64", version)
        assert raw[24 * 4096 + 512:24 * 4096 + 520] == struct.pack(">Q", DF_S390_MAGIC_EXT)   # signature
        assert raw[24 * 4096:24 * 4096 + 512] == bytes(512)
        assert d.volnr == i and d.signature and d.multi_volume
    # --force: no signature is written and the tail says so
    forced = build_multi_volume([str(tmp_path / "f0.img")], 40 * MIB, force=True)
    assert forced[0].force and not forced[0].signature


def test_orphaned_volume_and_wrong_order_are_rejected(tmp_path):
    paths = [str(tmp_path / f"v{i}.img") for i in range(2)]
    build_multi_volume(paths, 40 * MIB)
    with pytest.raises(BadInputError, match="listed as volume"):
        read_devices(list(reversed(paths)))
    build_multi_volume([paths[1]], None)                      # re-installed alone: another table
    with pytest.raises(BadInputError, match="orphaned"):
        read_devices(paths)


def _corrupt(path, offset, data):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


@pytest.mark.parametrize("offset,data,message", [
    (4096 + 4 + 0x58 + 5, b"\x00", "IPL record, not a dump record"),
    (4096 + 4 + 0x58 + 4, b"\x07", "boot_info version 7"),
    (4096 + 4 + 0x58 + 8 + 4, b"\xff\xff\xff\xff", "outside the image"),
    (4096 + 4 + 0x58 + 8 + 8, b"\x02\x00", "block size 512"),
    (3 * 4096, b"ZECKD31", "no dump tool at block 3"),
    (3 * 4096 + 7, b"\x09", "version 9"),
    (4096 + 4 + 0x58, b"xIPL", "holds no zipl dump record"),
])
def test_corrupt_boot_record_is_one_line_error(tmp_path, offset, data, message):
    p = str(tmp_path / "dasd.img")
    build_device(p, "eckd", 20 * MIB)
    _corrupt(p, offset, data)
    with pytest.raises(BadInputError, match=message) as exc:
        read_device(p)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("version", [2, 1], ids=["v2", "v1"])
@pytest.mark.parametrize("at,what", [(11, "0 blocks per track"), (12, "0 heads")])
def test_multi_volume_table_without_geometry_is_refused_by_sadump_and_vmcore(tmp_path, at, what, version):
    from vmcore.formats import open_dump
    paths = [str(tmp_path / f"v{i}.img") for i in range(2)]
    build_multi_volume(paths, 24 * MIB, tool_version=version)
    _corrupt(paths[1], mvdump_table_block(version) * ECKD_BLOCK_SIZE + 10 + 13 + at, b"\x00")   # entry 1
    message = f"corrupt multi-volume parameter table entry 1 .*{what}"
    with pytest.raises(BadInputError, match=message) as exc:
        read_devices(paths)
    assert "\n" not in str(exc.value)
    with pytest.raises(BadInputError, match=message):
        open_dump(paths)
    proc = run_cli("vmcore.cli", "info", ",".join(paths))
    assert proc.returncode == 3 and "parameter table entry 1" in proc.stderr and proc.stderr.count("\n") == 1


def test_multi_volume_tool_of_unknown_version_is_one_line_error(tmp_path):
    from vmcore.formats import open_dump
    paths = [str(tmp_path / f"v{i}.img") for i in range(2)]
    with pytest.raises(BadInputError, match="XMULT64 dump tool version 3 is not supported"):
        build_multi_volume(paths, 24 * MIB, tool_version=3)
    assert os.listdir(tmp_path) == []
    proc = run_cli(SADUMP, "build", "-d", paths[0], "--size", "24M", "--tool-version", "1")
    assert proc.returncode == 2 and "--tool-version applies to a multi-volume dump" in proc.stderr
    build_multi_volume(paths, 24 * MIB, tool_version=1)
    for p in paths:
        _corrupt(p, 3 * ECKD_BLOCK_SIZE + 7, b"\x03")         # XMULT64 v3: where its table is, nobody knows
    message = "XMULT64 dump tool version 3 is not supported .*parameter table cannot be found"
    with pytest.raises(BadInputError, match=message) as exc:
        read_devices(paths)
    assert "\n" not in str(exc.value)
    with pytest.raises(BadInputError, match=message):
        open_dump(paths)


def test_sadump_show_names_the_multi_volume_tool_version(tmp_path):
    for version in (1, 2):
        paths = [str(tmp_path / f"v{version}{i}.img") for i in range(2)]
        proc = run_cli(SADUMP, "build", "-M", ",".join(paths), "--size", "24M", "--tool-version", str(version),
                       "--json", check=True)
        assert {d["tool_version"] for d in json.loads(proc.stdout)["devices"]} == {version}
        proc = run_cli(SADUMP, "show", "-d", ",".join(paths), "--json", check=True)
        devs = json.loads(proc.stdout)["devices"]
        assert [(d["tool"], d["tool_version"], d["volnr"]) for d in devs] == [("XMULT64", version, 0),
                                                                             ("XMULT64", version, 1)]
        text = run_cli(SADUMP, "show", "-d", ",".join(paths), check=True).stdout
        assert f"(XMULT64 version {version})" in text and f"block {6 if version == 1 else 7}, 2 volumes" in text
    proc = run_cli(SADUMP, "build", "-M", str(tmp_path / "x.img"), "--size", "24M", "--tool-version", "3")
    assert proc.returncode == 2 and "--tool-version must be one of 1, 2" in proc.stderr


def test_build_rejects_bad_parameters_and_leaves_nothing(tmp_path):
    for kwargs, msg in [(dict(type="scsi", size=20 * MIB), "unknown device type"),
                        (dict(type="eckd", size=MIB), "too small"),
                        (dict(type="fba", size=20 * MIB, mem_limit=MIB + 1), "multiple of 1 MiB"),
                        (dict(type="eckd", size=None), "does not exist")]:
        with pytest.raises(BadInputError, match=msg):
            build_device(str(tmp_path / "x.img"), **kwargs)
    assert os.listdir(tmp_path) == []


def test_fits_is_the_worst_case(tmp_path):
    dev = build_device(str(tmp_path / "d.img"), "eckd", 64 * MIB)
    f = fits(dev, 48 * MIB)
    assert f and f.needed == 4096 + 48 * MIB + 2 * 4096 + 4096 and f.available == dev.dump_size
    assert not fits(dev, 64 * MIB)
    limited = build_device(str(tmp_path / "l.img"), "eckd", 64 * MIB, mem_limit=32 * MIB)
    assert fits(limited, 1 << 40).mem_size == 32 * MIB
    vols = build_multi_volume([str(tmp_path / f"v{i}.img") for i in range(3)], 24 * MIB)
    assert fits(vols, 60 * MIB) and not fits(vols, 80 * MIB)
    tape = build_device(str(tmp_path / "t.img"), "tape", 40 * MIB)
    assert fits(tape, 32 * MIB) and not fits(tape, 40 * MIB)


# -- CLI ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dev_type", ["eckd", "fba", "tape"])
def test_cli_build_show_round_trip(tmp_path, dev_type):
    p = str(tmp_path / f"{dev_type}.img")
    built = json.loads(run_cli(SADUMP, "build", "--device", p, "--type", dev_type, "--size", "40M",
                               "--mem-limit", "16M", "--json", check=True).stdout)["devices"][0]
    shown = json.loads(run_cli(SADUMP, "show", "--device", p, "--json", check=True).stdout)
    assert shown["devices"][0] == built
    assert built["type"] == dev_type and built["mem_limit"] == 16 * MIB
    assert shown["dump"]["present"] is False
    text = run_cli(SADUMP, "show", "--device", p, check=True).stdout
    assert built["tool"] in text and "none" in text


def test_cli_multi_volume_round_trip_and_fit(tmp_path, machine_1g):
    paths = ",".join(str(tmp_path / f"v{i}.img") for i in range(3))
    built = json.loads(run_cli(SADUMP, "build", "--multi-volume", paths, "--size", "300M", "--json",
                               check=True).stdout)["devices"]
    shown = json.loads(run_cli(SADUMP, "show", "--device", paths, "--for-machine", machine_1g, "--json",
                               check=True).stdout)
    assert shown["devices"] == built
    assert [d["volnr"] for d in built] == [0, 1, 2]
    assert len({json.dumps(d["mv_table"]) for d in built}) == 1
    assert shown["fit"]["fits"] is False and shown["fit"]["mem_size"] == 1 << 30
    text = run_cli(SADUMP, "show", "--device", paths, "--for-machine", machine_1g, check=True).stdout
    assert "does not fit" in text and "0.0.4713" in text


@pytest.mark.parametrize("args,code,message", [
    (["build", "--device", "{d}/x.img", "--type", "dasd", "--size", "20M"], 3, "unknown device type"),
    (["build", "--device", "{d}/x.img", "--size", "1M"], 3, "too small"),
    (["build", "--device", "{d}/x.img", "--size", "lots"], 2, "is not a size"),
    (["build", "--device", "{d}/x.img"], 3, "does not exist"),
    (["build", "--size", "20M"], 2, "exactly one of"),
    (["show", "--device", "{d}/missing.img"], 3, "does not exist"),
    (["extract", "--device", "{d}/missing.img", "-o", "{d}/out.dump"], 3, "does not exist"),
])
def test_cli_bad_input_is_one_line_and_leaves_nothing(tmp_path, args, code, message):
    proc = run_cli(SADUMP, *[a.format(d=tmp_path) for a in args])
    assert proc.returncode == code
    assert message in proc.stderr and proc.stderr.count("\n") == 1 and proc.stderr.startswith("sadump: error:")
    assert os.listdir(tmp_path) == []


def test_cli_show_rejects_a_corrupt_boot_record(tmp_path):
    p = str(tmp_path / "dasd.img")
    run_cli(SADUMP, "build", "--device", p, "--size", "20M", check=True)
    _corrupt(p, 4096 + 4 + 0x58 + 5, b"\x00")
    proc = run_cli(SADUMP, "show", "--device", p)
    assert proc.returncode == 3 and "not a dump record" in proc.stderr and proc.stderr.count("\n") == 1
    not_a_device = str(tmp_path / "plain")
    open(not_a_device, "wb").write(bytes(1 << 16))
    proc = run_cli(SADUMP, "show", "--device", not_a_device)
    assert proc.returncode == 3 and "no zipl dump record" in proc.stderr
