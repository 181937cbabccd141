"""s390 dump files (flat ...23fd and extended ...23fe streams) through vmcore.formats.open_dump,
the reader in vmcore/formats/s390.py.  Input: fuzz/sparse.py."""

from fuzz.harnesses import _files
from fuzz.harnesses.elf_dump import exercise
from vmcore.formats import open_dump

MAX_LEN = 0x10000
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"\xa8\x19\x01\x73\x61\x8f\x23\xfe",
    b"\xa8\x19\x01\x73\x61\x8f\x23\xfd",
    b"DUMP_END",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x80\x00\x00\x00",
    b"\x78\x01",
)


def target(data: bytes) -> None:
    exercise(open_dump(_files.sparse_files(data, 1)[0]))


def seeds(ctx):
    from fuzz import sparse
    for name, kind, compress in (("v-z", "eckd", True), ("v-raw", "eckd", False), ("v-tape", "tape", False)):
        devs = ctx.dumped_device(name, kind, compress)
        yield sparse.encode_files([ctx.extracted(name + ".s390", devs)])
