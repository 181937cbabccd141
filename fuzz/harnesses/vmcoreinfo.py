"""VMCOREINFO text: parse_vmcoreinfo, then every typed accessor on every key it holds."""

from meminfo_abi.vmcoreinfo import parse_vmcoreinfo

MAX_LEN = 8192
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"SYMBOL(",
    b"OFFSET(",
    b"SIZE(",
    b"LENGTH(",
    b"NUMBER(",
    b"CONFIG_",
    b"PAGESIZE=",
    b"KERNELOFFSET=",
    b"CRASHTIME=",
    b"OSRELEASE=",
    b"BUILD-ID=",
    b")=",
    b"0x",
    b"-",
    b"\xff",
    b"\x00",
    b"18446744073709551616",
    b"-9223372036854775809",
)

_TYPED = {"SYMBOL": "symbol", "SIZE": "size", "OFFSET": "offset", "LENGTH": "length", "NUMBER": "number"}


def target(data: bytes) -> None:
    vi = parse_vmcoreinfo(data)
    vi.osrelease, vi.build_id, vi.page_size, vi.kerneloffset, vi.crashtime
    for key in list(vi.entries):
        kind, sep, rest = key.partition("(")
        if sep and rest.endswith(")") and kind in _TYPED:
            getattr(vi, _TYPED[kind])(rest[:-1])
        elif key.startswith("CONFIG_"):
            vi.config(key)
    again = parse_vmcoreinfo(vi.to_bytes())
    assert list(again.entries) == [k for k in vi.entries], "vmcoreinfo keys change when written back"
    parse_vmcoreinfo(data.decode("latin-1"))


def seeds(ctx):
    yield ctx.vmcoreinfo_text()
    keys, _ = ctx.printk_image("legacy", [])
    yield ctx.vmcoreinfo_text(keys, crashtime=False)
    yield b"OSRELEASE=6.1.0\nPAGESIZE=4096\nSYMBOL(x)=ffff\nNUMBER(y)=-1\nKERNELOFFSET=0\n\0\0\0"
