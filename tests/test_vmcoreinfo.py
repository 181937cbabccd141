"""meminfo_abi.vmcoreinfo: KEY=VALUE parsing, building and typed accessors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dumpkit.errors import BadInputError
from meminfo_abi.vmcoreinfo import (
    MAX_VMCOREINFO_INPUT,
    VMCOREINFO_BYTES,
    VMCOREINFO_NOTE_NAME,
    VmcoreInfo,
    parse_vmcoreinfo,
)

SAMPLE = (
    b"OSRELEASE=6.8.0-31-generic\n"
    b"BUILD-ID=3c1a2b\n"
    b"PAGESIZE=4096\n"
    b"SYMBOL(init_uts_ns)=1b6e8d8\n"
    b"OFFSET(uts_namespace.name)=0\n"
    b"SYMBOL(lowcore_ptr)=1f3e300\n"
    b"LENGTH(lowcore_ptr)=512\n"
    b"SIZE(page)=64\n"
    b"OFFSET(page.flags)=0\n"
    b"NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n"
    b"NUMBER(MAX_PHYSMEM_BITS)=46\n"
    b"CONFIG_NUMA=y\n"
    b"SAMODE31=1000\n"
    b"KERNELOFFSET=3a000000\n"
    b"CRASHTIME=1717171717\n"
)


def test_constants():
    assert VMCOREINFO_BYTES == 4096
    assert VMCOREINFO_NOTE_NAME == "VMCOREINFO"


def test_parse_and_accessors():
    info = parse_vmcoreinfo(SAMPLE)
    assert info.to_bytes() == SAMPLE
    assert info.text() == SAMPLE.decode()
    assert list(info.entries)[:3] == ["OSRELEASE", "BUILD-ID", "PAGESIZE"]
    assert info.osrelease == "6.8.0-31-generic"
    assert info.build_id == "3c1a2b"
    assert info.page_size == 4096
    assert info.symbol("init_uts_ns") == 0x1B6E8D8
    assert info.symbol("lowcore_ptr") == 0x1F3E300
    assert info.length("lowcore_ptr") == 512
    assert info.size("page") == 64
    assert info.offset("page.flags") == 0
    assert info.offset("uts_namespace.name") == 0
    assert info.number("PAGE_BUDDY_MAPCOUNT_VALUE") == -129
    assert info.number("MAX_PHYSMEM_BITS") == 46
    assert info.config("NUMA") == "y" and info.config("CONFIG_NUMA") == "y"
    assert info.kerneloffset == 0x3A000000
    assert info.crashtime == 1717171717
    assert info.get("SAMODE31") == "1000"
    assert "SAMODE31" in info and len(info) == 15


def test_missing_returns_none():
    info = parse_vmcoreinfo(b"")
    assert info.entries == {} and info.unparsed == []
    assert info.symbol("x") is None and info.size("x") is None and info.offset("a.b") is None
    assert info.length("x") is None and info.number("x") is None and info.get("x") is None
    assert info.osrelease is None and info.page_size is None and info.crashtime is None
    assert info.kerneloffset == 0


def test_str_input_empty_lines_unparsed_and_nul_padding():
    info = parse_vmcoreinfo("A=1\n\n   \njunk line\nB=x=y\nC=\n=nokey\n")
    assert info.entries == {"A": "1", "B": "x=y", "C": ""}
    assert info.unparsed == ["junk line", "=nokey"]
    assert info.text() == "A=1\nB=x=y\nC=\n"
    # a zero-padded buffer and a missing final newline
    info = parse_vmcoreinfo(b"A=1\nB=2" + bytes(100))
    assert info.entries == {"A": "1", "B": "2"}


def test_duplicates_last_wins_first_order():
    info = parse_vmcoreinfo(b"A=1\nB=2\nA=3\n")
    assert list(info.entries.items()) == [("A", "3"), ("B", "2")]


def test_non_utf8_replaced():
    info = parse_vmcoreinfo(b"OSRELEASE=6.1\xff\xfe\nPAGESIZE=4096\n")
    assert info.osrelease == "6.1\ufffd\ufffd"
    assert info.page_size == 4096


def test_size_bound():
    parse_vmcoreinfo(b"A=1\n" * (MAX_VMCOREINFO_INPUT // 4))
    with pytest.raises(BadInputError):
        parse_vmcoreinfo(b"A" * (MAX_VMCOREINFO_INPUT + 1))
    with pytest.raises(BadInputError):
        parse_vmcoreinfo("A" * (MAX_VMCOREINFO_INPUT + 1))
    with pytest.raises(BadInputError):
        parse_vmcoreinfo(12345)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "line,call",
    [
        ("SYMBOL(x)=0xzz", lambda i: i.symbol("x")),
        ("SYMBOL(x)=", lambda i: i.symbol("x")),
        ("SYMBOL(x)= 12", lambda i: i.symbol("x")),
        ("SYMBOL(x)=1_0", lambda i: i.symbol("x")),
        ("SYMBOL(x)=1" + "0" * 16, lambda i: i.symbol("x")),
        ("SIZE(x)=-1", lambda i: i.size("x")),
        ("SIZE(x)=12a", lambda i: i.size("x")),
        ("OFFSET(a.b)=0x10", lambda i: i.offset("a.b")),
        ("LENGTH(x)=1.5", lambda i: i.length("x")),
        ("LENGTH(x)=" + "9" * 30, lambda i: i.length("x")),
        ("NUMBER(x)=--1", lambda i: i.number("x")),
        ("NUMBER(x)=9223372036854775808", lambda i: i.number("x")),
        ("PAGESIZE=4k", lambda i: i.page_size),
        ("KERNELOFFSET=g", lambda i: i.kerneloffset),
        ("CRASHTIME=now", lambda i: i.crashtime),
    ],
)
def test_malformed_values_raise(line, call):
    info = parse_vmcoreinfo(line + "\n")
    with pytest.raises(BadInputError) as exc:
        call(info)
    msg = str(exc.value)
    assert "\n" not in msg
    assert line.split("=", 1)[0] in msg


def test_number_limits_and_hex_prefix():
    info = parse_vmcoreinfo(
        "NUMBER(a)=-9223372036854775808\nNUMBER(b)=9223372036854775807\nSYMBOL(c)=ffffffffffffffff\n"
        "SYMBOL(d)=0x10\nSIZE(e)=18446744073709551615\n"
    )
    assert info.number("a") == -(1 << 63) and info.number("b") == (1 << 63) - 1
    assert info.symbol("c") == (1 << 64) - 1 and info.symbol("d") == 16
    assert info.size("e") == (1 << 64) - 1


def test_builder_formats():
    info = VmcoreInfo.from_pairs([("OSRELEASE", "6.1.0"), ("PAGESIZE", 4096)])
    info.set_symbol("lowcore_ptr", 0x1F3E300)
    info.set_length("lowcore_ptr", 512)
    info.set_size("page", 64)
    info.set_offset("page.flags", 0)
    info.set_number("PG_lru", -5)
    info.set_kerneloffset(0xABC000)
    info.set("CRASHTIME", 17)
    assert info.text() == (
        "OSRELEASE=6.1.0\nPAGESIZE=4096\nSYMBOL(lowcore_ptr)=1f3e300\nLENGTH(lowcore_ptr)=512\n"
        "SIZE(page)=64\nOFFSET(page.flags)=0\nNUMBER(PG_lru)=-5\nKERNELOFFSET=abc000\nCRASHTIME=17\n"
    )
    assert parse_vmcoreinfo(info.to_bytes()) == info
    assert VmcoreInfo.from_pairs({"A": "1"}).text() == "A=1\n"
    # setting an existing key keeps its position
    info.set("OSRELEASE", "6.2")
    assert info.text().startswith("OSRELEASE=6.2\nPAGESIZE=4096\n")


@pytest.mark.parametrize(
    "call",
    [
        lambda i: i.set_symbol("x", -1),
        lambda i: i.set_symbol("x", 1 << 64),
        lambda i: i.set_size("x", -1),
        lambda i: i.set_number("x", 1 << 63),
        lambda i: i.set_kerneloffset(-1),
        lambda i: i.set("A=B", "1"),
        lambda i: i.set("", "1"),
        lambda i: i.set("A", "1\n2"),
        lambda i: i.set("A", 1.5),
        lambda i: i.set("A", "\ud800"),
    ],
)
def test_builder_rejects(call):
    with pytest.raises(BadInputError):
        call(VmcoreInfo())


_KEY = st.text(st.characters(blacklist_characters="=\n", blacklist_categories=("Cs",)), min_size=1, max_size=20) \
    .filter(lambda k: k.strip() != "")
_VALUE = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=200)
@given(st.lists(st.tuples(_KEY, _VALUE), max_size=20))
def test_round_trip(pairs):
    info = VmcoreInfo.from_pairs(pairs)
    data = info.to_bytes()
    back = parse_vmcoreinfo(data)
    assert back.entries == info.entries
    assert list(back.entries) == list(info.entries)
    assert back.to_bytes() == data
    assert back.unparsed == []


@settings(max_examples=200)
@given(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.integers(0, (1 << 64) - 1), max_size=10),
       st.integers(-(1 << 63), (1 << 63) - 1))
def test_typed_round_trip(symbols, num):
    info = VmcoreInfo()
    for name, addr in symbols.items():
        info.set_symbol(name, addr)
        info.set_size(name, addr)
    info.set_number("n", num)
    back = parse_vmcoreinfo(info.to_bytes())
    for name, addr in symbols.items():
        assert back.symbol(name) == addr and back.size(name) == addr
    assert back.number("n") == num


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_fuzz_parse_never_crashes(data):
    info = parse_vmcoreinfo(data)
    assert parse_vmcoreinfo(info.to_bytes()).entries == info.entries


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_fuzz_accessors_only_bad_input(value):
    keys = ["SYMBOL(x)", "SIZE(x)", "OFFSET(x)", "LENGTH(x)", "NUMBER(x)", "PAGESIZE", "KERNELOFFSET", "CRASHTIME"]
    value = value.replace(b"\n", b"")
    info = parse_vmcoreinfo(b"".join(k.encode() + b"=" + value + b"\n" for k in keys))
    calls = [
        lambda: info.symbol("x"), lambda: info.size("x"), lambda: info.offset("x"), lambda: info.length("x"),
        lambda: info.number("x"), lambda: info.page_size, lambda: info.kerneloffset, lambda: info.crashtime,
    ]
    for call in calls:
        try:
            v = call()
        except BadInputError:
            continue
        assert isinstance(v, int)
