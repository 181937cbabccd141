"""The kdump-compressed file `vmcore mount -f kdump` serves: what the writer writes with
`compress="none"`, laid out from the writer's own plan (writer.py) without reading memory;
headers, bitmaps and page descriptors computed per read from the page runs."""

from __future__ import annotations

import bisect
import struct
from itertools import accumulate

from dumpkit.errors import DumpIOError
from dumpkit.ranges import Range
from meminfo_abi import diskdump as dd
from vmcore.formats.kdump.writer import _data_runs, _header_bytes, _present_runs, data_page_runs, plan_kdump
from vmcore.model import PAGE_SIZE, Dump


class LazyKdump:
    """The file `write_kdump(dump, path, compress="none")` writes, laid out without reading memory:
    `head` (header, sub-header and notes: every byte before bitmap 1) is computed here, bitmap
    and descriptor bytes are computed for each call from the page runs (memory proportional to
    the runs, not to the pages), and the pages' file offsets map back to the pfns whose memory
    the caller reads (`data_pfns`).

    Uncompressed with zero pages kept, the writer decides a page is data by the dump's data
    ranges alone, so the descriptor of each page follows from counting runs: pages outside every
    data range share the zero page (the first page of the data area), data pages follow it in pfn
    order, and missing pages have empty descriptors."""

    def __init__(self, dump: Dump, *, byteorder: str = ">", timestamp=None, allow_incomplete: bool = False):
        ps = dump.attrs.page_size or PAGE_SIZE
        runs, missing, absent = _present_runs(dump, ps, allow_incomplete)
        lay, notes = plan_kdump(dump, byteorder=byteorder, runs=runs, missing=missing, absent=absent)
        head, sub = _header_bytes(dump, lay, timestamp)
        self.lay, self.ps = lay, ps
        front = bytearray(lay.offset_bitmap1)
        front[:len(head)] = head
        front[ps:ps + len(sub) + len(notes)] = sub + notes
        self.head = bytes(front)
        self.half = lay.bitmap_blocks // 2 * ps
        self.bitmap1 = runs
        self.bitmap2 = _data_runs(dump, ps, lay.start_pfn, lay.end_pfn, missing)
        self._b1_starts = [a for a, _b in runs]
        self._b2_pairs = [(a, b) for a, b, _m in self.bitmap2]
        self._b2_starts = [a for a, _b, _m in self.bitmap2]
        self._b2_ranks = list(accumulate((b - a for a, b, _m in self.bitmap2), initial=0))
        held = [(a, b) for a, b, lost in self.bitmap2 if not lost]
        self.data = data_page_runs(dump, held, ps)
        self._d_starts = [a for a, _b in self.data]
        self._d_index = list(accumulate((b - a for a, b in self.data), initial=0))
        lay.num_dumpable = self._b2_ranks[-1]
        if lay.num_dumpable != lay.desc_slots:
            raise DumpIOError("the page runs and the descriptor table disagree")    # pragma: no cover
        lay.pages_raw = self._d_index[-1]
        lay.pages_zero = sum(b - a for a, b in held) - lay.pages_raw
        lay.file_size = lay.offset_data + ps * (1 + lay.pages_raw)
        self.size = lay.file_size
        self.desc_struct = dd.layouts(byteorder).page_desc_struct
        self.zero_desc = self.desc_struct.pack(lay.offset_data, ps, 0, 0)

    def bitmap(self, which: int, offset: int, length: int) -> bytes:
        """Bytes [offset, offset + length) of bitmap 1 or 2."""
        buf = bytearray(length)
        first, last = offset * 8, (offset + length) * 8
        runs, starts = (self.bitmap1, self._b1_starts) if which == 1 else (self._b2_pairs, self._b2_starts)
        i = max(bisect.bisect_right(starts, first) - 1, 0)
        while i < len(runs) and runs[i][0] < last:
            dd.bitmap_set_run(buf, first, runs[i][0], runs[i][1])
            i += 1
        return bytes(buf)

    def descriptors(self, first: int, count: int) -> bytes:
        """The page descriptors of ranks [first, first + count)."""
        out: list[bytes] = []
        r, end = first, min(first + count, self.lay.num_dumpable)
        i = max(bisect.bisect_right(self._b2_ranks, r) - 1, 0)
        while r < end:
            a, b, lost = self.bitmap2[i]
            r0 = self._b2_ranks[i]
            upto = min(end, r0 + b - a)
            if lost:
                out.append(bytes(dd.PAGE_DESC_SIZE * (upto - r)))
            else:
                out.append(self._held_descriptors(a + r - r0, a + upto - r0))
            r = upto
            i += 1
        data = b"".join(out)
        return data + bytes(count * dd.PAGE_DESC_SIZE - len(data))

    def _held_descriptors(self, p: int, end: int) -> bytes:
        out: list[bytes] = []
        ps = self.ps
        while p < end:
            j = bisect.bisect_right(self._d_starts, p) - 1
            if j >= 0 and p < self.data[j][1]:
                k = min(end, self.data[j][1])
                off = self.lay.offset_data + ps * (1 + self._d_index[j] + p - self.data[j][0])
                fields: list = [0] * (4 * (k - p))
                fields[0::4] = range(off, off + (k - p) * ps, ps)
                fields[1::4] = [ps] * (k - p)
                fmt = self.desc_struct.format
                out.append(struct.pack(fmt[0] + fmt[1:] * (k - p), *fields))
            else:
                k = min(end, self.data[j + 1][0]) if j + 1 < len(self.data) else end
                out.append(self.zero_desc * (k - p))
            p = k
        return b"".join(out)

    def data_pfns(self, first: int, count: int) -> list[Range]:
        """pfn runs of the data pages [first, first + count) (counted after the zero page)."""
        out: list[Range] = []
        d, end = first, min(first + count, self._d_index[-1])
        j = max(bisect.bisect_right(self._d_index, d) - 1, 0)
        while d < end:
            a, b = self.data[j]
            d0 = self._d_index[j]
            upto = min(end, d0 + b - a)
            out.append((a + d - d0, a + upto - d0))
            d = upto
            j += 1
        return out
