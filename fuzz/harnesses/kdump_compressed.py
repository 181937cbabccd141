"""kdump-compressed dumps (makedumpfile's diskdump format, either byte order) through
vmcore.formats.open_dump: headers, bitmaps, page descriptors, page data.  Input: fuzz/sparse.py."""

from fuzz.harnesses import _files
from fuzz.harnesses.elf_dump import exercise
from vmcore.formats import open_dump

MAX_LEN = 0x10000
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"KDUMP   ",
    b"makedumpfile",
    b"\x00\x00\x00\x06",
    b"\x06\x00\x00\x00",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x00\x00\x10\x00",
    b"VMCOREINFO\x00",
    b"\x00\x3f\xff\xfe",                  # bitmap_blocks of two 8 GiB bitmaps (issue 16: on a sparse file)
)


def target(data: bytes) -> None:
    exercise(open_dump(_files.sparse_files(data, 1)[0]))


def seeds(ctx):
    from fuzz import sparse
    for name, opts in (("k-be", {}), ("k-le", {"byteorder": "<"}), ("k-raw", {"compress": "none"}),
                       ("k-split", {"gaps": True, "exclude_zero": True})):
        yield sparse.encode_files([ctx.kdump_file(name, **opts)])
    from fuzz import crafted               # issue 16: bitmaps claiming a whole sparse file (64 MiB here)
    path = ctx.tmp("bitmap-claim.kdump")
    yield sparse.encode_files([crafted.sparse_bitmap_claim(path, sparse.SIZE_CAP)])
