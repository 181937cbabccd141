"""One kdump-compressed file (a whole dump or one part of a split one): its headers, its
bitmaps (scanned once into runs and a rank index), its descriptors and page data, read on demand.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import OrderedDict
from array import array
from typing import Callable, Iterator

from meminfo_abi import diskdump as dd
from meminfo_abi.elfcore import MAX_NOTES_BYTES
from meminfo_abi.vmcoreinfo import MAX_VMCOREINFO_INPUT
from dumpkit.errors import BadInputError, DumpIOError, DumpToolError, IncompleteDumpError
from dumpkit.fileio import data_extents, read_at
from dumpkit.ranges import Range, add_run, merge
from vmcore.formats.flattened import FlatFile
from vmcore.formats.kdump.codecs import BITMAP_PIECE, decompressor
from vmcore.model import ADDRESS_LIMIT, open_dump_fd, read_head

RANK_BLOCK = 4096               # bytes of bitmap 2 per rank-index entry (32768 pages)
RANK_BITS = RANK_BLOCK * 8
_RANK_ONES = b"\xff" * RANK_BLOCK
_RANK_ZEROS = bytes(RANK_BLOCK)
DESC_SCAN = 1 << 16             # descriptors looked at per read when scanning
MAX_SPAN = 8 << 20              # largest file span read at once for page data


class _PlainFile:
    truncated = False
    records = None

    def __init__(self, path: str):
        self.path = path
        self.fd = open_dump_fd(path)
        try:
            self.size = os.fstat(self.fd).st_size
        except OSError as exc:
            os.close(self.fd)
            raise DumpIOError(f"cannot stat {path}: {exc.strerror or exc}") from None

    def pread(self, length: int, offset: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        return read_at(self.fd, min(length, self.size - offset), offset, self.path)

    def data_extents(self, offset: int, length: int) -> list[Range]:
        """The ranges of [offset, offset+length) that hold data: holes of a sparse file read as
        zeros and cost nothing to skip."""
        return list(data_extents(self.fd, min(offset + length, self.size), offset))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _open_file(path: str):
    head = read_head(path, dd.MDF_HEADER_SIZE)
    if dd.is_flattened(head):
        return FlatFile(path)
    return _PlainFile(path)


class KdumpPart:
    """One kdump-compressed file: headers, bitmaps, descriptors, page data."""

    def __init__(self, path: str):
        self.path = path
        self.file = _open_file(path)
        self._b2_cache: OrderedDict[int, int] = OrderedDict()
        self._decomp: dict[int, Callable] = {}
        self.lock = threading.Lock()
        self._cache_lock = threading.Lock()
        try:
            self._read_headers()
        except BaseException:
            self.file.close()
            raise

    # -- headers ------------------------------------------------------------------------
    def _need(self, offset: int, length: int, what: str) -> bytes:
        data = self.file.pread(length, offset)
        if len(data) < length:
            raise IncompleteDumpError(f"{self.path} ends inside the {what} (file offset 0x{offset:x}+0x{length:x}, "
                                      f"file size 0x{self.file.size:x})")
        return data

    def _read_headers(self) -> None:
        head = self.file.pread(dd.DISK_DUMP_HEADER_SIZE, 0)
        if head[:dd.SIG_LEN] == dd.DISKDUMP_SIGNATURE:
            raise BadInputError(f"{self.path} is an old in-kernel diskdump file (DISKDUMP), not kdump-compressed")
        if head[:dd.SIG_LEN] != dd.KDUMP_SIGNATURE:
            raise BadInputError(f"{self.path} is not a kdump-compressed file (no KDUMP signature)")
        if len(head) < dd.DISK_DUMP_HEADER_SIZE:
            raise IncompleteDumpError(f"{self.path} ends inside the disk_dump_header ({len(head)} bytes)")
        order = dd.detect_byte_order(head)
        if order is None:
            raise BadInputError(f"{self.path}: disk_dump_header has no plausible block size, version and "
                                "bitmap size in either byte order")
        self.order = order
        L = self.L = dd.layouts(order)
        self.pack = L.page_desc_struct
        h = self.header = L.disk_dump_header.parse(head)
        bs = self.bs = h.block_size
        self.version = h.header_version
        if self.version < 1:
            raise BadInputError(f"{self.path}: header_version {self.version} has no sub header")
        sub_raw = self._need(bs, dd.KDUMP_SUB_HEADER_SIZE, "kdump_sub_header")
        sub = L.kdump_sub_header.parse(sub_raw)
        vals = {k: (sub[k] if self.version >= since else 0) for k, since in dd.SUB_HEADER_SINCE.items()}
        self.sub = vals
        self.dump_level = vals["dump_level"]
        max_mapnr = vals["max_mapnr_64"] or h.max_mapnr
        if max_mapnr * bs > ADDRESS_LIMIT:
            raise BadInputError(f"{self.path}: max_mapnr {max_mapnr} pages of {bs} bytes pass the 64-bit "
                                "address space")
        half = h.bitmap_blocks * bs // 2
        if half * 8 < max_mapnr:
            raise BadInputError(f"{self.path}: bitmap_blocks {h.bitmap_blocks} cannot hold {max_mapnr} pages")
        self.max_mapnr = max_mapnr
        if h.sub_hdr_size < 1 or h.sub_hdr_size * bs > MAX_NOTES_BYTES + bs:
            raise BadInputError(f"{self.path}: sub_hdr_size {h.sub_hdr_size} blocks is out of bounds")
        self.off_bitmap1 = (dd.DISKDUMP_HEADER_BLOCKS + h.sub_hdr_size) * bs
        self.off_bitmap2 = self.off_bitmap1 + half
        self.off_desc = self.off_bitmap1 + h.bitmap_blocks * bs
        if self.version >= 2 and vals["split"]:
            if self.version >= 6:
                s, e = vals["start_pfn_64"], vals["end_pfn_64"]
            else:
                s, e = vals["start_pfn"], vals["end_pfn"]
            # makedumpfile writes empty parts (start_pfn == end_pfn) when a set has more files than
            # its dumpable pages fill; they hold no pages and reassemble fine
            if not (0 <= s <= e) or s > max_mapnr:
                raise BadInputError(f"{self.path}: split part with pfn range {s}-{e} (max_mapnr {max_mapnr})")
            self.split = True
            self.lo, self.hi = s, min(e, max_mapnr)
        else:
            self.split = False
            self.lo, self.hi = 0, max_mapnr
        self.incomplete_flag = bool(h.status & dd.DUMP_DH_COMPRESSED_INCOMPLETE)
        lvl = self.dump_level & dd.DL_MAX
        # pages in bitmap 1 but not in bitmap 2 are zero only when nothing but zero pages was excluded
        self.zero_excluded = lvl == dd.DL_EXCLUDE_ZERO

    def notes(self) -> bytes | None:
        off, size = self.sub["offset_note"], self.sub["size_note"]
        if not size:
            return None
        if size > MAX_NOTES_BYTES or off < self.bs or off + size > self.off_bitmap1:
            raise BadInputError(f"{self.path}: notes at 0x{off:x}+0x{size:x} lie outside the sub header blocks")
        return self._need(off, size, "ELF notes")

    def vmcoreinfo(self) -> bytes | None:
        off, size = self.sub["offset_vmcoreinfo"], self.sub["size_vmcoreinfo"]
        if not size:
            return None
        if size > MAX_VMCOREINFO_INPUT or off < self.bs:
            raise BadInputError(f"{self.path}: VMCOREINFO at 0x{off:x}+0x{size:x} is out of bounds")
        return self._need(off, size, "VMCOREINFO")

    # -- bitmaps --------------------------------------------------------------------------
    def _bitmap_value(self, base: int, blk: int) -> tuple[int, int]:
        """(value, bits known) of rank block `blk` of the bitmap at `base` (bits past max_mapnr cleared)."""
        first = blk * RANK_BITS
        nbits = min(RANK_BITS, self.max_mapnr - first)
        if nbits <= 0:
            return 0, 0
        raw = self.file.pread(-(-nbits // 8), base + blk * RANK_BLOCK)
        known = min(nbits, len(raw) * 8)
        return int.from_bytes(raw, "little") & ((1 << known) - 1), known

    def _mask(self, blk: int, lo: int, hi: int) -> int:
        first = blk * RANK_BITS
        s, e = max(lo - first, 0), min(hi - first, RANK_BITS)
        if s >= e:
            return 0
        return ((1 << (e - s)) - 1) << s

    def _blocks_to_scan(self, first_blk: int, last_blk: int) -> list[Range]:
        """Rank blocks [a, b) of [first_blk, last_blk) where a bitmap holds data, and the block where
        the file ends inside either bitmap.  Every other block is a hole in both bitmaps (no page
        in either): the scan skips it, so its cost follows the bytes stored, not the bitmap size
        the header claims (a 16 GiB sparse file with 12 KiB on disk once took 18 s to scan)."""
        runs: list[Range] = []
        size = self.file.size
        for base in (self.off_bitmap1, self.off_bitmap2):
            lo_b, hi_b = base + first_blk * RANK_BLOCK, base + last_blk * RANK_BLOCK
            for s, e in self.file.data_extents(lo_b, hi_b - lo_b):
                runs.append(((s - base) // RANK_BLOCK, -(-(e - base) // RANK_BLOCK)))
            if size < hi_b:                     # what the file lacks is unknown, not zero: scan the edge
                edge = max(first_blk, (size - base) // RANK_BLOCK)
                runs.append((edge, edge + 1))
        return [(max(a, first_blk), min(b, last_blk)) for a, b in merge(runs) if a < last_blk and b > first_blk]

    def scan(self) -> None:
        """Read both bitmaps of [lo, hi): present runs, the rank index, excluded runs, where they end.

        The rank index holds one entry per rank block scanned (`rank_blocks`, the pages of bitmap 2
        before each in `ranks`); blocks skipped as holes of both bitmaps have no entry."""
        lo, hi = self.lo, self.hi
        first_blk = lo // RANK_BITS
        last_blk = -(-hi // RANK_BITS)
        blocks = array("q")
        ranks = array("q")
        present: list[Range] = []
        excluded: list[Range] = []
        unknown_from = None               # first pfn whose bitmap bits the file lacks
        total = 0
        step = BITMAP_PIECE // RANK_BLOCK
        ended = False
        for run_a, run_b in self._blocks_to_scan(first_blk, last_blk):
            for piece in range(run_a, run_b, step):
                end_blk = min(piece + step, run_b)
                n_bytes = min((end_blk - piece) * RANK_BLOCK, -(-(self.max_mapnr - piece * RANK_BITS) // 8))
                raw1 = self.file.pread(n_bytes, self.off_bitmap1 + piece * RANK_BLOCK)
                raw2 = self.file.pread(n_bytes, self.off_bitmap2 + piece * RANK_BLOCK)
                if not raw1 and not raw2:
                    if unknown_from is None:
                        unknown_from = max(lo, piece * RANK_BITS)
                    ended = True
                    break                             # the file ends before the rest of both bitmaps
                for blk in range(piece, end_blk):
                    at = (blk - piece) * RANK_BLOCK
                    first = blk * RANK_BITS
                    blocks.append(blk)
                    ranks.append(total)
                    if (lo <= first and first + RANK_BITS <= min(hi, self.max_mapnr)
                            and len(raw1) - at >= RANK_BLOCK and len(raw2) - at >= RANK_BLOCK):
                        # fast path for a whole block of one value in each bitmap (the bulk of a large
                        # machine: 17 TiB has 139264 blocks); the same result as the general path below
                        b1, b2 = raw1[at:at + RANK_BLOCK], raw2[at:at + RANK_BLOCK]
                        o1, o2 = b1 == _RANK_ONES, b2 == _RANK_ONES
                        if (o1 or b1 == _RANK_ZEROS) and (o2 or b2 == _RANK_ZEROS):
                            if o2:
                                total += RANK_BITS
                            if o1 or o2:
                                add_run(present, first, first + RANK_BITS)
                            if o1 and not o2 and not self.zero_excluded:
                                add_run(excluded, first, first + RANK_BITS)
                            continue
                    nbits = min(RANK_BITS, self.max_mapnr - first)
                    known1 = max(0, min(nbits, (len(raw1) - at) * 8))
                    known2 = max(0, min(nbits, (len(raw2) - at) * 8))
                    mask = self._mask(blk, lo, hi)
                    v1 = int.from_bytes(raw1[at:at + RANK_BLOCK], "little") & mask & ((1 << known1) - 1)
                    v2 = int.from_bytes(raw2[at:at + RANK_BLOCK], "little") & mask & ((1 << known2) - 1)
                    if known2 < nbits and unknown_from is None and first + known2 < hi:
                        unknown_from = max(lo, first + known2)
                    total += v2.bit_count()
                    for s, e in dd.int_runs(v1 | v2, RANK_BITS, first):
                        if present and present[-1][1] == s:
                            present[-1] = (present[-1][0], e)
                        else:
                            present.append((s, e))
                    if not self.zero_excluded:
                        for s, e in dd.int_runs(v1 & ~v2, RANK_BITS, first):
                            if excluded and excluded[-1][1] == s:
                                excluded[-1] = (excluded[-1][0], e)
                            else:
                                excluded.append((s, e))
            if ended:
                break
        self.rank_blocks = blocks
        self.ranks = ranks
        self.num_dumpable = total
        self.present = present
        self.excluded = excluded
        self.cut = hi if unknown_from is None else unknown_from
        self.bitmap_cut = unknown_from is not None
        if unknown_from is not None:
            # beyond the end of bitmap 2: whatever bitmap 1 still shows, else everything, is unknown
            known1_end = max(lo, min(hi, (self.file.size - self.off_bitmap1) * 8))
            tail = max(unknown_from, known1_end)
            self.unknown_tail = (tail, hi) if tail < hi else None
        else:
            self.unknown_tail = None

    def _b2(self, blk: int) -> int:
        """Bitmap 2 block `blk` (bits outside this part's range cleared), from a small LRU cache."""
        with self._cache_lock:
            v = self._b2_cache.get(blk)
            if v is not None:
                self._b2_cache.move_to_end(blk)
                return v
        v, _ = self._bitmap_value(self.off_bitmap2, blk)
        v &= self._mask(blk, self.lo, self.hi)
        with self._cache_lock:
            self._b2_cache[blk] = v
            if len(self._b2_cache) > 256:
                self._b2_cache.popitem(last=False)
        return v

    def rank(self, pfn: int) -> int:
        """Pages of bitmap 2 before `pfn`."""
        blk = pfn // RANK_BITS
        i = bisect.bisect_left(self.rank_blocks, blk)
        if i == len(self.rank_blocks):
            return self.num_dumpable
        if self.rank_blocks[i] != blk:              # a block skipped as a hole: no page in it
            return self.ranks[i]
        v = self._b2(blk)
        return self.ranks[i] + (v & ((1 << (pfn - blk * RANK_BITS)) - 1)).bit_count()

    def pfn_of_rank(self, r: int) -> int:
        i = bisect.bisect_right(self.ranks, r) - 1
        blk = self.rank_blocks[i]
        left = r - self.ranks[i]
        for s, e in dd.int_runs(self._b2(blk), RANK_BITS, blk * RANK_BITS):
            if left < e - s:
                return s + left
            left -= e - s
        raise BadInputError(f"{self.path}: bitmap 2 changed while reading")     # pragma: no cover

    def dumped_runs(self, p0: int, p1: int) -> Iterator[tuple[int, int, int]]:
        """(start, end, rank of start) of the runs of bitmap 2 in [p0, p1)."""
        blocks = self.rank_blocks
        i = bisect.bisect_left(blocks, p0 // RANK_BITS)
        last = (p1 - 1) // RANK_BITS
        while i < len(blocks) and blocks[i] <= last:
            blk = blocks[i]
            first = blk * RANK_BITS
            v = self._b2(blk)
            base = self.ranks[i]
            sel = v & self._mask(blk, p0, p1)
            for s, e in dd.int_runs(sel, RANK_BITS, first):
                yield s, e, base + (v & ((1 << (s - first)) - 1)).bit_count()
            i += 1

    # -- descriptors ----------------------------------------------------------------------
    def descs(self, r0: int, n: int) -> bytes:
        return self.file.pread(n * dd.PAGE_DESC_SIZE, self.off_desc + r0 * dd.PAGE_DESC_SIZE)

    def _find_zero_desc(self) -> None:
        """The shared zero page: the first data page, if it is raw and all zero."""
        self.zero_desc = None
        self.zero_key = None
        if not self.num_dumpable:
            return
        offset_data = self.off_desc + self.num_dumpable * dd.PAGE_DESC_SIZE
        page = self.file.pread(self.bs, offset_data)
        if len(page) == self.bs and not any(page):
            self.zero_key = (offset_data, self.bs, 0)
            self.zero_desc = self.pack.pack(offset_data, self.bs, 0, 0)
            self.zero_run = self.zero_desc * 4096

    def _skip_empty(self, d: tuple) -> bool:
        """An empty descriptor in a file flagged incomplete: a page never written, wherever it
        lies (found by _empty_descriptor_runs); the cut is looked for among the others."""
        return self.incomplete_flag and d[0] == 0 and d[1] == 0

    def _bad(self, d: tuple) -> bool:
        """A descriptor that was never written or whose data lies past the end of the file.
        In a file flagged incomplete, never-written pages may sit anywhere (a writer carrying a
        source's gaps): those are found by _empty_descriptor_runs, only data past the end cuts."""
        off, size = d[0], d[1]
        if self.incomplete_flag and off == 0 and size == 0:
            return False
        return off == 0 or off + size > self.file.size

    def _first_nonzero(self, i: int, k: int) -> tuple[int, tuple | None]:
        """(index, descriptor) of the first descriptor at i..k-1 that is not the zero page's."""
        while i < k:
            n = min(DESC_SCAN, k - i)
            buf = self.descs(i, n)
            for j, d in enumerate(self.pack.iter_unpack(buf)):
                if d[:3] != self.zero_key and not self._skip_empty(d):
                    return i + j, d
            i += n
        return k, None

    def _last_nonzero(self, k: int) -> tuple[int, tuple | None]:
        i = k
        while i > 0:
            n = min(DESC_SCAN, i)
            buf = self.descs(i - n, n)
            ds = list(self.pack.iter_unpack(buf))
            for j in range(len(ds) - 1, -1, -1):
                if ds[j][:3] != self.zero_key and not self._skip_empty(ds[j]):
                    return i - n + j, ds[j]
            i -= n
        return -1, None

    def find_cut(self) -> None:
        """Set self.cut to the first pfn whose page is not in the file (or hi)."""
        self._find_zero_desc()
        k = self.num_dumpable
        avail = max(0, (self.file.size - self.off_desc) // dd.PAGE_DESC_SIZE)
        k_avail = min(k, avail)
        t = k_avail
        j, d = self._last_nonzero(k_avail)
        if d is not None and self._bad(d):
            # bad descriptors form a suffix of the non-zero ones: bisect for the first
            lo, hi = 0, j
            while lo < hi:
                mid = (lo + hi) // 2
                jj, dm = self._first_nonzero(mid, j + 1)
                if dm is None or self._bad(dm):
                    hi = mid
                else:
                    lo = jj + 1
            t = self._first_nonzero(lo, j + 1)[0]
        self.first_bad_rank = t if t < k else None
        if t < k:
            self.cut = min(self.cut, self.pfn_of_rank(t))
        self.never_written = self._empty_descriptor_runs() if self.incomplete_flag else []

    def _empty_descriptor_runs(self) -> list[Range]:
        """pfn runs below the cut whose descriptors are empty: pages a writer flagged incomplete
        never wrote (only looked for when the status says incomplete: it reads every descriptor)."""
        out: list[Range] = []
        empty = bytes(dd.PAGE_DESC_SIZE)
        if self.cut <= self.lo:
            return out
        for s, e, r in self.dumped_runs(self.lo, self.cut):
            pos = s
            while pos < e:
                n = min(DESC_SCAN, e - pos)
                buf = self.descs(r + pos - s, n)
                k = buf.find(empty)
                while k != -1:
                    if k % dd.PAGE_DESC_SIZE == 0:
                        add_run(out, pos + k // dd.PAGE_DESC_SIZE, pos + k // dd.PAGE_DESC_SIZE + 1)
                        k = buf.find(empty, k + dd.PAGE_DESC_SIZE)
                    else:
                        k = buf.find(empty, k + 1)
                pos += n
        return out

    # -- page data ------------------------------------------------------------------------
    def _decompress(self, flag: int) -> Callable:
        fn = self._decomp.get(flag)
        if fn is None:
            fn = self._decomp[flag] = decompressor(flag, self.bs)
        return fn

    def read_pages(self, p0: int, p1: int) -> bytearray:
        """Pages [p0, p1) (all inside this part's data); pages not in bitmap 2 are zero."""
        bs = self.bs
        out = bytearray((p1 - p0) * bs)
        todo = []                                   # (out position, offset, size, flags, pfn)
        with self.lock:
            for s, e, r in self.dumped_runs(p0, p1):
                buf = self.descs(r, e - s)
                if len(buf) < (e - s) * dd.PAGE_DESC_SIZE:
                    pfn = s + len(buf) // dd.PAGE_DESC_SIZE
                    raise IncompleteDumpError(f"{self.path}: the descriptor of physical page 0x{pfn * bs:x} lies "
                                              f"past the end of the file")
                for i, d in enumerate(self.pack.iter_unpack(buf)):
                    if d[:3] == self.zero_key:
                        continue
                    pfn = s + i
                    off, size, flags = d[0], d[1], d[2]
                    if off == 0 and size == 0:
                        raise IncompleteDumpError(f"{self.path}: physical page 0x{pfn * bs:x} was never written "
                                                  "(its descriptor is empty)")
                    if size == 0 or size > bs or off < self.off_desc:
                        raise BadInputError(f"{self.path}: descriptor of physical page 0x{pfn * bs:x} has offset "
                                            f"0x{off:x} size {size}")
                    if flags & ~dd.DUMP_DH_COMPRESSED or (flags & (flags - 1)):
                        raise BadInputError(f"{self.path}: descriptor of physical page 0x{pfn * bs:x} has flags "
                                            f"0x{flags:x}")
                    if not flags and size != bs:
                        raise BadInputError(f"{self.path}: raw physical page 0x{pfn * bs:x} has {size} bytes, "
                                            f"not {bs}")
                    if off + size > self.file.size:
                        raise IncompleteDumpError(f"{self.path}: data of physical page 0x{pfn * bs:x} lies past "
                                                  f"the end of the file (truncated)")
                    todo.append(((pfn - p0) * bs, off, size, flags, pfn))
            spans = []
            for item in todo:
                if spans and item[1] >= spans[-1][1] and item[1] + item[2] - spans[-1][0] <= MAX_SPAN \
                        and item[1] - spans[-1][1] <= bs:
                    spans[-1][1] = max(spans[-1][1], item[1] + item[2])
                    spans[-1][2].append(item)
                else:
                    spans.append([item[1], item[1] + item[2], [item]])
            for start, end, group in spans:
                data = self.file.pread(end - start, start)
                if len(data) < end - start:
                    raise IncompleteDumpError(f"{self.path}: page data at 0x{start:x} lies past the end of the file")
                for pos, off, size, flags, pfn in group:
                    piece = data[off - start:off - start + size]
                    if flags:
                        try:
                            page = self._decompress(flags)(piece)
                        except DumpToolError:
                            raise
                        except Exception as exc:
                            raise BadInputError(f"{self.path}: physical page 0x{pfn * bs:x} does not decompress "
                                                f"({dd.COMPRESSION_NAMES[flags]}: {exc})") from None
                        if len(page) != bs:
                            raise BadInputError(f"{self.path}: physical page 0x{pfn * bs:x} decompresses to "
                                                f"{len(page)} bytes, not {bs}")
                        out[pos:pos + bs] = page
                    else:
                        out[pos:pos + bs] = piece
        return out

    def data_runs(self, p0: int, p1: int) -> Iterator[Range]:
        """pfn runs in [p0, p1) whose descriptors are not the zero page's."""
        zero = self.zero_desc
        for s, e, r in self.dumped_runs(p0, p1):
            if zero is None:
                yield s, e
                continue
            zz = self.zero_run
            done = 0
            n = e - s
            while done < n:
                m = min(DESC_SCAN, n - done)
                with self.lock:
                    buf = self.descs(r + done, m)
                have = len(buf) // dd.PAGE_DESC_SIZE
                pos = 0
                base = s + done
                while pos < have:
                    k = buf.find(zero, pos * dd.PAGE_DESC_SIZE)
                    while k != -1 and k % dd.PAGE_DESC_SIZE:
                        k = buf.find(zero, k + 1)
                    if k == -1:
                        yield base + pos, base + have
                        break
                    kk = k // dd.PAGE_DESC_SIZE
                    if kk > pos:
                        yield base + pos, base + kk
                    pos = kk + 1
                    step = 1
                    while pos < have:
                        span = min(step, have - pos)
                        if buf[pos * 24:(pos + span) * 24] == zz[:span * 24]:
                            pos += span
                            step = min(step * 2, 4096)
                        elif step == 1:
                            break
                        else:
                            step = 1
                if have < m:
                    yield base + have, base + m           # descriptors missing: let reads report it
                done += m

    def close(self) -> None:
        self.file.close()
