"""meminfo block: layout sizes, the os_info worked examples, and every validation reason."""

import hashlib
import struct

import pytest

from meminfo_abi.checksum import csum_partial
from meminfo_abi.lowcore import LC_OS_INFO
from meminfo_abi.meminfo import (
    EKDUMP_DIGEST, EKDUMP_NOT_LOADED, EKDUMP_SEGMENT_CSUM, EKDUMP_SEGMENT_RANGE, EKDUMP_SEGTAB_INVALID,
    EOS_INFO_CSUM_FAILED, EOS_INFO_MISSING, EOS_INFO_NOCRASHKERNEL, EOS_INFO_VERSION,
    KEXEC_SEGTAB_HEADER_SIZE, MEMINFO_KEXEC_SEGMENTS, OS_INFO_ENTRY_SLOTS, OS_INFO_SIZE, OS_INFO_VMCOREINFO,
    SEGMENT_KIND_INITRD, SEGMENT_KIND_KERNEL, KexecSegment, KexecSegmentEntry, KexecSegmentTable,
    KexecSegmentTableHeader, MemInfo, MemInfoPage, OsInfoEntry, check_meminfo, segments_digest,
)
from dumpkit.errors import BadInputError
from tests.conftest import Memory

MIB = 1 << 20
PAGE = 0x400000
CK_BASE, CK_SIZE = 0x1000000, 0x800000     # crashkernel 8M@16M in a 32 MiB memory


def test_layout_sizes_follow_the_abi():
    assert MemInfoPage.sizeof() == OS_INFO_SIZE == 4096
    assert OsInfoEntry.sizeof() == 20
    assert OS_INFO_ENTRY_SLOTS == 203
    assert KexecSegmentTableHeader.sizeof() == KEXEC_SEGTAB_HEADER_SIZE == 64
    assert KexecSegmentEntry.sizeof() == 32
    page = MemInfo(crashkernel_addr=0x11111111, crashkernel_size=0x22222222)
    page.entries[12].addr = 0x3333333333333333
    raw = page.to_bytes()
    assert raw[:8] == b"OSINFOSZ"
    assert struct.unpack_from(">HHQQ", raw, 0x0C) == (1, 1, 0x11111111, 0x22222222)
    assert struct.unpack_from(">Q", raw, 0x20 + 12 * 20)[0] == 0x3333333333333333   # entry[12] at 0x110


def test_worked_examples_from_ref_abi():
    mi = MemInfo(crashkernel_addr=0x10000000, crashkernel_size=0x10000000)
    raw = mi.to_bytes()
    assert struct.unpack_from(">I", raw, 8)[0] == 0x20010001
    mi.entries[0].addr, mi.entries[0].size, mi.entries[0].csum = 0x01234000, 0x1000, 0xDEADBEEF
    assert struct.unpack_from(">I", mi.to_bytes(), 8)[0] == 0xFFD20EF0
    # the flags entry example: u64 1 -> entry csum 1, size 8
    mi.set_data_entry(2, 0x5000, (1).to_bytes(8, "big"))
    assert (mi.entries[2].size, mi.entries[2].csum) == (8, 1)


def test_parse_build_round_trip():
    mi = MemInfo(crashkernel_addr=CK_BASE, crashkernel_size=CK_SIZE)
    mi.set_value_entry(5, 0xABCDEF000)
    mi.set_data_entry(0, 0x2000, b"OSRELEASE=6.1\n")
    raw = mi.to_bytes()
    back = MemInfo.parse(raw)
    assert back.to_bytes() == raw
    assert back.entries[5].addr == 0xABCDEF000 and back.entries[5].size == 0


def test_fast_path_is_the_construct_declaration():
    """MemInfo.parse / to_bytes run on a struct derived from MemInfoPage: on any page, the
    declaration parsed by construct and the fast path agree field by field, and both build
    the same bytes (random pages, a real one, all-ones)."""
    import random
    from construct import Array, Const, Int32ul, Int64ub, Struct
    from meminfo_abi.flat import FlatLayout
    rng = random.Random(390)
    pages = [rng.randbytes(OS_INFO_SIZE) for _ in range(20)] + [b"\xff" * OS_INFO_SIZE]
    pages.append(MemInfo(crashkernel_addr=CK_BASE, crashkernel_size=CK_SIZE).to_bytes())
    for raw in pages:
        ref = MemInfoPage.parse(raw)
        mi = MemInfo.parse(raw + b"trailing bytes are not part of the page")
        assert (mi.magic, mi.csum, mi.version_major, mi.version_minor, mi.crashkernel_addr, mi.crashkernel_size,
                mi.reserved) == (ref.magic, ref.csum, ref.version_major, ref.version_minor, ref.crashkernel_addr,
                                 ref.crashkernel_size, ref.reserved)
        assert [(e.addr, e.size, e.csum) for e in mi.entries] == [(e.addr, e.size, e.csum) for e in ref.entry]
        assert MemInfo.parse(memoryview(bytearray(raw))) == mi
        flat = FlatLayout(MemInfoPage)
        assert flat.build(flat.parse(raw)) == MemInfoPage.build(ref) == raw
        built = mi.to_bytes()                 # the header checksum recomputed, nothing else changed
        assert built[:8] + built[12:] == raw[:8] + raw[12:]
    # what has no flat form is refused when the layout is declared, not misread later
    for layout in (Struct("magic" / Const(b"KDSEGTAB")), Struct("a" / Int64ub, "b" / Int32ul),
                   Struct("n" / Int32ul, "v" / Array(lambda ctx: ctx.n, Int32ul))):
        with pytest.raises(ValueError):
            FlatLayout(layout)
    # a value of the wrong shape is an error, never padded or cut
    mi = MemInfo(reserved=b"\0" * 5)
    with pytest.raises(ValueError, match="reserved: 5 bytes"):
        mi.to_bytes()
    mi = MemInfo()
    mi.entries.pop()
    with pytest.raises(ValueError, match="entry: 202 elements"):
        mi.to_bytes()


def loaded_memory() -> tuple[Memory, KexecSegmentTable, int]:
    """32 MiB memory with meminfo at PAGE, a kernel and an initrd segment and their table."""
    mem = Memory(32 * MIB)
    kernel = bytes(range(256)) * 1024 + b"\x01\x02\x03"          # odd length: zero fill to memsz
    initrd = hashlib.sha256(b"initrd").digest() * 4096
    segs = []
    for data, addr, kind in ((kernel, CK_BASE + 0x10000, SEGMENT_KIND_KERNEL),
                             (initrd, CK_BASE + 0x400000, SEGMENT_KIND_INITRD)):
        memsz = (len(data) + 4095) // 4096 * 4096
        mem.write(addr, data)
        segs.append(KexecSegment(addr, memsz, len(data), csum_partial(mem.read(addr, memsz)), kind))
    table = KexecSegmentTable(entry=0x10010, segments=segs)
    table.sha256 = segments_digest(mem, segs)
    tab_addr = CK_BASE + 0x2000
    raw_tab = table.to_bytes()
    mem.write(tab_addr, raw_tab)
    mi = MemInfo(crashkernel_addr=CK_BASE, crashkernel_size=CK_SIZE)
    mi.set_data_entry(MEMINFO_KEXEC_SEGMENTS, tab_addr, raw_tab)
    mem.write(PAGE, mi.to_bytes())
    mem.write(LC_OS_INFO, PAGE.to_bytes(8, "big"))
    return mem, table, tab_addr


def test_intact_kdump_passes_every_check():
    mem, table, _ = loaded_memory()
    rep = check_meminfo(mem)
    assert rep.header_valid and rep.kdump_intact, rep.reason
    assert [c.name for c in rep.checks] == [
        "pointer", "alignment", "magic", "header checksum", "version", "crashkernel", "segment table",
        "segment 0 (kernel)", "segment 1 (initrd)", "sha256 digest"]
    assert rep.table.sha256 == hashlib.sha256(
        mem.read(table.segments[0].mem, table.segments[0].memsz)
        + mem.read(table.segments[1].mem, table.segments[1].memsz)).digest()


def test_segment_table_round_trip_and_bounds():
    _, table, _ = loaded_memory()
    raw = table.to_bytes()
    assert KexecSegmentTable.parse(raw) == table
    with pytest.raises(BadInputError, match="magic"):
        KexecSegmentTable.parse(b"X" + raw[1:])
    bad_count = bytearray(raw)
    bad_count[10:12] = (17).to_bytes(2, "big")
    with pytest.raises(BadInputError, match="at most 16"):
        KexecSegmentTable.parse(bytes(bad_count))
    with pytest.raises(BadInputError, match="needs"):
        KexecSegmentTable.parse(raw[:-1])


def _first_failure(mem):
    rep = check_meminfo(mem)
    f = rep.first_failure
    return (f.name, f.wait_code) if f else None


def test_each_reason_is_named_with_its_wait_code():
    mem, table, tab_addr = loaded_memory()
    cases = []
    m = Memory(mem); m.write(LC_OS_INFO, bytes(8)); cases.append((m, ("pointer", EOS_INFO_MISSING)))
    m = Memory(mem); m.write(LC_OS_INFO, (PAGE + 8).to_bytes(8, "big")); cases.append((m, ("alignment", EOS_INFO_MISSING)))
    m = Memory(mem); m.write(LC_OS_INFO, (64 * MIB).to_bytes(8, "big")); cases.append((m, ("readable", EOS_INFO_MISSING)))
    m = Memory(mem); m[PAGE] ^= 1; cases.append((m, ("magic", EOS_INFO_MISSING)))
    m = Memory(mem); m[PAGE + 0x30] ^= 1; cases.append((m, ("header checksum", EOS_INFO_CSUM_FAILED)))
    mi = MemInfo.parse(mem.read(PAGE, 4096)); mi.version_major = 2
    m = Memory(mem); m.write(PAGE, mi.to_bytes()); cases.append((m, ("version", EOS_INFO_VERSION)))
    mi = MemInfo.parse(mem.read(PAGE, 4096)); mi.crashkernel_addr = 0
    m = Memory(mem); m.write(PAGE, mi.to_bytes()); cases.append((m, ("crashkernel", EOS_INFO_NOCRASHKERNEL)))
    mi = MemInfo.parse(mem.read(PAGE, 4096)); mi.clear_entry(MEMINFO_KEXEC_SEGMENTS)
    m = Memory(mem); m.write(PAGE, mi.to_bytes()); cases.append((m, ("kdump loaded", EKDUMP_NOT_LOADED)))
    m = Memory(mem); m[tab_addr + 20] ^= 0x80; cases.append((m, ("segment table", EKDUMP_SEGTAB_INVALID)))
    m = Memory(mem); m[table.segments[1].mem + 777] ^= 4; cases.append((m, ("segment 1 (initrd)", EKDUMP_SEGMENT_CSUM)))
    for got, want in ((_first_failure(m), w) for m, w in cases):
        assert got == want


def test_digest_mismatch_is_its_own_reason():
    # swap two bytes inside a segment at word-aligned distance: CKSM stays equal, SHA-256 does not
    mem, table, _ = loaded_memory()
    s = table.segments[0]
    a, b = s.mem + 0, s.mem + 4
    mem[a], mem[b] = mem[b], mem[a]
    assert mem[a] != mem[b]
    assert _first_failure(mem) == ("sha256 digest", EKDUMP_DIGEST)


def test_segment_outside_crashkernel_is_rejected():
    mem, table, tab_addr = loaded_memory()
    table.segments[0].mem = CK_BASE - 0x1000
    raw = table.to_bytes()
    mem.write(tab_addr, raw)
    mi = MemInfo.parse(mem.read(PAGE, 4096))
    mi.set_data_entry(MEMINFO_KEXEC_SEGMENTS, tab_addr, raw)
    mem.write(PAGE, mi.to_bytes())
    assert _first_failure(mem) == ("segment 0 (kernel)", EKDUMP_SEGMENT_RANGE)


def test_every_meminfo_page_byte_flip_is_detected():
    mem, _, _ = loaded_memory()
    page = bytes(mem[PAGE:PAGE + 4096])
    wrong = []
    for off in range(4096):
        mem[PAGE + off] ^= 0x01
        rep = check_meminfo(mem, verify_segments=False)
        if rep.kdump_intact or rep.header_valid and not rep.first_failure:
            wrong.append(off)
        mem[PAGE + off] ^= 0x01
    assert not wrong, f"undetected flips at {wrong[:10]}"
    assert bytes(mem[PAGE:PAGE + 4096]) == page


def test_vmcoreinfo_entry_checksum_failure_is_reported():
    mem = Memory(32 * MIB)
    text = b"OSRELEASE=6.1\nPAGESIZE=4096\n"
    mem.write(0x3000, text)
    mi = MemInfo(crashkernel_addr=CK_BASE, crashkernel_size=CK_SIZE)
    mi.set_data_entry(OS_INFO_VMCOREINFO, 0x3000, text)
    mem.write(PAGE, mi.to_bytes()); mem.write(LC_OS_INFO, PAGE.to_bytes(8, "big"))
    assert [c for c in check_meminfo(mem).checks if c.name.startswith("entry 0")][0].ok
    mem[0x3001] ^= 0xFF
    chk = [c for c in check_meminfo(mem).checks if c.name.startswith("entry 0")][0]
    assert not chk.ok and "VMCOREINFO" in chk.name
