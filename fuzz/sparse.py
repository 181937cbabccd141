"""A compact encoding of (sparse) files as fuzz inputs, for parsers that read files.

Device images and dump streams are megabytes of mostly zeros; their fuzz inputs
hold only the bytes that matter:

    byte 0                  number of files - 1 (mod MAX_FILES)
    4 bytes per file        big-endian size of the file (mod SIZE_CAP)
    records to the end      file index (1 byte), offset (4 bytes BE), length (2 bytes BE), data

Everything that does not parse is tolerated (a record cut short keeps the bytes it
has), so every input is some set of files.  `encode` turns real files into seeds:
only their non-zero 4 KiB pages are kept.
"""

from __future__ import annotations

import os
import struct

MAX_FILES = 4
SIZE_CAP = 64 << 20          # a file is at most 64 MiB (sparse: costs what its records cost)
PAGE = 4096
MAX_RECORD = 0xFFFF
GRAIN = 256                  # encode() keeps non-zero 256-byte pieces


def decode(data: bytes) -> list[tuple[int, list[tuple[int, bytes]]]]:
    """[(size, [(offset, bytes), ...]), ...] for each file."""
    if not data:
        return [(0, [])]
    nfiles = data[0] % MAX_FILES + 1
    pos = 1
    files: list[tuple[int, list]] = []
    for _ in range(nfiles):
        raw = data[pos:pos + 4].ljust(4, b"\0")
        files.append((int.from_bytes(raw, "big") % (SIZE_CAP + 1), []))
        pos += 4
    while pos + 7 <= len(data):
        idx, off, n = struct.unpack_from(">BIH", data, pos)
        pos += 7
        chunk = data[pos:pos + n]
        pos += n
        f = files[idx % nfiles]
        f[1].append((off, chunk))
    return files


def materialize(data: bytes, paths: list[str]) -> list[str]:
    """Write the files an input describes to `paths` (as many as it holds, at most len(paths))."""
    files = decode(data)[:len(paths)]
    out = []
    for (size, records), path in zip(files, paths):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
            for off, chunk in records:
                if off >= size:
                    continue
                os.pwrite(fd, chunk[:size - off], off)
        finally:
            os.close(fd)
        out.append(path)
    return out


def encode_files(contents: list[bytes | str]) -> bytes:
    """The input that rebuilds these files (bytes, or paths of files to read sparsely)."""
    head = bytearray([len(contents) - 1])
    body = bytearray()
    for idx, item in enumerate(contents):
        if isinstance(item, str):
            size = os.path.getsize(item)
            pages = _file_pages(item, size)
        else:
            size = len(item)
            pages = ((off, item[off:off + PAGE]) for off in range(0, size, PAGE))
        if size > SIZE_CAP:
            raise ValueError(f"file of {size} bytes is larger than the fuzz cap {SIZE_CAP}")
        head += size.to_bytes(4, "big")
        run_off, run = None, bytearray()

        def flush() -> None:
            nonlocal body
            data = bytes(run).rstrip(b"\0")
            if data:
                body += struct.pack(">BIH", idx, run_off, len(data)) + data

        for off, page in pages:
            for sub in range(0, len(page), GRAIN):
                piece = page[sub:sub + GRAIN]
                if not any(piece):
                    continue
                at = off + sub
                if run_off is not None and run_off + len(run) == at and len(run) + len(piece) <= MAX_RECORD:
                    run += piece
                    continue
                if run_off is not None:
                    flush()
                run_off, run = at, bytearray(piece)
        if run_off is not None:
            flush()
    return bytes(head + body)


def _file_pages(path: str, size: int):
    from dumpkit.fileio import data_extents
    fd = os.open(path, os.O_RDONLY)
    try:
        for start, end in data_extents(fd, size):
            start -= start % PAGE
            for off in range(start, end, PAGE):
                yield off, os.pread(fd, min(PAGE, size - off), off)
    finally:
        os.close(fd)
