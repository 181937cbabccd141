"""The name of the kdump format, and its page compression: a codec by name (writer) or by
page_desc flag (reader).

zlib through zlib-ng; lzo, snappy and zstd when their modules are installed (the extras of
the same names).  Every page is compressed on its own, as makedumpfile does.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import native
from meminfo_abi import diskdump as dd
from dumpkit.deflate import zlib_module
from dumpkit.errors import BadInputError, UsageError

FORMAT_NAME = "kdump"
BITMAP_PIECE = 1 << 20          # bytes of bitmap built or scanned at a time (writer and reader)

_PIP_NAMES = {"lzo": "python-lzo", "snappy": "python-snappy", "zstd": "zstandard"}   # extra -> module


def _import_codec(name: str):
    try:
        if name == "zlib":
            mod = zlib_module()
        elif name == "lzo":
            import lzo as mod
        elif name == "snappy":
            import snappy as mod
        elif name == "zstd":
            import zstandard as mod
        else:
            raise UsageError(f"unknown compression {name!r} (zlib, lzo, snappy, zstd or none)")
    except ImportError:
        raise BadInputError(f"{name} pages need {_PIP_NAMES.get(name, name)}, which is not installed: "
                            f"pip install 's390-dumptools[{name}]'") from None
    return mod


def compressor(name: str, level: int = 1) -> tuple[int, Callable[[Any], bytes] | None]:
    """(page_desc flag, function page -> compressed bytes) of a compression name; "none" gives (0, None)."""
    if name == "none":
        return 0, None
    if name not in dd.COMPRESSION_FLAGS:
        raise UsageError(f"unknown compression {name!r} (zlib, lzo, snappy, zstd or none)")
    if isinstance(level, bool) or not isinstance(level, int):
        raise UsageError(f"compression level must be an integer, not {level!r}")
    mod = _import_codec(name)
    flag = dd.COMPRESSION_FLAGS[name]
    if name == "zlib":
        if not 0 <= level <= 9:
            raise UsageError(f"zlib level must be 0..9, not {level}")
        zc = mod.compress
        return flag, lambda page: zc(page, level)
    if name == "lzo":
        lc = mod.compress
        return flag, lambda page: lc(bytes(page), 1, False)       # lzo1x_1, no header
    if name == "snappy":
        sc = mod.compress
        return flag, lambda page: sc(bytes(page))
    local = threading.local()                                     # ZstdCompressor is per thread

    def zstd(page):
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = mod.ZstdCompressor(level=level)
        return c.compress(page)
    return flag, zstd


def batch_compressor(name: str, level: int = 1) -> Callable[[list, int], tuple[bytes, list]] | None:
    """function (buffers of whole pages, page size) -> (pieces end to end, each page's size there,
    the page size where stored as it is): the pages of a batch compressed as compressor(name, level)
    does one by one, without the GIL (native.deflate_pages); None where that cannot run (another
    codec, no native extension or no zlib-ng), and the writer goes page by page."""
    if name != "zlib" or not native.zlib_ng_deflate():
        return None
    deflate = native.deflate_pages
    return lambda buffers, ps: deflate(buffers, ps, level)


def _snappy_length(data: bytes) -> int:
    """The uncompressed length a raw snappy block announces (its leading varint)."""
    n = shift = 0
    for i, b in enumerate(data[:5]):
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n
        shift += 7
    return -1


def decompressor(flag: int, page_size: int) -> Callable[[bytes], bytes]:
    """function compressed -> page for a page_desc flag; BadInputError names a missing module."""
    name = dd.COMPRESSION_NAMES.get(flag)
    if name is None:
        raise BadInputError(f"page descriptor flags 0x{flag:x} name no single compression")
    mod = _import_codec(name)
    if name == "zlib":
        def zlib_page(data: bytes) -> bytes:
            d = mod.decompressobj()
            out = d.decompress(data, page_size + 1)
            if not d.eof:
                raise ValueError("zlib stream does not end within a page")
            return out
        return zlib_page
    if name == "lzo":
        return lambda data: mod.decompress(data, False, page_size)
    if name == "snappy":
        def snappy_page(data: bytes) -> bytes:
            if _snappy_length(data) != page_size:
                raise ValueError("snappy block does not hold one page")
            return mod.uncompress(data)
        return snappy_page
    zd = mod.ZstdDecompressor()

    def zstd_page(data: bytes) -> bytes:
        size = mod.frame_content_size(data)
        if size not in (-1, page_size):
            raise ValueError(f"zstd frame holds {size} bytes, not one page")
        return zd.decompress(data, max_output_size=page_size)
    return zstd_page

