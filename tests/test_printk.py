"""printk log layouts: ABI declarations, the machine-side builders and the vmcore dmesg reader."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meminfo_abi import printk as P
from dumpkit.errors import BadInputError
from s390_machine.printk import PrintkRecord, build_legacy_logbuf, build_ringbuffer
from vmcore.dmesg import LogRecord, detect_layout, format_dmesg, read_dmesg

MEM_SIZE = 1 << 20
BASE = 0x10000
REGION = 0xC0000


class Memory:
    """A bytearray as physical memory, with the write/read closures the API takes."""

    def __init__(self, size: int = MEM_SIZE):
        self.buf = bytearray(size)

    def write(self, addr: int, data: bytes) -> None:
        assert BASE <= addr and addr + len(data) <= BASE + REGION, "builder wrote outside its region"
        self.buf[addr:addr + len(data)] = data

    def read(self, addr: int, length: int) -> bytes:
        if addr < 0 or length < 0 or addr + length > len(self.buf):
            raise BadInputError(f"no memory at {addr:#x}+{length}")
        return bytes(self.buf[addr:addr + length])


def recs(texts, **kw):
    return [PrintkRecord(text=t, ts_nsec=1_000_000 * (i + 1), level=i % 8, facility=i % 4,
                         caller_id=(0x80000000 | (i % 4)) if i % 2 else 100 + i, **kw)
            for i, t in enumerate(texts)]


def ring(texts, **kw):
    m = Memory()
    keys = build_ringbuffer(m.write, BASE, REGION, recs(texts), **kw)
    return m, keys


def legacy(texts, **kw):
    m = Memory()
    keys = build_legacy_logbuf(m.write, BASE, REGION, recs(texts), **kw)
    return m, keys


def expected_ring_survivors(text_lens, count_bits, size_bits):
    """Independent model of which records a kernel ring keeps: the newest 2**count_bits
    descriptors, minus those whose data block begins more than one data ring size before
    the data head (blocks are laid end to end; one that would cross the end of the array
    moves to its start, so its span includes the skipped tail)."""
    size = 1 << size_bits
    pos, spans = 0, []
    for n in text_lens:
        if n == 0:
            spans.append(None)
            continue
        blk = (n + 8 + 7) // 8 * 8
        end = pos + blk
        if pos // size != end // size:
            end = end // size * size + blk
        spans.append((pos, end))
        pos = end
    newest = range(max(0, len(text_lens) - (1 << count_bits)), len(text_lens))
    return [i for i in newest if spans[i] is None or spans[i][0] >= pos - size]


# ---------------------------------------------------------------------------------------------
# ABI declarations
# ---------------------------------------------------------------------------------------------

def test_struct_sizes_match_declarations_and_keys():
    keys = P.ringbuffer_vmcoreinfo_layout()
    for name, st_ in [("printk_ringbuffer", P.printk_ringbuffer), ("prb_desc_ring", P.prb_desc_ring),
                      ("prb_desc", P.prb_desc), ("prb_data_blk_lpos", P.prb_data_blk_lpos),
                      ("printk_info", P.printk_info), ("dev_printk_info", P.dev_printk_info),
                      ("prb_data_ring", P.prb_data_ring), ("latched_seq", P.latched_seq),
                      ("atomic_long_t", P.atomic_long_t)]:
        assert int(keys[f"SIZE({name})"]) == st_.sizeof(), name
    assert (P.printk_info.sizeof(), P.prb_desc.sizeof(), P.printk_ringbuffer.sizeof()) == (88, 24, 88)
    assert (P.prb_desc_ring.sizeof(), P.prb_data_ring.sizeof(), P.latched_seq.sizeof()) == (48, 32, 24)
    assert P.printk_log.sizeof() == 16 == int(P.legacy_vmcoreinfo_layout()["SIZE(printk_log)"])


def test_printk_info_offsets_and_big_endian_bitfield():
    raw = P.printk_info.build({
        "seq": 0x1111111111111111, "ts_nsec": 0x2222222222222222, "text_len": 0x3333,
        "facility": 0x44, "flags_level": {"flags": P.LOG_NEWLINE, "level": 3},
        "caller_id": 0x55555555, "dev_info": {"subsystem": b"s".ljust(16, b"\0"), "device": b"d".ljust(48, b"\0")},
    })
    k = P.ringbuffer_vmcoreinfo_layout()
    assert struct.unpack_from(">Q", raw, int(k["OFFSET(printk_info.seq)"]))[0] == 0x1111111111111111
    assert struct.unpack_from(">Q", raw, int(k["OFFSET(printk_info.ts_nsec)"]))[0] == 0x2222222222222222
    assert struct.unpack_from(">H", raw, int(k["OFFSET(printk_info.text_len)"]))[0] == 0x3333
    assert struct.unpack_from(">I", raw, int(k["OFFSET(printk_info.caller_id)"]))[0] == 0x55555555
    assert raw[int(k["OFFSET(printk_info.dev_info)"])] == ord("s")
    assert raw[18] == 0x44
    # flags (declared first) in the top 5 bits, level in the low 3 bits
    assert raw[19] == (P.LOG_NEWLINE << 3) | 3 == 0x13
    assert P.unpack_flags_level(0x13) == (P.LOG_NEWLINE, 3)
    log = P.printk_log.build({"ts_nsec": 1, "len": 0x0203, "text_len": 0x0405, "dict_len": 0x0607,
                              "facility": 8, "flags_level": {"flags": 1, "level": 7}})
    assert log == bytes.fromhex("0000000000000001 0203 0405 0607 08 0f")


def test_logical_position_arithmetic():
    assert P.desc0_id(4) & 15 == 15 and (P.desc0_id(4) + 1) & 15 == 0
    assert P.desc0_id(4) == (1 << 62) - 17
    assert P.blk0_lpos(10) == (1 << 64) - 1024 and P.data_index(10, P.blk0_lpos(10)) == 0
    sv = P.desc_sv(0x1234, P.desc_state.desc_finalized)
    assert sv >> 62 == 2 and P.desc_id(sv) == 0x1234 and P.desc_state_of(sv) == P.desc_state.desc_finalized
    assert P.to_blk_size(1) == 16 and P.to_blk_size(8) == 16 and P.to_blk_size(9) == 24
    # a block that would cross the end of the array is moved to the start of the next wrap
    assert P.get_next_lpos(8, 240, 24) == 256 + 24
    assert P.get_next_lpos(8, 200, 24) == 224
    assert P.data_block_range(8, 240, 256 + 24) == (0, 24)
    assert P.data_block_range(8, 200, 224) == (200, 24)
    assert P.data_block_range(8, 224, 256) == (224, 32)       # exact fit (newer kernels)
    assert P.data_block_range(8, 200, 200 + 512) is None        # two wraps apart
    assert P.data_block_range(8, 201, 224) is None              # misaligned
    assert P.msg_used_size(5, 0) == (24, 3)


# ---------------------------------------------------------------------------------------------
# ring buffer
# ---------------------------------------------------------------------------------------------

RING_KEYS = [
    "SYMBOL(prb)", "SYMBOL(printk_rb_static)", "SYMBOL(clear_seq)", "SIZE(printk_ringbuffer)",
    "OFFSET(printk_ringbuffer.desc_ring)", "OFFSET(printk_ringbuffer.text_data_ring)",
    "OFFSET(printk_ringbuffer.fail)", "SIZE(prb_desc_ring)", "OFFSET(prb_desc_ring.count_bits)",
    "OFFSET(prb_desc_ring.descs)", "OFFSET(prb_desc_ring.infos)", "OFFSET(prb_desc_ring.head_id)",
    "OFFSET(prb_desc_ring.tail_id)", "SIZE(prb_desc)", "OFFSET(prb_desc.state_var)",
    "OFFSET(prb_desc.text_blk_lpos)", "SIZE(prb_data_blk_lpos)", "OFFSET(prb_data_blk_lpos.begin)",
    "OFFSET(prb_data_blk_lpos.next)", "SIZE(printk_info)", "OFFSET(printk_info.seq)",
    "OFFSET(printk_info.ts_nsec)", "OFFSET(printk_info.text_len)", "OFFSET(printk_info.caller_id)",
    "OFFSET(printk_info.dev_info)", "SIZE(dev_printk_info)", "OFFSET(dev_printk_info.subsystem)",
    "LENGTH(printk_info_subsystem)", "OFFSET(dev_printk_info.device)", "LENGTH(printk_info_device)",
    "SIZE(prb_data_ring)", "OFFSET(prb_data_ring.size_bits)", "OFFSET(prb_data_ring.data)",
    "OFFSET(prb_data_ring.head_lpos)", "OFFSET(prb_data_ring.tail_lpos)", "SIZE(atomic_long_t)",
    "OFFSET(atomic_long_t.counter)", "SIZE(latched_seq)", "OFFSET(latched_seq.val)",
]


def test_ring_keys_published_in_kernel_format():
    m, keys = ring(["a"])
    assert set(keys) == set(RING_KEYS)
    for k, v in keys.items():
        if k.startswith("SYMBOL("):
            assert v == v.lower() and not v.startswith("0x") and int(v, 16) >= BASE
        else:
            assert v.isdigit(), k
    # prb is a pointer variable holding &printk_rb_static
    prb = int(keys["SYMBOL(prb)"], 16)
    assert struct.unpack(">Q", m.read(prb, 8))[0] == int(keys["SYMBOL(printk_rb_static)"], 16)
    assert detect_layout(keys) == "ringbuffer"


def test_ring_round_trip():
    texts = ["Linux version 6.1.0 (s390x)", "setup: Linux is running natively in 64-bit mode",
             "", "café ünïcode", "x" * 200]
    m, keys = ring(texts)
    got = read_dmesg(m.read, keys)
    src = recs(texts)
    assert [r.text for r in got] == texts
    assert [r.seq for r in got] == list(range(len(texts)))
    assert [(r.ts_nsec, r.level, r.facility, r.caller_id) for r in got] == \
           [(s.ts_nsec, s.level, s.facility, s.caller_id) for s in src]
    assert all(isinstance(r, LogRecord) for r in got)


def test_ring_accepts_dict_records_and_default_sizes():
    m = Memory()
    keys = build_ringbuffer(m.write, BASE, REGION, [{"text": "hello", "ts_nsec": 5, "level": 6,
                                                      "facility": 0, "caller_id": 1}])
    rb = P.printk_ringbuffer.parse(m.read(int(keys["SYMBOL(printk_rb_static)"], 16), 88))
    assert rb.text_data_ring.size_bits == 17 and rb.desc_ring.count_bits == 12    # kernel defaults
    (r,) = read_dmesg(m.read, keys)
    assert (r.text, r.ts_nsec, r.level, r.caller_id) == ("hello", 5, 6, 1)


def test_ring_empty():
    m, keys = ring([], count_bits=4, size_bits=10)
    assert read_dmesg(m.read, keys) == []
    assert format_dmesg([]) == ""


def test_ring_descriptor_limited_wrap_keeps_newest():
    texts = [f"message number {i}" for i in range(100)]
    m, keys = ring(texts, count_bits=4, size_bits=14)
    got = read_dmesg(m.read, keys)
    assert [r.text for r in got] == texts[-16:]
    assert [r.seq for r in got] == list(range(84, 100))


def test_ring_data_limited_wrap_and_crossing_block():
    texts = [f"msg {i} " + "y" * (i * 7 % 37) for i in range(300)]
    m, keys = ring(texts, count_bits=8, size_bits=9)
    got = read_dmesg(m.read, keys)
    want = expected_ring_survivors([len(t) for t in texts], 8, 9)
    assert 0 < len(want) < 256                           # the data ring, not the descs, limits
    assert [r.seq for r in got] == want
    assert [r.text for r in got] == [texts[i] for i in want]
    # at least one surviving block crossed the end of the array (begin/next in different wraps)
    rb = P.printk_ringbuffer.parse(m.read(int(keys["SYMBOL(printk_rb_static)"], 16), 88))
    descs = rb.desc_ring.descs
    data = rb.text_data_ring.data
    crossing = 0
    for r in got:
        d = P.prb_desc.parse(m.read(descs + (r.seq % 256) * 24, 24))
        b, n = d.text_blk_lpos.begin, d.text_blk_lpos.next
        if P.data_wraps(9, b) != P.data_wraps(9, n):
            crossing += 1
            # the id is stored both where the block begins and at index 0, where the text is
            idword = struct.pack(">Q", P.desc_id(d.state_var.counter))
            assert m.read(data + P.data_index(9, b), 8) == idword == m.read(data, 8)
    assert crossing >= 1


def test_ring_overwritten_descriptors_are_reusable():
    m, keys = ring([f"t{i}" for i in range(40)], count_bits=4, size_bits=8)
    rb = P.printk_ringbuffer.parse(m.read(int(keys["SYMBOL(printk_rb_static)"], 16), 88))
    states = [P.desc_state_of(P.prb_desc.parse(m.read(rb.desc_ring.descs + i * 24, 24)).state_var.counter)
              for i in range(16)]
    got = read_dmesg(m.read, keys)
    assert len(got) == states.count(P.desc_state.desc_finalized)
    assert set(states) <= {P.desc_state.desc_finalized, P.desc_state.desc_reusable}
    assert [r.text for r in got] == [f"t{i}" for i in range(40 - len(got), 40)]


@settings(max_examples=60, deadline=None)
@given(lens=st.lists(st.integers(0, 56), max_size=120), cb=st.integers(2, 5), sb=st.integers(7, 9))
def test_ring_wrap_property(lens, cb, sb):
    texts = [(f"{i}:" + "abcdefghij" * 7)[:n] for i, n in enumerate(lens)]
    m, keys = ring(texts, count_bits=cb, size_bits=sb)
    got = read_dmesg(m.read, keys)
    want = expected_ring_survivors([len(t) for t in texts], cb, sb)
    assert [r.seq for r in got] == want
    assert [r.text for r in got] == [texts[i] for i in want]


def test_ring_too_long_text_is_cut_and_region_checks():
    m, keys = ring(["z" * 1000], count_bits=3, size_bits=8)
    (r,) = read_dmesg(m.read, keys)
    assert r.text == "z" * (128 - 8)
    with pytest.raises(ValueError):
        build_ringbuffer(Memory().write, BASE, 512, [], count_bits=4, size_bits=10)
    with pytest.raises(ValueError):
        build_ringbuffer(Memory().write, BASE, 64, [])


def test_ring_virt_offset():
    off = 0x3FFF_0000_0000
    m = Memory()
    keys = build_ringbuffer(m.write, BASE, REGION, recs(["virtual", "addresses"]),
                            count_bits=4, size_bits=10, virt_offset=off)
    assert int(keys["SYMBOL(prb)"], 16) >= off + BASE
    got = read_dmesg(m.read, keys, virt_to_phys=lambda v: v - off)
    assert [r.text for r in got] == ["virtual", "addresses"]
    with pytest.raises(BadInputError):            # without the translation nothing is there
        read_dmesg(m.read, keys)


def test_ring_partial_from_clear_seq():
    m = Memory()
    keys = build_ringbuffer(m.write, BASE, REGION, recs([f"r{i}" for i in range(6)]),
                            count_bits=4, size_bits=10, clear_seq=3)
    assert [r.text for r in read_dmesg(m.read, keys, partial=True)] == ["r3", "r4", "r5"]
    assert len(read_dmesg(m.read, keys)) == 6


def test_ring_skips_bad_records_only():
    m, keys = ring(["one", "two", "three"], count_bits=4, size_bits=10)
    rb = P.printk_ringbuffer.parse(m.read(int(keys["SYMBOL(printk_rb_static)"], 16), 88))
    # corrupt the stored id of record 1's data block -> only that record disappears
    d1 = P.prb_desc.parse(m.read(rb.desc_ring.descs + 24, 24))
    a = rb.text_data_ring.data + P.data_index(10, d1.text_blk_lpos.begin)
    m.buf[a + 7] ^= 0xFF
    assert [r.text for r in read_dmesg(m.read, keys)] == ["one", "three"]
    # a text_len larger than the block -> skipped too
    info2 = rb.desc_ring.infos + 2 * 88
    m.buf[info2 + 16:info2 + 18] = struct.pack(">H", 999)
    assert [r.text for r in read_dmesg(m.read, keys)] == ["one"]


def test_ring_inconsistent_head_tail_names_field():
    m, keys = ring(["a", "b"], count_bits=3, size_bits=10)
    rb_addr = int(keys["SYMBOL(printk_rb_static)"], 16)
    m.buf[rb_addr + 32:rb_addr + 40] = struct.pack(">Q", 5)      # tail_id far from head_id
    with pytest.raises(BadInputError, match="tail_id"):
        read_dmesg(m.read, keys)
    m.buf[rb_addr:rb_addr + 4] = struct.pack(">I", 31)            # count_bits
    with pytest.raises(BadInputError, match="count_bits"):
        read_dmesg(m.read, keys)


# ---------------------------------------------------------------------------------------------
# legacy log_buf
# ---------------------------------------------------------------------------------------------

def test_legacy_round_trip_and_keys():
    texts = ["Linux version 4.19.0", "multi\nline", "", "last one"]
    m, keys = legacy(texts)
    assert set(keys) == {"SYMBOL(log_buf)", "SYMBOL(log_buf_len)", "SYMBOL(log_first_idx)",
                         "SYMBOL(clear_idx)", "SYMBOL(log_next_idx)", "SIZE(printk_log)",
                         "OFFSET(printk_log.ts_nsec)", "OFFSET(printk_log.len)",
                         "OFFSET(printk_log.text_len)", "OFFSET(printk_log.dict_len)"}
    assert detect_layout(keys) == "legacy"
    got = read_dmesg(m.read, keys)
    src = recs(texts)
    assert [r.text for r in got] == texts
    assert [(r.ts_nsec, r.level, r.facility) for r in got] == [(s.ts_nsec, s.level, s.facility) for s in src]
    assert [r.seq for r in got] == [0, 1, 2, 3]
    # records are 8-byte aligned and chained by len
    log_buf = struct.unpack(">Q", m.read(int(keys["SYMBOL(log_buf)"], 16), 8))[0]
    h = P.printk_log.parse(m.read(log_buf, 16))
    assert h.len == 16 + 24 and h.text_len == 20 and h.flags_level.flags == P.LOG_NEWLINE


def test_legacy_exact_wrap_scenario():
    # log_buf_len 128, every record 16 + 8 = 24 bytes: r0..r3 at 0,24,48,72; r4 needs
    # 24 + 16 (wrap header) bytes: r0, r1 dropped, zero header at 96, r4 at 0; r5 drops r2
    # and lands at 24.  Left: first=72 (r3) -> 96 (wrap) -> 0 (r4) -> 24 (r5) -> next=48.
    texts = [f"rec{i:04d}" for i in range(6)]
    m, keys = legacy(texts, log_buf_len=128)
    first, nxt = (struct.unpack(">I", m.read(int(keys[k], 16), 4))[0]
                  for k in ("SYMBOL(log_first_idx)", "SYMBOL(log_next_idx)"))
    assert (first, nxt) == (72, 48)
    log_buf = struct.unpack(">Q", m.read(int(keys["SYMBOL(log_buf)"], 16), 8))[0]
    assert m.read(log_buf + 96, 16) == bytes(16)                  # the wrap marker
    assert [r.text for r in read_dmesg(m.read, keys)] == ["rec0003", "rec0004", "rec0005"]
    assert [r.text for r in read_dmesg(m.read, keys, partial=True)] == ["rec0003", "rec0004", "rec0005"]


@settings(max_examples=60, deadline=None)
@given(lens=st.lists(st.integers(0, 90), min_size=1, max_size=150), lb=st.sampled_from([256, 512, 1024]))
def test_legacy_wrap_property(lens, lb):
    texts = [(f"{i}:" + "0123456789" * 9)[:n] for i, n in enumerate(lens)]
    m, keys = legacy(texts, log_buf_len=lb)
    got = read_dmesg(m.read, keys)
    n = len(got)
    assert n >= 1 and [r.text for r in got] == texts[len(texts) - n:]   # the newest, in order
    used = sum(P.msg_used_size(len(r.text.encode()), 0)[0] for r in got)
    assert used + 16 <= lb
    maxrec = P.msg_used_size(90 + 4, 0)[0]
    if n < len(texts):                   # something was dropped: the buffer is well filled
        assert used > lb - 3 * (maxrec + 16)


def test_legacy_truncates_oversized_message():
    m, keys = legacy(["q" * 500], log_buf_len=256)
    (r,) = read_dmesg(m.read, keys)
    assert r.text == "q" * 64 + "<truncated>"


def test_legacy_virt_offset_and_caller_header():
    off = 0x1000_0000
    m = Memory()
    keys = build_legacy_logbuf(m.write, BASE, REGION, recs(["abc"]), log_buf_len=1024, virt_offset=off)
    assert [r.text for r in read_dmesg(m.read, keys, virt_to_phys=lambda v: v - off)] == ["abc"]
    # a 24-byte printk_log (CONFIG_PRINTK_CALLER) is read with caller_id at +16
    m2 = Memory()
    log_buf = BASE + 0x100
    hdr = P.printk_log.build({"ts_nsec": 7, "len": 32, "text_len": 3, "dict_len": 0, "facility": 0,
                              "flags_level": {"flags": 2, "level": 5}}) + struct.pack(">II", 0x80000002, 0)
    m2.buf[log_buf:log_buf + 32] = hdr + b"hey".ljust(8, b"\0")
    m2.buf[BASE:BASE + 8] = struct.pack(">Q", log_buf)
    m2.buf[BASE + 8:BASE + 20] = struct.pack(">III", 256, 0, 32)
    k2 = {"SYMBOL(log_buf)": format(BASE, "x"), "SYMBOL(log_buf_len)": format(BASE + 8, "x"),
          "SYMBOL(log_first_idx)": format(BASE + 12, "x"), "SYMBOL(log_next_idx)": format(BASE + 16, "x"),
          "SIZE(printk_log)": "24", "OFFSET(printk_log.ts_nsec)": "0", "OFFSET(printk_log.len)": "8",
          "OFFSET(printk_log.text_len)": "10", "OFFSET(printk_log.dict_len)": "12"}
    (r,) = read_dmesg(m2.read, k2)
    assert (r.text, r.level, r.caller_id, r.ts_nsec) == ("hey", 5, 0x80000002, 7)


def test_legacy_broken_chain_is_reported():
    m, keys = legacy(["a", "b", "c"], log_buf_len=512)
    log_buf = struct.unpack(">Q", m.read(int(keys["SYMBOL(log_buf)"], 16), 8))[0]
    m.buf[log_buf + 8:log_buf + 10] = struct.pack(">H", 4)        # len below the header size
    with pytest.raises(BadInputError, match="printk_log.len"):
        read_dmesg(m.read, keys)
    m.buf[log_buf + 8:log_buf + 10] = struct.pack(">H", 0)        # wrap marker at 0 -> loop
    with pytest.raises(BadInputError, match="len=0"):
        read_dmesg(m.read, keys)


# ---------------------------------------------------------------------------------------------
# output format
# ---------------------------------------------------------------------------------------------

def test_format_dmesg_prefix_and_multiline():
    r = LogRecord(seq=0, ts_nsec=1_234_567_000, level=6, facility=0, caller_id=1, text="hello")
    assert format_dmesg([r]) == "[    1.234567] hello\n"
    big = LogRecord(seq=1, ts_nsec=123456_789_999_999, level=6, facility=0, caller_id=0x80000003,
                    text="first\nsecond")
    assert format_dmesg([big]) == "[123456.789999] first\n[123456.789999] second\n"
    assert format_dmesg([r, big], show_caller=True).splitlines() == [
        "[    1.234567][    T1] hello",
        "[123456.789999][    C3] first",
        "[123456.789999][    C3] second",
    ]


def test_multiline_text_round_trip_through_both_layouts():
    for build in (ring, legacy):
        m, keys = build(["boot", "a\nb\nc"])
        out = format_dmesg(read_dmesg(m.read, keys))
        assert out == "[    0.001000] boot\n[    0.002000] a\n[    0.002000] b\n[    0.002000] c\n"


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["ring", "legacy"])
def test_missing_keys_name_the_key(layout):
    m, keys = (ring if layout == "ring" else legacy)(["x", "y"], **({"count_bits": 4, "size_bits": 10}
                                                                   if layout == "ring" else {}))
    optional = {"SYMBOL(printk_rb_static)", "SYMBOL(clear_seq)", "SYMBOL(clear_idx)", "OFFSET(printk_ringbuffer.fail)",
                "OFFSET(atomic_long_t.counter)", "SIZE(atomic_long_t)", "SIZE(latched_seq)",
                "OFFSET(latched_seq.val)", "SIZE(prb_desc_ring)", "SIZE(prb_data_ring)",
                "SIZE(prb_data_blk_lpos)", "SIZE(dev_printk_info)", "OFFSET(dev_printk_info.subsystem)",
                "OFFSET(dev_printk_info.device)", "LENGTH(printk_info_subsystem)", "LENGTH(printk_info_device)",
                "OFFSET(printk_info.dev_info)", "OFFSET(prb_data_ring.head_lpos)",
                "OFFSET(prb_data_ring.tail_lpos)"}
    required = [k for k in keys if k not in optional]
    assert len(required) >= 8
    for k in required:
        partial = {kk: v for kk, v in keys.items() if kk != k}
        with pytest.raises(BadInputError, match=k.replace("(", r"\(").replace(")", r"\)")
                           if k not in ("SYMBOL(prb)", "SYMBOL(log_buf)") else "SYMBOL"):
            read_dmesg(m.read, partial)
        assert read_dmesg(m.read, keys)        # still fine with all keys


def test_bad_key_values():
    m, keys = ring(["x"], count_bits=4, size_bits=10)
    for k, v in [("SYMBOL(prb)", "zz"), ("SIZE(printk_info)", "-1"), ("SIZE(printk_info)", "8"),
                 ("OFFSET(prb_desc_ring.head_id)", "5000"), ("SIZE(printk_ringbuffer)", "abc")]:
        with pytest.raises(BadInputError, match=k.replace("(", r"\(").replace(")", r"\)")):
            read_dmesg(m.read, {**keys, k: v})
    with pytest.raises(BadInputError):
        read_dmesg(m.read, {})


def test_foreign_read_errors_become_bad_input():
    m, keys = ring(["x"], count_bits=4, size_bits=10)

    def bad_read(addr, length):
        raise IndexError("boom")

    with pytest.raises(BadInputError):
        read_dmesg(bad_read, keys)
    with pytest.raises(BadInputError):
        read_dmesg(lambda a, n: b"\0", keys)          # short reads


def _flip(m: Memory, flips):
    for pos, val in flips:
        m.buf[BASE + pos] ^= val


_FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 0x1800), st.integers(1, 255)), min_size=1, max_size=40))
def test_corrupted_ring_only_raises_bad_input(flips):
    m, keys = ring([f"record {i} " + "k" * (i % 23) for i in range(70)], count_bits=5, size_bits=10)
    _flip(m, flips)
    try:
        got = read_dmesg(m.read, keys, partial=bool(flips[0][1] & 1))
    except BadInputError:
        return
    assert len(got) <= 32 and all(isinstance(r, LogRecord) for r in got)
    format_dmesg(got, show_caller=True)


@_FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 24 + 1024), st.integers(1, 255)), min_size=1, max_size=40))
def test_corrupted_legacy_only_raises_bad_input(flips):
    m, keys = legacy([f"record {i} " + "k" * (i % 23) for i in range(70)], log_buf_len=1024)
    _flip(m, flips)
    try:
        got = read_dmesg(m.read, keys, partial=bool(flips[0][1] & 1))
    except BadInputError:
        return
    assert len(got) <= 1024 // 16
    format_dmesg(got)


@_FUZZ
@given(data=st.data())
def test_corrupted_vmcoreinfo_only_raises_bad_input(data):
    m, keys = ring(["a", "b", "c"], count_bits=4, size_bits=10) if data.draw(st.booleans()) \
        else legacy(["a", "b", "c"], log_buf_len=512)
    k = data.draw(st.sampled_from(sorted(keys)))
    v = data.draw(st.one_of(st.integers(-5, 1 << 70).map(str), st.integers(0, 1 << 66).map(lambda i: format(i, "x")),
                            st.text(max_size=5)))
    try:
        got = read_dmesg(m.read, {**keys, k: v})
    except BadInputError:
        return
    assert all(isinstance(r, LogRecord) for r in got)
