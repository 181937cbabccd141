"""The meminfo (os_info) page: MemInfo.parse, the header checksum and the rebuilt page."""

from meminfo_abi.meminfo import OS_INFO_SIZE, MemInfo, entry_name, header_csum

MAX_LEN = OS_INFO_SIZE + 64
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"OSINFOSZ",
    b"\x00\x01\x00\x01",
    b"\xff\xff\xff\xff",
)


def target(data: bytes) -> None:
    mi = MemInfo.parse(data)
    header_csum(data[:OS_INFO_SIZE])
    for i, e in enumerate(mi.entries):
        if not e.empty:
            entry_name(i)
    again = MemInfo.parse(mi.to_bytes())
    assert again.entries == mi.entries, "meminfo page does not survive parse -> to_bytes -> parse"


def seeds(ctx):
    from meminfo_abi.lowcore import LC_OS_INFO
    mem = ctx.compact
    ptr = mem.read_u64(LC_OS_INFO)
    yield mem.read(ptr, OS_INFO_SIZE)
    yield MemInfo().to_bytes()
