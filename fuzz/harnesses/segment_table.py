"""The seed's kexec segment table: KexecSegmentTable.parse and its rebuilt bytes."""

from meminfo_abi.meminfo import KexecSegmentTable

MAX_LEN = 1024
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"KDSEGTAB",
    b"\x00\x01",
    b"\x00\x10",
    b"\x00\x11",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
)


def target(data: bytes) -> None:
    table = KexecSegmentTable.parse(data)
    for s in table.segments:
        s.kind_name
    again = KexecSegmentTable.parse(table.to_bytes())
    assert again == table, "segment table does not survive parse -> to_bytes -> parse"


def seeds(ctx):
    from meminfo_abi.lowcore import LC_OS_INFO
    from meminfo_abi.meminfo import MEMINFO_KEXEC_SEGMENTS, MemInfo
    mem = ctx.compact
    mi = MemInfo.parse(mem.read(mem.read_u64(LC_OS_INFO), 4096))
    e = mi.entries[MEMINFO_KEXEC_SEGMENTS]
    yield mem.read(e.addr, e.size)
