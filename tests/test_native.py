"""Tests for native._native (C) against native.reference (pure Python)."""
from __future__ import annotations

import array
import mmap
import os
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import native
from native import csum_partial, reference

from native import _fallback as fallback

IMPLS = [pytest.param(native, id="C"), pytest.param(reference, id="reference"),
         pytest.param(fallback, id="fallback")]
U32 = 0xFFFFFFFF

# Edge values for the start sum, mixed into random ones.
initials = st.one_of(
    st.sampled_from([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, U32]),
    st.integers(min_value=0, max_value=U32),
)
granules = st.one_of(st.integers(min_value=1, max_value=64), st.just(4096))

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def naive_cksm(data: bytes, initial: int = 0) -> int:
    """Independent oracle: whole-buffer sum, then reduce modulo 2**32 - 1.

    Different from reference.csum_partial on purpose (no per-word loop), and
    fast enough for multi-MiB inputs.  Result 0 only for a zero total.
    """
    data = bytes(data) + b"\0" * (-len(data) % 4)
    words = array.array("I", data)
    if array.array("I", [1]).tobytes() != b"\0\0\0\1":
        words.byteswap()  # to host order from big-endian
    total = initial + sum(words)
    return 0 if total == 0 else (total - 1) % U32 + 1


# --------------------------------------------------------------------------
# csum_partial: worked examples from the CHECKSUM instruction, z/Architecture Principles of Operation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (bytes.fromhex("FFFFFFFF00000001"), 0x00000001),
        (bytes.fromhex("123456789ABCDEF0FF"), 0xABF13569),
        (bytes.fromhex("80000000") * 3, 0x80000001),
        (b"", 0),
        (b"\0" * 13, 0),
        # Non-zero data whose one's-complement sum is "negative zero".
        (bytes.fromhex("FFFFFFFE00000001"), 0xFFFFFFFF),
        (bytes.fromhex("800000007FFFFFFF"), 0xFFFFFFFF),
        (bytes.fromhex("FFFFFFFFFFFFFFFF"), 0xFFFFFFFF),
        # Padding goes on the right: 01 -> 0x01000000, 00 01 -> 0x00010000.
        (b"\x01", 0x01000000),
        (b"\x00\x01", 0x00010000),
        (b"\x00\x00\x00\x00\x00\x00\x01", 0x00000100),
    ],
)
def test_worked_examples(impl, data, expected):
    assert impl.csum_partial(data) == expected


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("data", "initial", "expected"),
    [
        (b"", U32, U32),
        (b"", 0x1234, 0x1234),
        (bytes.fromhex("00000001"), U32, 0x00000001),
        (bytes.fromhex("FFFFFFFF"), U32, U32),
        (bytes.fromhex("00000000"), 0, 0),
        (bytes.fromhex("80000000"), 0x80000000, 0x00000001),
    ],
)
def test_initial_value(impl, data, initial, expected):
    assert impl.csum_partial(data, initial) == expected
    assert impl.csum_partial(data, initial=initial) == expected


def os_info_page() -> bytearray:
    """os_info v1.1, crashkernel 0x10000000 @ 0x10000000, no entries."""
    page = bytearray(4096)
    page[0:8] = b"OSINFOSZ"
    struct.pack_into(">HHQQ", page, 0x0C, 1, 1, 0x10000000, 0x10000000)
    return page


@pytest.mark.parametrize("impl", IMPLS)
def test_os_info_header_checksum(impl):
    page = os_info_page()
    assert impl.csum_partial(page[0x0C:]) == 0x20010001
    # Same result without copying the slice first.
    assert impl.csum_partial(memoryview(page)[0x0C:]) == 0x20010001


@pytest.mark.parametrize("impl", IMPLS)
def test_os_info_with_entry_and_flags(impl):
    page = os_info_page()
    # entry[0] = {addr 0x01234000, size 0x1000, csum 0xDEADBEEF} at 0x20
    struct.pack_into(">QQI", page, 0x20, 0x01234000, 0x1000, 0xDEADBEEF)
    assert impl.csum_partial(memoryview(page)[0x0C:]) == 0xFFD20EF0
    # A flags entry: u64 flags = 1 -> entry csum 1 over its 8 bytes.
    assert impl.csum_partial(struct.pack(">Q", 1)) == 0x00000001


# --------------------------------------------------------------------------
# csum_partial: C == reference
# --------------------------------------------------------------------------


@SETTINGS
@given(data=st.binary(max_size=300), initial=initials)
def test_csum_matches_reference(data, initial):
    expected = reference.csum_partial(data, initial)
    assert native.csum_partial(data, initial) == expected
    assert fallback.csum_partial(data, initial) == expected
    assert naive_cksm(data, initial) == expected


@SETTINGS
@given(
    backing=st.binary(min_size=0, max_size=400),
    bounds=st.tuples(st.integers(0, 400), st.integers(0, 400)),
    initial=initials,
)
def test_csum_slices_match_reference(backing, bounds, initial):
    """Offsets into a larger buffer: any start alignment, any length."""
    start, end = sorted(min(b, len(backing)) for b in bounds)
    view = memoryview(bytearray(backing))[start:end]
    expected = reference.csum_partial(backing[start:end], initial)
    assert native.csum_partial(view, initial) == expected


@SETTINGS
@given(data=st.binary(max_size=300), cut=st.integers(0, 75), initial=initials)
def test_csum_chains_over_word_aligned_split(data, cut, initial):
    """Checksumming in two pieces (split on a word boundary) equals one pass."""
    cut = min(4 * cut, len(data))
    first = native.csum_partial(data[:cut], initial)
    assert native.csum_partial(data[cut:], first) == native.csum_partial(data, initial)


@pytest.mark.parametrize("fill", [b"\xff", b"\x80", b"\x01"])
@pytest.mark.parametrize("length", [7, 8, 9, 2047, 2048, 2049, 2055, 2056, 4096, 6151, 65536 + 5])
def test_csum_block_boundaries(fill, length):
    """Lengths around the C code's internal 2 KiB lane blocks, with data that
    drives every byte lane to its maximum (0xFF) or to a lone high bit."""
    data = fill * length
    assert native.csum_partial(data) == reference.csum_partial(data)
    assert native.csum_partial(data, U32) == reference.csum_partial(data, U32)


@pytest.mark.parametrize("offset", [0, 1, 2, 3, 5])
def test_csum_large_random_buffer(offset):
    """Megabytes (many internal blocks), at unaligned offsets."""
    backing = bytearray(os.urandom((3 << 20) + 11))
    view = memoryview(backing)[offset:]
    assert native.csum_partial(view) == naive_cksm(view)
    assert native.csum_partial(view, 0xFFFFFFF0) == naive_cksm(view, 0xFFFFFFF0)


def test_csum_large_matches_sequential_reference():
    data = os.urandom((1 << 20) + 3)
    assert native.csum_partial(data) == reference.csum_partial(data)


def test_csum_large_all_ones():
    data = b"\xff" * ((4 << 20) + 3)
    # FFFFFFFF + ... stays FFFFFFFF; the last word FFFFFF00 takes it to FFFFFF00.
    assert native.csum_partial(data) == 0xFFFFFF00 == naive_cksm(data)


# --------------------------------------------------------------------------
# zero_ranges / nonzero_ranges / is_zero: C == reference
# --------------------------------------------------------------------------


@st.composite
def buffers_with_zero_runs(draw, max_size=3000):
    """Random bytes (mostly non-zero) with zero runs of random size injected."""
    size = draw(st.integers(0, max_size))
    data = bytearray(draw(st.binary(min_size=size, max_size=size)))
    for i, b in enumerate(data):
        if b == 0:
            data[i] = 1
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        start = draw(st.integers(0, len(data) - 1))
        length = draw(st.integers(1, 600))
        data[start:start + length] = bytes(len(data[start:start + length]))
    return bytes(data)


def check_partition(zero, nonzero, length, granule):
    """Both lists are sorted, disjoint, granule-aligned, alternate, cover all."""
    merged = sorted([(s, e, True) for s, e in zero] + [(s, e, False) for s, e in nonzero])
    pos = 0
    last_kind = None
    for start, end, kind in merged:
        assert start == pos and start < end
        assert start % granule == 0
        assert end % granule == 0 or end == length
        assert kind != last_kind  # maximal runs alternate
        pos, last_kind = end, kind
    assert pos == length


@SETTINGS
@given(data=buffers_with_zero_runs(), granule=granules)
def test_ranges_match_reference(data, granule):
    zero = native.zero_ranges(data, granule)
    nonzero = native.nonzero_ranges(data, granule)
    assert zero == reference.zero_ranges(data, granule)
    assert nonzero == reference.nonzero_ranges(data, granule)
    assert fallback.zero_ranges(data, granule) == zero and fallback.nonzero_ranges(data, granule) == nonzero
    check_partition(zero, nonzero, len(data), granule)
    for start, end in zero:
        assert not any(data[start:end])
    assert all(isinstance(x, int) for r in zero + nonzero for x in r)


@SETTINGS
@given(data=buffers_with_zero_runs(max_size=1200), offset=st.integers(0, 40), granule=granules)
def test_ranges_on_slices(data, offset, granule):
    view = memoryview(data)[offset:]
    assert native.zero_ranges(view, granule) == reference.zero_ranges(data[offset:], granule)
    assert native.nonzero_ranges(view, granule) == reference.nonzero_ranges(data[offset:], granule)


@SETTINGS
@given(size=st.integers(0, 2000), where=st.integers(0, 1999), value=st.integers(1, 255),
       offset=st.integers(0, 7))
def test_is_zero_matches_reference(size, where, value, offset):
    data = bytearray(size + offset)
    view = memoryview(data)[offset:]
    assert native.is_zero(view) is True
    if size:
        data[offset + where % size] = value
        assert native.is_zero(view) is False
    assert native.is_zero(view) == reference.is_zero(view) == (not any(view))


def test_ranges_default_granule_and_partial_last():
    data = b"\x01" * 4096 + bytes(4096) + bytes(10)
    assert native.zero_ranges(data) == [(4096, 8202)]
    assert native.nonzero_ranges(data) == [(0, 4096)]
    data = bytes(4096) + b"\0" * 9 + b"\x07"
    assert native.zero_ranges(data) == [(0, 4096)]
    assert native.nonzero_ranges(data) == [(4096, 4106)]


def test_ranges_granule_larger_than_buffer():
    assert native.zero_ranges(bytes(10), 1 << 20) == [(0, 10)]
    assert native.zero_ranges(bytes(10), 2**70) == [(0, 10)]
    assert native.nonzero_ranges(b"\0\0\1", 2**70) == [(0, 3)]


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_buffer(impl):
    assert impl.zero_ranges(b"") == []
    assert impl.nonzero_ranges(b"", 1) == []
    assert impl.is_zero(b"") is True
    assert impl.csum_partial(b"") == 0


@pytest.mark.parametrize("count", [4095, 4096, 4097, 9000])
def test_many_ranges(count):
    """More runs than the C side gathers per batch (4096)."""
    data = b"\0\1" * count
    zero = native.zero_ranges(data, 1)
    assert zero == [(2 * i, 2 * i + 1) for i in range(count)]
    assert native.nonzero_ranges(data, 1) == [(2 * i + 1, 2 * i + 2) for i in range(count)]


# --------------------------------------------------------------------------
# Buffer kinds
# --------------------------------------------------------------------------

SAMPLE = bytes(8192) + os.urandom(5000) + bytes(4096 + 7)


def buffer_kinds(tmp_path):
    backing = bytearray(b"\xaa" * 3 + SAMPLE)
    path = tmp_path / "sample.bin"
    path.write_bytes(SAMPLE)
    f = open(path, "rb")
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return {
        "bytes": SAMPLE,
        "bytearray": bytearray(SAMPLE),
        "memoryview": memoryview(SAMPLE),
        "memoryview slice": memoryview(backing)[3:],
        "mmap": mm,
    }, (f, mm)


def test_buffer_kinds(tmp_path):
    kinds, (f, mm) = buffer_kinds(tmp_path)
    try:
        expected = (
            reference.csum_partial(SAMPLE, 5),
            reference.zero_ranges(SAMPLE),
            reference.nonzero_ranges(SAMPLE, 512),
            False,
        )
        assert expected[1] == [(0, 8192), (16384, 17295)]
        for name, buf in kinds.items():
            got = (
                native.csum_partial(buf, 5),
                native.zero_ranges(buf),
                native.nonzero_ranges(buf, 512),
                native.is_zero(buf),
            )
            assert got == expected, name
    finally:
        kinds.clear()
        mm.close()  # raises BufferError if a buffer export had leaked
        f.close()


def test_typed_arrays_are_read_as_raw_bytes():
    words = array.array("I", [0x11223344, 0, 0xFFFFFFFF])
    raw = words.tobytes()
    assert native.csum_partial(words) == reference.csum_partial(raw)
    cast = memoryview(bytearray(raw)).cast("I")
    assert native.csum_partial(cast) == reference.csum_partial(raw)
    assert native.zero_ranges(cast, 4) == [(4, 8)]


def test_buffers_are_released():
    """A bytearray cannot be resized while exported: every path must release."""
    buf = bytearray(b"\0" * 100 + b"\1")
    native.csum_partial(buf)
    native.zero_ranges(buf, 8)
    native.nonzero_ranges(buf, 8)
    native.is_zero(buf)
    with pytest.raises(ValueError):
        native.csum_partial(buf, -1)
    with pytest.raises(ValueError):
        native.zero_ranges(buf, 0)
    buf.extend(b"\2")  # would raise BufferError if a view were still held
    assert len(buf) == 102


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, 123, "text", [1, 2, 3], object()])
def test_non_buffer_is_type_error(bad):
    for fn in (native.csum_partial, native.zero_ranges, native.nonzero_ranges, native.is_zero):
        with pytest.raises(TypeError):
            fn(bad)


def test_non_contiguous_buffer_rejected():
    strided = memoryview(bytearray(range(16)))[::2]
    for fn in (native.csum_partial, native.zero_ranges, native.nonzero_ranges, native.is_zero):
        with pytest.raises(BufferError, match="contiguous"):
            fn(strided)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("initial", [-1, 2**32, 2**64, -(2**70)])
def test_initial_out_of_range(impl, initial):
    with pytest.raises(ValueError):
        impl.csum_partial(b"\0\0\0\1", initial)


@pytest.mark.parametrize("initial", [1.5, "1", None])
def test_initial_wrong_type(initial):
    with pytest.raises(TypeError):
        native.csum_partial(b"", initial)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("granule", [0, -1, -4096])
def test_bad_granule_is_value_error(impl, granule):
    with pytest.raises(ValueError):
        impl.zero_ranges(b"\0" * 8, granule)
    with pytest.raises(ValueError):
        impl.nonzero_ranges(b"\0" * 8, granule=granule)


def test_granule_wrong_type():
    with pytest.raises(TypeError):
        native.zero_ranges(b"\0", 1.0)
    with pytest.raises(TypeError):
        native.nonzero_ranges(b"\0", "4096")


def test_keyword_arguments():
    assert native.csum_partial(buffer=b"\0\0\0\1", initial=1) == 2
    assert native.zero_ranges(buffer=bytes(3), granule=2) == [(0, 3)]
    assert native.nonzero_ranges(buffer=b"\1\0", granule=1) == [(0, 1)]


def test_missing_extension_falls_back(monkeypatch, capsys):
    """Without the built extension, native serves the pure-Python fallback and says so once."""
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "native._native", None)  # forces ImportError
    monkeypatch.delitem(sys.modules, "native")
    mod = importlib.import_module("native")
    assert mod.BUILT is False and "pure-Python fallback" in mod.describe()
    assert mod.csum_partial(b"\0\0\0\1", 1) == 2 and mod.is_zero(bytes(8))
    err = capsys.readouterr().err
    assert err.count("pure-Python fallback") == 1


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=4096), cut=st.integers(0, 1024), init=st.sampled_from([0, 1, 0xFFFFFFFF]))
def test_csum_add_joins_partial_sums_in_any_grouping(data, cut, init):
    """CKSM is addition modulo 2**32-1: the sum of word-aligned pieces equals the whole sum."""
    from meminfo_abi.checksum import csum_add
    cut = min(cut * 4, len(data) // 4 * 4)
    whole = reference.csum_partial(data, init)
    assert csum_add(init, csum_add(csum_partial(data[:cut]), csum_partial(data[cut:]))) == whole
    assert csum_partial(data[cut:], csum_partial(data[:cut], init)) == whole


def test_csum_range_parallel_equals_serial():
    """The parallel CKSM of large segments (all cores, bounded window) gives the serial result,
    whatever the piece size, thread count, length and initial value."""
    from meminfo_abi.checksum import csum_range
    rnd = random.Random(7)
    data = bytearray(rnd.randbytes(3 << 20))
    data[100:120] = b"\xff" * 20                      # words that carry around
    view = memoryview(data)
    read = lambda a, n: view[a:a + n]                  # noqa: E731
    for length in (0, 3, 4096 + 2, (1 << 20) + 5, 3 << 20):
        for init in (0, 0xFFFFFFFF):
            serial = csum_partial(view[:length], init)
            for threads, piece in ((1, 1 << 20), (2, 4), (2, 1 << 16), (3, 1 << 20), (8, 12)):
                if piece < 4096 and length > 1 << 16:
                    continue                           # tiny pieces only on short ranges
                assert csum_range(read, 0, length, init, threads=threads, piece=piece) == serial
    with pytest.raises(ValueError):
        csum_range(read, 0, 8, piece=6)


# --------------------------------------------------------------------------
# deflate_pages: zlib-ng's own deflate, a batch of pages without the GIL
# --------------------------------------------------------------------------

# zlib-ng's module has no wheel for every platform (s390x: the suite runs on the standard zlib
# there, tests/realworld/test_native_s390x.py); where it is installed these tests must run
NO_ZLIB_NG = "zlib-ng's module is not installed for this Python"


def _mixed_pages(n: int, ps: int = 4096) -> bytearray:
    """Pages that compress well, not at all (random: stored as they are), and in between."""
    rnd = random.Random(n)
    out = bytearray()
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out += bytes(ps)
        elif kind == 1:
            out += rnd.randbytes(ps)
        elif kind == 2:
            out += (b"kernel text %d " % i) * (ps // 16) + bytes(ps - (ps // 16) * len(b"kernel text %d " % i))
        else:
            out += rnd.randbytes(ps // 2) + bytes(ps // 2)
    return out


@pytest.mark.parametrize("level", [0, 1, 6, 9])
@pytest.mark.parametrize("ps", [4096, 1 << 16])
def test_deflate_pages_equals_zlib_ng_page_by_page(level, ps):
    zlib_ng = pytest.importorskip("zlib_ng.zlib_ng", reason=NO_ZLIB_NG)
    assert native.zlib_ng_deflate().startswith("2.")
    data = _mixed_pages(24, ps)
    mv = memoryview(data)
    buffers = [mv[:ps], mv[ps:10 * ps], bytes(mv[10 * ps:11 * ps]), mv[11 * ps:]]
    out, sizes = native.deflate_pages(buffers, ps, level)
    assert len(sizes) == 24 and sum(sizes) == len(out)
    pos = 0
    for i, size in enumerate(sizes):
        page = bytes(mv[i * ps:(i + 1) * ps])
        stream = zlib_ng.compress(page, level)
        expect = stream if len(stream) < ps else page
        piece = out[pos:pos + size]
        assert size == len(expect) and (piece if size == ps else zlib_ng.decompress(piece)) == page, (i, size)
        if ps <= 16 << 10:       # compress() hands deflate 16 KiB of output at a time, which splits
            assert piece == expect, (i, size)     # stored blocks of larger pages elsewhere
        pos += size
    assert sizes.count(ps) >= 6                        # the random pages are stored as they are


def test_deflate_pages_refuses_bad_arguments():
    pytest.importorskip("zlib_ng.zlib_ng", reason=NO_ZLIB_NG)
    assert native.zlib_ng_deflate()
    assert native.deflate_pages([], 4096, 1) == (b"", [])
    for args, exc in ((([b"x" * 4095], 4096, 1), ValueError), (([bytes(4096)], 4096, 10), ValueError),
                      (([bytes(4096)], 32, 1), ValueError), ((["text"], 4096, 1), TypeError),
                      ((5, 4096, 1), TypeError)):
        with pytest.raises(exc):
            native.deflate_pages(*args)
    with pytest.raises(OSError):
        native._impl.bind_zlib_ng("/nonexistent/zlib_ng.so")
    with pytest.raises(OSError):                       # a shared object without zlib-ng's API
        native._impl.bind_zlib_ng(native._impl.__file__)


def test_deflate_pages_runs_on_two_threads_at_once():
    """Two threads compressing at once give each the streams one thread gives (one state per call)."""
    import threading
    pytest.importorskip("zlib_ng.zlib_ng", reason=NO_ZLIB_NG)
    assert native.zlib_ng_deflate()
    data = _mixed_pages(64)
    alone = native.deflate_pages([data], 4096, 1)
    results: list = [None] * 4

    def work(k: int) -> None:
        for _ in range(5):
            results[k] = native.deflate_pages([data], 4096, 1)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == alone for r in results)


# --------------------------------------------------------------------------
# page_rows: the struct pages a dump-level scan decodes
# --------------------------------------------------------------------------

def _page_row(size: int, flags: int = 0, mapping: int = 0, mapcount: int = -1, head: int = 0) -> bytes:
    row = bytearray(size)
    struct.pack_into(">Q", row, 0, flags)
    struct.pack_into(">QQ", row, 8, head, 0)
    struct.pack_into(">Q", row, 24, mapping)
    struct.pack_into(">i", row, 48, mapcount)
    return bytes(row)


@pytest.mark.parametrize("impl", [pytest.param(native, id="C"), pytest.param(fallback, id="fallback")])
def test_page_rows_finds_the_rows_a_scan_decodes(impl):
    size, hot = 64, (1 << 4) | (1 << 10)
    rows = [
        _page_row(size),                                        # 0 kept: nothing hot
        _page_row(size, flags=1 << 4),                          # 1 hot flag
        _page_row(size, flags=1 << 5 | 1 << 63),                # 2 other flags only: kept
        _page_row(size, mapping=0xABCDEF01),                    # 3 anon bit
        _page_row(size, mapping=0xABCDEF00),                    # 4 a file mapping: kept
        _page_row(size, mapcount=-129),                         # 5 an exact page type (buddy, 6.1)
        _page_row(size, mapcount=-128 << 24 | 5),               # 6 a top-byte page type (6.12 style)
        _page_row(size, mapcount=-2),                           # 7 no type
        _page_row(size, flags=1 << 10, head=0x1234567 | 1),     # 8 a tail: never alone
        _page_row(size, flags=1 << 10, head=0x1234568),         # 9 compound_head without bit 0: a page
    ]
    buf = b"".join(rows)
    args = (size, 0, 24, 48, 8, hot, [-129], [0x80])
    assert impl.page_rows(buf, *args) == [1, 3, 5, 6, 9]
    assert impl.page_rows(buf, size, 0, 24, -1, -1, hot, [-129], [0x80]) == [1, 3, 8, 9]   # fields absent
    assert impl.page_rows(memoryview(buf)[size * 5:], *args) == [0, 1, 4]
    assert impl.page_rows(b"", *args) == []
    with pytest.raises(ValueError):
        impl.page_rows(buf, size, 60, 24, 48, 8, hot, [], [])


def test_page_rows_c_equals_fallback_on_random_rows():
    rnd = random.Random(11)
    size = 64
    buf = bytearray(rnd.randbytes(size * 3000))
    for i in range(0, 3000, 3):                                # plenty of plain rows too
        buf[i * size:(i + 1) * size] = _page_row(size, flags=rnd.getrandbits(64) & ~0x410, mapping=rnd.getrandbits(63) << 1)
    args = (size, 0, 24, 48, 8, 0x410, [-129, -257], [0x80, 0xF2])
    assert native.page_rows(buf, *args) == fallback.page_rows(buf, *args)


# --------------------------------------------------------------------------
# the pure-Python fallback (no compiler at install time) on large buffers
# --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("size", [(1 << 20) - 3, (3 << 20) + 4097])
def test_fallback_matches_c_on_large_buffers(size):
    rng = random.Random(size)
    data = bytearray(size)
    for _ in range(40):     # sparse non-zero bytes: zero granules, whole zero blocks and runs across blocks
        data[rng.randrange(size)] = rng.randrange(1, 256)
    data[(2 << 20) - 1:(2 << 20) + 5] = b"\xff" * 6
    for granule in (1, 512, 4096, 1 << 20, 5 << 20):
        assert fallback.zero_ranges(data, granule) == native._impl.zero_ranges(data, granule)
        assert fallback.nonzero_ranges(data, granule) == native._impl.nonzero_ranges(data, granule)
    for initial in (0, 1, U32):
        assert fallback.csum_partial(data, initial) == native._impl.csum_partial(data, initial)
    assert fallback.is_zero(data) is False and fallback.is_zero(bytes(size)) is True


def test_without_the_extension_the_cli_runs_and_says_so_once(tmp_path):
    """S390_DUMPTOOLS_NO_NATIVE stands in for an install without a compiler."""
    import subprocess
    import sys
    env = dict(os.environ, S390_DUMPTOOLS_NO_NATIVE="1")
    proc = subprocess.run([sys.executable, "-m", "vmcore.cli", "--version"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "pure-Python fallback" in proc.stdout
    m = str(tmp_path / "m")
    proc = subprocess.run([sys.executable, "-m", "s390_machine.cli", "create", m, "--memory", "64M",
                           "--crashkernel", "16M"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("pure-Python fallback") == 1 and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "s390_machine.cli", "show", m], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "meminfo" in proc.stdout
