"""makedumpfile's flattened stream (-F) of a kdump-compressed dump, through
vmcore.formats.open_dump (the record index, then the dump read in place).  Input: fuzz/sparse.py."""

from fuzz.harnesses import _files
from fuzz.harnesses.elf_dump import exercise
from vmcore.formats import open_dump

MAX_LEN = 0x10000
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"makedumpfile",
    b"KDUMP   ",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x00\x00\x00\x00\x00\x00\x10\x00",
    b"\x00\x00\x00\x00\x00\x00\x00\x08",  # an 8-byte record (issue 16: 600,000 of them, backwards)
)


def target(data: bytes) -> None:
    exercise(open_dump(_files.sparse_files(data, 1)[0]))


def seeds(ctx):
    from fuzz import sparse
    for name, opts in (("fl-be", {}), ("fl-le", {"byteorder": "<"})):
        yield sparse.encode_files([ctx.kdump_file(name, flattened=True, **opts)])
    from fuzz import crafted               # issue 16's stream: records backwards, overlapping, few here
    stream, _ = crafted.flat_records_bytes(crafted.small_kdump_bytes(pages=4), piece=64)
    yield sparse.encode_files([stream])
