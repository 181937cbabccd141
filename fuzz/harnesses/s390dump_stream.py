"""s390 dump streams (the extended ...23fe layout zgetdump reads from a partition): the header
checks, ExtStreamWalker over the segment headers, the end marker, and read_unit on the 1 MiB
units (raw, or zlib streams that must inflate to exactly 1 MiB).  Input: fuzz/sparse.py."""

import os

from fuzz.harnesses import S390_DUMP_TOKENS, _files, extracted_dump_seeds
from meminfo_abi.s390_dump_stream import ExtStreamWalker, read_header, read_unit

MAX_LEN = 0x10000
DICT = S390_DUMP_TOKENS + (  # libFuzzer dictionary tokens (-dict)
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
    return extracted_dump_seeds(ctx, (("s-z", "eckd", True), ("s-raw", "eckd", False), ("s-fba", "fba", False),
                                      ("s-mv", "mv", False), ("s-tape", "tape", False)))
