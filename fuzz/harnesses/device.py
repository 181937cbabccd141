"""Dump device boot records as zipl -d / -M leave them: read_device on ECKD (IPL records,
dump tool, parameter tail, volume label, multi-volume parameter table), FBA and AWSTAPE images;
then the capacity check and the JSON the CLI prints.  Input: fuzz/sparse.py (one file)."""

from fuzz.harnesses import _files
from zipl_sadump.device import fits, read_device, read_devices

MAX_LEN = 0x10000
DICT = (  # libFuzzer dictionary tokens (-dict)
    b"zIPL",
    b"XECKD64",
    b"XMULT64",
    b"XDFBA64",
    b"XTAPE64",
    b"\xa8\x19\x01\x73\x61\x8f\x23\xfe",
    b"\x00\x80\xa0\x00",
    b"\x10\x00",
    b"\xff\xff\xff\xff",
)


def target(data: bytes) -> None:
    path = _files.sparse_files(data, 1)[0]
    dev = read_device(path)
    dev.to_json()
    dev.description, dev.supports_compression
    fits(dev, 1 << 30)
    read_devices([path])


def seeds(ctx):
    from fuzz import sparse
    yield sparse.encode_files([ctx.device("d-eckd")])
    yield sparse.encode_files([ctx.device("d-eckd-nc", no_compress=True, mem_limit=2 << 20)])
    yield sparse.encode_files([ctx.device("d-fba", "fba")])
    yield sparse.encode_files([ctx.device("d-tape", "tape")])
    for p in ctx.mv_devices("d-mv", 2):
        yield sparse.encode_files([p])
