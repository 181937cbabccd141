"""Crafted dumps that once cost minutes of CPU (issue 16): small generators, not committed files.

Each writes one file whose header claims far more work than the bytes it stores:

  note_bomb           an ELF core whose 65,000 PT_NOTE program headers all point at the same
                      996 bytes of empty notes (83 per segment, 5.4 M in all)
  flat_out_of_order   a flattened (makedumpfile -F) stream of a real kdump-compressed file cut
                      into 600,000 small records written backwards, half of them later overwritten
                      by records that straddle them
  sparse_bitmap_claim a kdump-compressed header whose two bitmaps fill a sparse file of `size`
                      bytes (16 GiB: 12 KiB on disk) and claim max_mapnr pages to match

tests/regressions/test_crafted.py runs each through `vmcore info` under the RELIABILITY.md bound
(5 s, +384 MiB); the fuzz harnesses take scaled-down copies as seeds (`*_seed`).
"""

from __future__ import annotations

import os
import random

from meminfo_abi import diskdump as dd
from meminfo_abi.elfcore import EHDR_SIZE, PHDR_SIZE, PT_LOAD, PT_NOTE, ehdr_bytes, phdr_bytes
from meminfo_abi.elfnotes import build_note

PAGE = 4096
EMPTY_NOTE = build_note(b"", 1, b"")        # n_namesz 0, n_descsz 0, n_type NT_PRSTATUS: 12 bytes


# -- the note bomb -------------------------------------------------------------------------------
def note_bomb_bytes(headers: int = 65000, notes_per_segment: int = 83) -> bytes:
    """ELF header, `headers` PT_NOTE headers over one shared note area, one PT_LOAD page."""
    notes = EMPTY_NOTE * notes_per_segment
    phnum = headers + 1
    notes_off = EHDR_SIZE + phnum * PHDR_SIZE
    load_off = -(-(notes_off + len(notes)) // PAGE) * PAGE
    ph = phdr_bytes(PT_NOTE, notes_off, 0, 0, len(notes), len(notes))
    out = bytearray(ehdr_bytes(phnum))
    out += ph * headers
    out += phdr_bytes(PT_LOAD, load_off, 0, 0, PAGE, PAGE, flags=7, align=PAGE)
    out += notes
    out += bytes(load_off - len(out))
    out += bytes(range(256)) * (PAGE // 256)
    return bytes(out)


def note_bomb(path: str, headers: int = 65000) -> str:
    with open(path, "wb") as fh:
        fh.write(note_bomb_bytes(headers))
    return path


# -- the flattened stream out of order ----------------------------------------------------------
def small_kdump_bytes(pages: int = 512, seed: int = 16) -> bytes:
    """A kdump-compressed file (raw pages, no compression) of `pages` pages of random data."""
    import tempfile

    from vmcore.formats.kdump import write_kdump
    from vmcore.model import BytesSource, Dump, DumpAttrs, KIND_RAM, MemChunk

    rnd = random.Random(seed)
    data = rnd.randbytes(pages * PAGE)
    dump = Dump([MemChunk(0, len(data), BytesSource(data), KIND_RAM)], (), DumpAttrs(format="crafted"))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k")
        write_kdump(dump, path, compress="none")
        with open(path, "rb") as fh:
            return fh.read()


def flat_records_bytes(content: bytes, piece: int = 8) -> tuple[bytes, int]:
    """The flattened stream of `content`: first every `piece`-byte record from the end of the file
    backwards with wrong bytes, then the right bytes backwards in records shifted by piece / 2, so
    every record lands in front of the ones before it and overlaps two of them.  Returns
    (stream, number of records)."""
    hdr = dd.MDF_DATA_HEADER
    out = bytearray(dd.flat_header_bytes())
    n = 0
    size = len(content)
    wrong = bytes((b ^ 0x5A) for b in range(256)) * (piece // 256 + 1)
    for off in range(size - size % piece if size % piece else size - piece, -1, -piece):
        length = min(piece, size - off)
        out += hdr.pack(off, length) + wrong[:length]
        n += 1
    half = piece // 2
    cuts = [0] + list(range(half, size, piece)) + [size]
    for a, b in reversed(list(zip(cuts, cuts[1:]))):
        out += hdr.pack(a, b - a) + content[a:b]
        n += 1
    out += dd.FLAT_END_RECORD
    return bytes(out), n


def flat_out_of_order(path: str, records: int = 600000) -> tuple[str, bytes]:
    """The stream (~15 MB for 600,000 records) and the kdump file it rebuilds."""
    piece = 8
    # two records per `piece` bytes: the content is records * piece / 2 bytes (a whole number of pages)
    pages = max(4, records * piece // 2 // PAGE)
    content = small_kdump_bytes(pages)
    # trim to the records asked for by choosing the piece size of the content we have
    stream, _ = flat_records_bytes(content, piece)
    with open(path, "wb") as fh:
        fh.write(stream)
    return path, content


# -- a bitmap claim on a sparse file ----------------------------------------------------------
def sparse_bitmap_claim(path: str, size: int = 16 << 30, byteorder: str = ">") -> str:
    """A kdump-compressed file of `size` bytes (sparse): header, sub header, and two bitmaps that
    take the rest of the file, both holes, with max_mapnr as large as they can count."""
    L = dd.layouts(byteorder)
    bs = PAGE
    sub_hdr_size = 1
    bitmap_blocks = (size // bs - 1 - sub_hdr_size) & ~1
    max_mapnr = bitmap_blocks // 2 * bs * 8
    head = L.disk_dump_header.build(dict(
        signature=dd.KDUMP_SIGNATURE, header_version=6,
        utsname=dict(sysname="Linux", nodename="crafted", release="6.1.0", version="#1", machine="s390x",
                     domainname="(none)"),
        timestamp=dict(tv_sec=0, tv_usec=0), status=0, block_size=bs, sub_hdr_size=sub_hdr_size,
        bitmap_blocks=bitmap_blocks, max_mapnr=min(max_mapnr, 0xFFFFFFFF), total_ram_blocks=0,
        device_blocks=0, written_blocks=0, current_cpu=0, nr_cpus=1))
    sub = L.kdump_sub_header.build(dict(
        phys_base=0, dump_level=1, split=0, start_pfn=0, end_pfn=0, offset_vmcoreinfo=0,
        size_vmcoreinfo=0, offset_note=0, size_note=0, offset_eraseinfo=0, size_eraseinfo=0,
        start_pfn_64=0, end_pfn_64=0, max_mapnr_64=max_mapnr))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.pwrite(fd, head.ljust(bs, b"\0"), 0)
        os.pwrite(fd, sub.ljust(bs, b"\0"), bs)
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return path
