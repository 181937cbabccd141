"""The purgatory page of a real kdump load (kexec_load(2) with KEXEC_ON_CRASH on s390x).

The kernel takes a kdump load only with its entry point inside the crashkernel memory, and
calls that entry twice with DAT off (arch/s390/kernel/machine_kexec.c): with r2 = 0 at the
crash, to ask whether the loaded kdump kernel is still intact (0: yes), then with r2 = 1 to
start it.  The kernel's own startup_kdump (at 0x10010 of the loaded image) cannot answer the
first call: it would swap memory and boot at once.  So a real load adds one page at crash
base + 0x2000 - where the simulated production kernel keeps the segment table:

    +0x000  the segment table, byte for byte the one the simulator records
            (meminfo_abi.meminfo.KexecSegmentTable: KDSEGTAB, entry 0x10010, SHA-256,
            per segment mem, memsz, bufsz, CKSM, kind)
    +0x800  the code of purgatory.S (the kexec entry point): r2 = 0 checks the CKSM of every
            segment in the table against [mem, mem + memsz); r2 != 0 branches to
            startup_kdump at crash base + 0x10010, which swaps [0, crash size) with the
            crashkernel memory and boots the kdump kernel.

CODE is purgatory.S assembled and linked as its header says (tests/test_kexec.py assembles
it again with binutils-s390x-linux-gnu when present and compares).
"""

from __future__ import annotations

import hashlib

from meminfo_abi.kexec import SEGTAB_AREA, SEGTAB_OFFSET, LoadSegment, segment_checksums
from meminfo_abi.meminfo import (
    SEGMENT_KIND_PURGATORY, KexecSegment, KexecSegmentTable,
)

CODE_OFFSET = 0x800            # the entry point, inside the page
CODE = bytes.fromhex(
    "b9020022a774002ec010fffffbfce330100a009141101040b9020033a784001c5800101c"
    "a70e0003a7840012e34010000004e35010080004a7090000b2410004a714fffe59001018"
    "a774000941101020a737ffe8a729000007fea729000107fec01000006bd807f1"
)


def segment_table(entry: int, segments: list[LoadSegment]) -> KexecSegmentTable:
    """The table the simulator records for these segments: CKSM each, SHA-256 over all but a
    purgatory, in load order (one pass over every file)."""
    digest = hashlib.sha256()
    recorded = []
    for s in segments:
        if s.kind == SEGMENT_KIND_PURGATORY:
            csum = segment_checksums(s)
        else:
            csum = segment_checksums(s, digest)
        recorded.append(KexecSegment(s.mem, s.memsz, s.bufsz, csum, s.kind))
    return KexecSegmentTable(entry=entry, segments=recorded, sha256=digest.digest())


def purgatory_page(table: KexecSegmentTable) -> bytes:
    raw = table.to_bytes()
    if len(raw) > CODE_OFFSET:
        raise ValueError(f"segment table of {len(raw)} bytes overruns the purgatory code")
    page = bytearray(SEGTAB_AREA)
    page[: len(raw)] = raw
    page[CODE_OFFSET: CODE_OFFSET + len(CODE)] = CODE
    return bytes(page)


def add_purgatory(crash_base: int, entry: int, segments: list[LoadSegment]) -> tuple[int, list[LoadSegment], KexecSegmentTable]:
    """(kexec entry point, segments + the purgatory page, the table in it)."""
    table = segment_table(entry, segments)
    page = purgatory_page(table)
    seg = LoadSegment(mem=crash_base + SEGTAB_OFFSET, memsz=SEGTAB_AREA, kind=SEGMENT_KIND_PURGATORY,
                      bufsz=len(page), data=page, name="purgatory")
    return crash_base + SEGTAB_OFFSET + CODE_OFFSET, [*segments, seg], table
