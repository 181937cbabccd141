"""The kexec ABI of s390: kexec_load(2)'s flags and `struct kexec_segment`,
the segment a loader hands the kernel (`LoadSegment`), the checksum the seed's
meminfo records for it, and the checks the kernel makes before it loads.

Both loaders use this: the real syscall (kexec_s390/syscall.py) and the
simulated production kernel (s390_machine/kexec.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator

from construct import Int64un, Struct

from dumpkit.errors import BadInputError, DumpIOError
from meminfo_abi.checksum import csum_partial
from meminfo_abi.meminfo import KEXEC_MAX_SEGMENTS, SEGMENT_KIND_NAMES

PAGE_SIZE = 4096
CHUNK = 1 << 20                       # streaming unit (cache-sized); a multiple of 4 keeps the running CKSM exact
SEGTAB_OFFSET = 0x2000                # table at crash base + 0x2000 (purgatory window)
SEGTAB_AREA = 0x1000
KEXEC_ON_CRASH = 0x00000001
KEXEC_ARCH_S390 = 22 << 16            # EM_S390 << 16
KEXEC_ARCH_MASK = 0xFFFF0000

KEXEC_SEGMENT_MAX = 16                # include/linux/kexec.h: what kexec_load(2) takes

# struct kexec_segment (include/uapi/linux/kexec.h), as kexec_load(2) takes it from
# user space: native byte order and pointer size (big-endian, 64-bit on s390x)
kexec_segment = Struct(
    "buf" / Int64un,          # const void *: the segment's bytes in the caller
    "bufsz" / Int64un,        # size_t
    "mem" / Int64un,          # const void *: physical destination
    "memsz" / Int64un,        # size_t: bufsz bytes, then zeros up to memsz
)



@dataclass
class LoadSegment:
    """One kexec segment: bytes from memory (`data`) or a file region (`path`, `offset`)."""

    mem: int
    memsz: int
    kind: int
    bufsz: int
    data: bytes | None = None
    path: str | None = None
    offset: int = 0
    name: str = ""

    def chunks(self, size: int = CHUNK, buffer: Callable[[], bytearray] | None = None) -> Iterator[bytes | memoryview]:
        """The buffer bytes (bufsz of them), in chunks of `size` (a multiple of 4) but the last.
        A file's chunks are read into `buffer()` (a bytearray of `size` bytes or more, the `.obj`
        of the view yielded), by default one buffer reused for every chunk."""
        if self.data is not None:
            view = memoryview(self.data)[: self.bufsz]
            for pos in range(0, self.bufsz, size):
                yield view[pos : pos + size]
            return
        assert self.path is not None
        try:
            fh = open(self.path, "rb", buffering=0)
        except OSError as exc:
            raise DumpIOError(f"cannot read {self.path}: {exc.strerror}") from None
        with fh:
            fh.seek(self.offset)
            left = self.bufsz
            reused = None
            while left > 0:
                want = min(size, left)
                if buffer is None:
                    reused = reused or bytearray(min(size, max(left, 1)))
                view = memoryview(reused if buffer is None else buffer())[:want]
                got = 0
                while got < want:
                    n = fh.readinto(view[got:])
                    if not n:
                        raise DumpIOError(f"{self.path} became shorter while loading it "
                                          f"({self.offset + self.bufsz - left + got} bytes)")
                    got += n
                yield view
                left -= want

    @property
    def kind_name(self) -> str:
        return self.name or SEGMENT_KIND_NAMES.get(self.kind, "other")


def segment_checksums(seg: LoadSegment, hasher=None) -> int:
    """CKSM over the segment as it will be in storage (buffer + zero fill); feeds `hasher` too."""
    total = 0
    for chunk in seg.chunks():
        total = csum_partial(chunk, total)
        if hasher is not None:
            hasher.update(chunk)
    if hasher is not None and seg.memsz > seg.bufsz:
        hasher.update(bytes(seg.memsz - seg.bufsz))
    return total


def validate_segments(segments: list[LoadSegment], crash_base: int, crash_size: int) -> None:
    """The kernel's checks (kimage sanity + the s390 crash-memory rules)."""
    if not segments:
        raise BadInputError("no segments to load")
    if len(segments) > KEXEC_MAX_SEGMENTS:
        raise BadInputError(f"{len(segments)} segments, kexec_load takes at most {KEXEC_MAX_SEGMENTS}")
    end = crash_base + crash_size
    window = (crash_base + SEGTAB_OFFSET, crash_base + SEGTAB_OFFSET + SEGTAB_AREA)
    spans = []
    for i, s in enumerate(segments):
        what = f"segment {i} ({s.kind_name})"
        if s.mem % PAGE_SIZE or s.memsz % PAGE_SIZE:
            raise BadInputError(f"{what} at 0x{s.mem:x}+0x{s.memsz:x} is not page aligned")
        if s.bufsz > s.memsz:
            raise BadInputError(f"{what}: buffer of 0x{s.bufsz:x} bytes is larger than memsz 0x{s.memsz:x}")
        if s.mem < crash_base or s.mem + s.memsz > end:
            raise BadInputError(
                f"{what} 0x{s.mem:x}-0x{s.mem + s.memsz - 1:x} does not fit the crashkernel memory "
                f"0x{crash_base:x}-0x{end - 1:x}: not enough crashkernel memory")
        if s.mem < window[1] and window[0] < s.mem + s.memsz:
            raise BadInputError(f"{what} overlaps the meminfo segment table window at 0x{window[0]:x}")
        if s.path is not None:
            try:
                size = os.path.getsize(s.path)
            except OSError as exc:
                raise BadInputError(f"cannot read {s.path}: {exc.strerror}") from None
            if size < s.offset + s.bufsz:
                raise BadInputError(f"{s.path} has {size} bytes, the segment needs {s.offset + s.bufsz}")
        spans.append((s.mem, s.mem + s.memsz, i))
    spans.sort()
    for (a0, a1, i), (b0, b1, j) in zip(spans, spans[1:]):
        if b0 < a1:
            raise BadInputError(f"segments {i} and {j} overlap at 0x{b0:x}")
