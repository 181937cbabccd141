"""The stand-alone dumper's stage 1 over a whole (small) memory: check_meminfo - pointer,
page, header checksum, data entries, segment table, every segment's CKSM, the digest - and
the kdump kernel's lookup of VMCOREINFO (find_vmcoreinfo, through read_meminfo).

Input: fuzz/sparse.py describing absolute storage (file 0, at most MEMORY_CAP bytes)."""

from fuzz import sparse
from dumpkit.errors import BadInputError
from meminfo_abi.locate import find_vmcoreinfo
from meminfo_abi.meminfo import check_meminfo

MAX_LEN = 0x8000
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"OSINFOSZ",
    b"KDSEGTAB",
    b"VMCOREINFO\x00",
    b"\x00\x00\x00\x00\x00\x00\x30\x00",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x00\x00\x10\x00",
)
MEMORY_CAP = 4 << 20


class _Memory:
    def __init__(self, data: bytes):
        size, records = sparse.decode(data)[0]
        self.size = size % (MEMORY_CAP + 1)
        self._data = bytearray(self.size)
        for off, chunk in records:
            if off < self.size:
                piece = chunk[:self.size - off]
                self._data[off:off + len(piece)] = piece

    def read(self, addr: int, length: int) -> bytes:
        if addr < 0 or length < 0 or addr + length > self.size:
            raise BadInputError(f"0x{addr:x}+0x{length:x} is outside memory")
        return bytes(self._data[addr:addr + length])


def target(data: bytes) -> None:
    mem = _Memory(data)
    rep = check_meminfo(mem)
    rep.to_json()
    if rep.kdump_intact:    # never "intact" without a valid header, a table and every segment checked
        assert rep.header_valid and rep.table is not None, rep.reason
        assert all(c.ok for c in rep.checks if c.name.startswith(("segment", "sha256"))), rep.reason
    found = find_vmcoreinfo(mem)
    if found is not None:
        found.info.text()


def seeds(ctx):
    yield sparse.encode_files([bytes(ctx.compact)])
