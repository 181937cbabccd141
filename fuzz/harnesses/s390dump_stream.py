"""s390 dump streams (the extended ...23fe layout zgetdump reads from a partition): the header
checks, ExtStreamWalker over the segment headers, the end marker, and read_unit on the 1 MiB
units (raw, or zlib streams that must inflate to exactly 1 MiB).  Input: fuzz/sparse.py."""

import os

from fuzz.harnesses import _files
from meminfo_abi.s390dump import ExtStreamWalker, read_header, read_unit

MAX_LEN = 0x10000
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"\xa8\x19\x01\x73\x61\x8f\x23\xfe",
    b"\xa8\x19\x01\x73\x61\x8f\x23\xfd",
    b"DUMP_END",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x80\x00\x00\x00",
    b"\x78\x01",
    b"\x78\x9c",
    b"\x00\x10\x00\x00",
    b"\x00\x00\x10\x00",
)
UNITS = 6


def target(data: bytes) -> None:
    path = _files.sparse_files(data, 1)[0]
    fd = os.open(path, os.O_RDONLY)
    try:
        read_header(fd)
        walker = ExtStreamWalker(fd, 0, block_size=4096)
        done = 0
        for seg in walker:
            seg.units, seg.compressed, seg.end
            for i in range(min(seg.units, 2)):
                if done < UNITS:
                    read_unit(fd, seg, i)
                    done += 1
        assert walker.status is not None
        assert walker.status.complete == walker.status.end_marker
    finally:
        os.close(fd)


def seeds(ctx):
    from fuzz import sparse
    for name, kind, compress in (("s-z", "eckd", True), ("s-raw", "eckd", False), ("s-fba", "fba", False),
                                 ("s-mv", "mv", False), ("s-tape", "tape", False)):
        devs = ctx.dumped_device(name, kind, compress)
        yield sparse.encode_files([ctx.extracted(name + ".s390", devs)])
