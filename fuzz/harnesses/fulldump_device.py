"""A full dump on its device(s): meminfo_abi.s390_dump_reader.open_device_dump (what sadump
show and extract read) - device records, dump header, segments, end marker, multi-volume sets, AWSTAPE tapes - its verdict (present / complete /
reason), the summary `sadump show` prints and the first units of memory.
Input: fuzz/sparse.py (one file per volume)."""

from fuzz import sparse
from fuzz.harnesses import S390_DUMP_TOKENS, _files
from meminfo_abi.s390_dump_reader import open_device_dump as open_dump

MAX_LEN = 0x20000
DICT = S390_DUMP_TOKENS + (  # libFuzzer dictionary tokens (-dict)
    b"zIPL",
    b"XECKD64",
    b"XMULT64",
    b"\xa0\x80\x00\x00",
    b"\x40\x00",
)
UNITS = 6


def target(data: bytes) -> None:
    n = data[0] % sparse.MAX_FILES + 1 if data else 1
    paths = _files.sparse_files(data, n)
    with open_dump(paths if len(paths) > 1 else paths[0]) as dump:
        dump.summary()
        if dump.complete:
            assert dump.present, dump.reason
        for _ in zip(range(UNITS), dump.units()):
            pass


def seeds(ctx):
    yield sparse.encode_files(ctx.dumped_device("f-z", "eckd", True))
    yield sparse.encode_files(ctx.dumped_device("f-raw", "eckd", False))
    yield sparse.encode_files(ctx.dumped_device("f-fba", "fba", False))
    yield sparse.encode_files(ctx.dumped_device("f-tape", "tape", False))
    yield sparse.encode_files(ctx.dumped_device("f-mv", "mv", False))
    # a dump that stopped: 4 MiB of data on a device with room for less
    from fuzz.seedbuild import ByteMemory, MIB
    mem = ByteMemory(6 * MIB)
    for off in range(0, 6 * MIB, 4096 * 7):
        mem[off:off + 8] = b"S390PAGE"
    yield sparse.encode_files(ctx.dumped_device("f-small", "eckd", False, size=4 * MIB, memory=mem))
