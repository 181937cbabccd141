"""ELF core headers: read_core_headers (Ehdr, Phdrs, PN_XNUM) and read_note_segments, on a file."""

from fuzz.harnesses import _files
from meminfo_abi.elfcore import read_core_headers, read_note_segments

MAX_LEN = 16384
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"\x7fELF\x02\x02\x01",
    b"\x00\x04\x00\x16",
    b"\xff\xff",
    b"\x00\x38",
    b"\x00\x00\x00\x04",
    b"\x00\x00\x00\x01",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
)


def target(data: bytes) -> None:
    with open(_files.sparse_files(data, 1)[0], "rb") as fh:
        headers = read_core_headers(fh, "fuzz.elf")
        read_note_segments(fh, headers, "fuzz.elf")


def seeds(ctx):
    from fuzz import sparse
    for name, kw in (("a.elf", {}), ("b.elf", {"gaps": True, "vector": False})):
        yield sparse.encode_files([ctx.elf_file(name, **kw)])
