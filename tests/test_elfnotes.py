"""meminfo_abi.elfnotes: note payload layouts, note encoding, per-CPU notes round trip."""

from __future__ import annotations

import io
import struct

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meminfo_abi import elfnotes as en
from meminfo_abi.cpu import CpuRegs
from dumpkit.errors import BadInputError

U64 = st.integers(0, (1 << 64) - 1)
U32 = st.integers(0, (1 << 32) - 1)


# -- layouts ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layout,size",
    [
        (en.Elf64_Nhdr, 12),
        (en.NtPrstatus, 336),
        (en.NtPrfpreg, 136),
        (en.NtPrpsinfo, 136),
        (en.NtS390Timer, 8),
        (en.NtS390Todcmp, 8),
        (en.NtS390Todpreg, 4),
        (en.NtS390Ctrs, 128),
        (en.NtS390Prefix, 4),
        (en.NtS390LastBreak, 8),
        (en.NtS390VxrsLow, 128),
        (en.NtS390VxrsHigh, 256),
    ],
)
def test_layout_sizes(layout, size):
    assert layout.sizeof() == size


def test_constants():
    assert (en.NT_PRSTATUS, en.NT_PRFPREG, en.NT_PRPSINFO) == (1, 2, 3)
    assert en.NT_S390_HIGH_GPRS == 0x300
    assert [en.NT_S390_TIMER, en.NT_S390_TODCMP, en.NT_S390_TODPREG, en.NT_S390_CTRS, en.NT_S390_PREFIX] == [
        0x301, 0x302, 0x303, 0x304, 0x305]
    assert [en.NT_S390_LAST_BREAK, en.NT_S390_SYSTEM_CALL, en.NT_S390_TDB] == [0x306, 0x307, 0x308]
    assert [en.NT_S390_VXRS_LOW, en.NT_S390_VXRS_HIGH, en.NT_S390_GS_CB, en.NT_S390_PV_CPU_DATA] == [
        0x309, 0x30A, 0x30B, 0x30E]
    assert en.EM_S390 == 22
    assert (en.NOTE_NAME_CORE, en.NOTE_NAME_LINUX, en.NOTE_NAME_VMCOREINFO) == ("CORE", "LINUX", "VMCOREINFO")


def _distinct_regs(vx: bool = False) -> CpuRegs:
    r = CpuRegs(
        address=0,
        prefix=0x7FFE000,
        psw_mask=0x0704C00180000000,
        psw_addr=0x0000000000123456,
        gprs=[0x1111111100000000 + i for i in range(16)],
        acrs=[0xA0000000 + i for i in range(16)],
        crs=[0xC000000000000000 + i for i in range(16)],
        fprs=[0xF000000000000000 + i for i in range(16)],
        fpc=0x00080000,
        cpu_timer=0x7FFFFFFF12345678,
        clock_comparator=0xFFFFFFFFFFFFFFFF,
        todpreg=0x0000ABCD,
    )
    if vx:
        r.vxrs = CpuRegs.vxrs_from_parts(
            r.fprs,
            b"".join(bytes([0x10 + i]) * 8 for i in range(16)),
            b"".join(bytes([0x80 + i]) * 16 for i in range(16)),
        )
    return r


def test_prstatus_offsets():
    r = _distinct_regs()
    notes = list(en.iter_notes(en.cpu_notes(r, pid=7)))
    desc = notes[0].desc
    assert notes[0].name == "CORE" and notes[0].type == en.NT_PRSTATUS
    assert len(desc) == 336
    assert desc[:32] == bytes(32)
    assert desc[32:36] == (7).to_bytes(4, "big")
    assert desc[36:112] == bytes(76)
    assert desc[112:120] == r.psw_mask.to_bytes(8, "big")
    assert desc[120:128] == r.psw_addr.to_bytes(8, "big")
    assert desc[128:256] == b"".join(v.to_bytes(8, "big") for v in r.gprs)
    assert desc[256:320] == b"".join(v.to_bytes(4, "big") for v in r.acrs)
    assert desc[320:336] == bytes(16)   # orig_gpr2, pr_fpvalid, pad


def test_prfpreg_and_prpsinfo_layout():
    r = _distinct_regs()
    notes = list(en.iter_notes(en.cpu_notes(r, pid=1)))
    fp = notes[1]
    assert (fp.name, fp.type, len(fp.desc)) == ("CORE", en.NT_PRFPREG, 136)
    assert fp.desc[:4] == r.fpc.to_bytes(4, "big") and fp.desc[4:8] == bytes(4)
    assert fp.desc[8:] == b"".join(v.to_bytes(8, "big") for v in r.fprs)

    (ps,) = en.iter_notes(en.prpsinfo_note())
    assert (ps.name, ps.type, len(ps.desc)) == ("CORE", en.NT_PRPSINFO, 136)
    assert ps.desc[1:2] == b"R"
    assert ps.desc[40:56] == b"vmlinux" + bytes(9)
    assert ps.desc[56:] == bytes(80)


def test_kdump_note_order_and_sizes():
    for vx in (False, True):
        data = en.cpu_notes(_distinct_regs(vx), pid=1)
        assert len(data) == en.cpu_notes_size(vx)
        got = [(n.name, n.type, len(n.desc)) for n in en.iter_notes(data)]
        want = [
            ("CORE", en.NT_PRSTATUS, 336),
            ("CORE", en.NT_PRFPREG, 136),
            ("LINUX", en.NT_S390_TIMER, 8),
            ("LINUX", en.NT_S390_TODCMP, 8),
            ("LINUX", en.NT_S390_TODPREG, 4),
            ("LINUX", en.NT_S390_CTRS, 128),
            ("LINUX", en.NT_S390_PREFIX, 4),
        ]
        if vx:
            want += [("LINUX", en.NT_S390_VXRS_HIGH, 256), ("LINUX", en.NT_S390_VXRS_LOW, 128)]
        assert got == want
    assert en.cpu_notes_size(False) == 764
    assert en.cpu_notes_size(True) == 1188
    assert en.cpu_notes_size(False, todpreg_size=8) == 768
    assert en.cpu_notes_size(True, todpreg_size=8) == 1192
    assert len(en.cpu_notes(_distinct_regs(True), 1, todpreg_size=8)) == 1192


def test_clock_comparator_and_ctrs_as_is():
    r = _distinct_regs()
    notes = {n.type: n for n in en.iter_notes(en.cpu_notes(r, 1))}
    assert notes[en.NT_S390_TODCMP].desc == r.clock_comparator.to_bytes(8, "big")
    assert notes[en.NT_S390_TIMER].desc == r.cpu_timer.to_bytes(8, "big")
    assert notes[en.NT_S390_TODPREG].desc == r.todpreg.to_bytes(4, "big")
    assert notes[en.NT_S390_CTRS].desc == b"".join(v.to_bytes(8, "big") for v in r.crs)
    assert notes[en.NT_S390_PREFIX].desc == r.prefix.to_bytes(4, "big")


def test_eight_byte_todpreg_reads_first_four():
    r = _distinct_regs()
    data = en.cpu_notes(r, 1, todpreg_size=8)
    notes = list(en.iter_notes(data))
    tp = [n for n in notes if n.type == en.NT_S390_TODPREG][0]
    assert tp.desc == r.todpreg.to_bytes(4, "big") + (r.cpu_timer >> 32).to_bytes(4, "big")
    (back,) = en.cpus_from_notes(notes)
    assert back.todpreg == r.todpreg


def test_old_kernel_core_name_for_s390_notes():
    r = _distinct_regs(True)
    data = en.cpu_notes(r, 1, s390_name="CORE")
    assert {n.name for n in en.iter_notes(data)} == {"CORE"}
    assert en.cpus_from_notes(en.iter_notes(data)) == [r]


def test_cpu_notes_rejects_bad_input():
    with pytest.raises(BadInputError):
        en.cpu_notes(_distinct_regs(), 1, todpreg_size=6)
    r = _distinct_regs()
    r.gprs[3] = 1 << 64
    with pytest.raises(BadInputError):
        en.cpu_notes(r, 1)
    r = _distinct_regs()
    r.vxrs = bytes(100)
    with pytest.raises(BadInputError):
        en.cpu_notes(r, 1)


# -- note encoding -----------------------------------------------------------------------
def test_build_note_encoding():
    n = en.build_note("CORE", 1, b"abcde")
    assert n[:12] == struct.pack(">III", 5, 5, 1)
    assert n[12:20] == b"CORE\0\0\0\0"
    assert n[20:] == b"abcde\0\0\0"
    assert len(n) == en.note_size("CORE", 5) == 28
    n = en.build_note(b"LINUX", 0x305, b"\0\0 \0")
    assert n[:12] == struct.pack(">III", 6, 4, 0x305) and n[12:20] == b"LINUX\0\0\0"
    n = en.build_note("VMCOREINFO", 0, b"X=1\n")
    assert n[:12] == struct.pack(">III", 11, 4, 0) and n[12:24] == b"VMCOREINFO\0\0"
    assert en.vmcoreinfo_note(b"X=1\n") == n
    n = en.build_note("", 7, b"")
    assert n == struct.pack(">III", 0, 0, 7)


@pytest.mark.parametrize("name", ["", "A", "AB", "ABC", "CORE", "LINUX", "QEMU-x", "VMCOREINFO", "A" * 17])
@pytest.mark.parametrize("descsz", [0, 1, 3, 4, 5, 8])
def test_iter_notes_name_sizes(name, descsz):
    desc = bytes(range(1, descsz + 1))
    data = en.build_note(name, 0x42, desc) + en.build_note("Z", 9, b"zz")
    notes = list(en.iter_notes(data))
    assert [(x.name, x.type, x.desc) for x in notes] == [(name, 0x42, desc), ("Z", 9, b"zz")]
    assert notes[0].offset == 0 and notes[1].offset == en.note_size(name, descsz)


def test_qemu_name_padded_to_eight():
    # a producer that counts the name field's padding in n_namesz
    data = en.build_note(b"CORE\0\0\0\0", 1, bytes(336)) + en.build_note(b"LINUX\0\0\0", 0x305, bytes(4))
    assert struct.unpack(">I", data[:4])[0] == 8
    assert [(n.name, n.type) for n in en.iter_notes(data)] == [("CORE", 1), ("LINUX", 0x305)]


def test_terminator_and_trailing_zeros():
    data = en.build_note("CORE", 1, b"x") + en.NOTE_TERMINATOR + en.build_note("CORE", 2, b"y")
    assert [n.type for n in en.iter_notes(data)] == [1]
    assert [n.type for n in en.iter_notes(en.build_note("A", 5, b"") + bytes(8))] == [5]
    # a zero-size header that is not all zero is a note
    data = struct.pack(">III", 0, 0, 9) + en.build_note("B", 1, b"")
    assert [(n.name, n.type) for n in en.iter_notes(data)] == [("", 9), ("B", 1)]
    # last descriptor's padding may be missing
    assert [n.desc for n in en.iter_notes(en.build_note("A", 5, b"abcde")[:-3])] == [b"abcde"]
    # accepts bytearray / memoryview
    data = en.build_note("A", 5, b"abc")
    assert list(en.iter_notes(bytearray(data))) == list(en.iter_notes(memoryview(data)))


def test_iter_notes_bounds():
    good = en.build_note("CORE", 1, bytes(336))
    with pytest.raises(BadInputError, match="offset 0x0"):
        list(en.iter_notes(good[:100]))
    with pytest.raises(BadInputError, match="offset 0x0"):
        list(en.iter_notes(struct.pack(">III", 0xFFFFFFFF, 0, 1)))
    with pytest.raises(BadInputError, match=r"offset 0x164"):
        list(en.iter_notes(good + struct.pack(">III", 5, 0xFFFFFFF0, 1) + b"CORE\0\0\0\0"))
    with pytest.raises(BadInputError, match="offset 0x164"):
        list(en.iter_notes(good + b"\1\2\3"))


def test_desc_too_short_raises():
    notes = [en.Note("CORE", en.NT_PRSTATUS, bytes(335), 0)]
    with pytest.raises(BadInputError, match="NT_PRSTATUS"):
        en.cpus_from_notes(notes)
    for t, n in [(en.NT_PRFPREG, 135), (en.NT_S390_TIMER, 7), (en.NT_S390_TODPREG, 3), (en.NT_S390_CTRS, 127),
                 (en.NT_S390_PREFIX, 2), (en.NT_S390_VXRS_LOW, 127), (en.NT_S390_VXRS_HIGH, 255)]:
        name = "CORE" if t == en.NT_PRFPREG else "LINUX"
        with pytest.raises(BadInputError):
            en.cpus_from_notes([en.Note("CORE", 1, bytes(336), 0), en.Note(name, t, bytes(n), 400)])


# -- reading CPU state back ---------------------------------------------------------------
@st.composite
def cpu_regs(draw, vx=None):
    has_vx = draw(st.booleans()) if vx is None else vx
    vxrs = draw(st.binary(min_size=512, max_size=512)) if has_vx else None
    fprs = (
        [int.from_bytes(vxrs[i * 16 : i * 16 + 8], "big") for i in range(16)]
        if vxrs is not None
        else draw(st.lists(U64, min_size=16, max_size=16))
    )
    return CpuRegs(
        address=0,
        prefix=draw(U32),
        psw_mask=draw(U64),
        psw_addr=draw(U64),
        gprs=draw(st.lists(U64, min_size=16, max_size=16)),
        acrs=draw(st.lists(U32, min_size=16, max_size=16)),
        crs=draw(st.lists(U64, min_size=16, max_size=16)),
        fprs=fprs,
        fpc=draw(U32),
        cpu_timer=draw(U64),
        clock_comparator=draw(U64),
        todpreg=draw(U32),
        last_break=0,
        vxrs=vxrs,
    )


@settings(max_examples=60)
@given(st.lists(cpu_regs(), min_size=1, max_size=4), st.sampled_from([4, 8]))
def test_round_trip(regs_list, todpreg_size):
    data = en.prpsinfo_note() + b"".join(
        en.cpu_notes(r, pid=i + 1, todpreg_size=todpreg_size) for i, r in enumerate(regs_list)
    ) + en.vmcoreinfo_note(b"OSRELEASE=6.1\n") + en.NOTE_TERMINATOR
    assert len(data) == 12 + 8 + 136 + sum(en.cpu_notes_size(r.vxrs is not None, todpreg_size) for r in regs_list) \
        + en.note_size("VMCOREINFO", 14) + 12
    back = en.cpus_from_notes(en.iter_notes(data))
    assert back == regs_list


def test_qemu_order_and_unknown_notes():
    r = _distinct_regs(True)
    by_type = {n.type: n for n in en.iter_notes(en.cpu_notes(r, 1))}
    # QEMU order: PRSTATUS, FPREGSET, PREFIX, CTRS, TIMER, TODCMP, TODPREG, VXRS_LOW, VXRS_HIGH, GS_CB
    order = [en.NT_PRSTATUS, en.NT_PRFPREG, en.NT_S390_PREFIX, en.NT_S390_CTRS, en.NT_S390_TIMER,
             en.NT_S390_TODCMP, en.NT_S390_TODPREG, en.NT_S390_VXRS_LOW, en.NT_S390_VXRS_HIGH]
    chunks = []
    for cpu in range(2):
        for t in order:
            n = by_type[t]
            desc = n.desc
            if t == en.NT_PRSTATUS:  # QEMU 7.2: little-endian pr_pid
                desc = desc[:32] + (cpu + 1).to_bytes(4, "little") + desc[36:]
            chunks.append(en.build_note(n.name.encode() + b"\0\0\0\0"[: 8 - len(n.name)], t, desc))
        chunks.append(en.build_note("LINUX", en.NT_S390_GS_CB, bytes(32)))
        chunks.append(en.build_note("LINUX", 0x399, b"unknown"))
        chunks.append(en.build_note("QEMU", 1, bytes(10)))   # foreign name, same type number
    back = en.cpus_from_notes(en.iter_notes(b"".join(chunks)))
    assert back == [r, r]


def test_missing_notes_leave_zero_and_vx_needs_both_halves():
    r = _distinct_regs(True)
    notes = [n for n in en.iter_notes(en.cpu_notes(r, 1)) if n.type in (en.NT_PRSTATUS, en.NT_S390_VXRS_LOW)]
    (back,) = en.cpus_from_notes(notes)
    assert back.psw_addr == r.psw_addr and back.gprs == r.gprs
    assert back.fprs == [0] * 16 and back.crs == [0] * 16 and back.prefix == 0 and back.vxrs is None
    # notes before the first PRSTATUS are ignored
    assert en.cpus_from_notes([en.Note("LINUX", en.NT_S390_PREFIX, b"\0\0\0\1", 0)]) == []


# -- pyelftools cross-check ------------------------------------------------------------------
def _elf_core(notes: bytes) -> bytes:
    ehdr = struct.pack(
        ">4sBBBBB7sHHIQQQIHHHHHH",
        b"\x7fELF", 2, 2, 1, 0, 0, bytes(7),     # ELFCLASS64, ELFDATA2MSB, EV_CURRENT
        4, en.EM_S390, 1,                         # ET_CORE
        0, 64, 0, 0, 64, 56, 1, 64, 0, 0,
    )
    phdr = struct.pack(">IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(notes), len(notes), 4)  # PT_NOTE
    assert len(ehdr) == 64 and len(phdr) == 56
    return ehdr + phdr + notes


_ELFTOOLS_TYPES = {"NT_PRSTATUS": 1, "NT_FPREGSET": 2, "NT_PRPSINFO": 3}


def test_pyelftools_reads_our_notes():
    notes = en.prpsinfo_note() + en.cpu_notes(_distinct_regs(True), 1) + en.cpu_notes(_distinct_regs(), 2) \
        + en.vmcoreinfo_note(b"OSRELEASE=6.8.0\nPAGESIZE=4096\n")
    elf = ELFFile(io.BytesIO(_elf_core(notes)))
    assert elf["e_machine"] == "EM_S390" and elf.little_endian is False
    seg = elf.get_segment(0)
    theirs = []
    for n in seg.iter_notes():
        t = n["n_type"]
        theirs.append((n["n_name"], _ELFTOOLS_TYPES.get(t, t), n["n_descsz"]))
    ours = [(n.name, n.type, len(n.desc)) for n in en.iter_notes(notes)]
    assert theirs == ours
    assert theirs[-1] == ("VMCOREINFO", 0, 30)


# -- fuzz ---------------------------------------------------------------------------------------
_SAMPLE = (
    en.prpsinfo_note()
    + en.cpu_notes(_distinct_regs(True), 1)
    + en.cpu_notes(_distinct_regs(), 2, todpreg_size=8)
    + en.vmcoreinfo_note(b"A=1\n")
    + en.NOTE_TERMINATOR
)


def _only_bad_input(data: bytes) -> None:
    try:
        notes = list(en.iter_notes(data))
        en.cpus_from_notes(notes)
    except BadInputError:
        pass


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_SAMPLE) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(_SAMPLE)))
def test_fuzz_mutated_notes(mutations, cut):
    data = bytearray(_SAMPLE)
    for pos, val in mutations:
        data[pos] = val
    _only_bad_input(bytes(data[:cut]))
    _only_bad_input(bytes(data))


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_fuzz_garbage(data):
    _only_bad_input(data)


@settings(max_examples=200)
@given(st.integers(0, len(_SAMPLE) // 4 - 1), st.sampled_from([0, 1, 3, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFFC]))
def test_fuzz_size_words(word, val):
    data = bytearray(_SAMPLE)
    data[word * 4 : word * 4 + 4] = val.to_bytes(4, "big")
    _only_bad_input(bytes(data))
