"""Dump filtering as makedumpfile's dump levels (-d 1..31), decided from VMCOREINFO and the
dump's own memory: no vmlinux.

The walk (what makedumpfile's man page and sources describe, written here anew):
  1. SPARSEMEM: SYMBOL(mem_section) is the root array (SPARSEMEM_EXTREME: LENGTH(mem_section)
     pointers, each to a page of struct mem_section; static: the sections themselves; a kernel
     whose symbol names the pointer to the array is read through it).  Each present section's
     section_mem_map, less its flag bits, plus the section's first pfn times SIZE(page), is its
     struct page array in the vmemmap.
  2. Kernel virtual -> physical through the dump's own page tables (vmcore.kvaddr: the s390 DAT
     walk from swapper_pg_dir with 1 MiB / 2 GiB large pages, else the identity / kernel image
     rule), one walk per page table page or large page.
  3. The struct pages are read 512 at a time (the memory a scan holds is that block and the
     excluded runs); each page of the dump (a pfn in a ram or zero chunk) is classed by
     meminfo_abi.mm.MmLayout.classify: free (buddy, the block of 2**page.private pages), page cache
     (private or not), user (anonymous, hugetlbfs), and always hwpoisoned and offline pages.
     A compound head takes its 2**order pages with it; tail pages are never classed alone.
  4. Zero pages (bit 1) are the writer's business: the kdump writer leaves them out
     (exclude_zero), the ELF writer makes them file holes.

The result is a filtered view: the excluded pages become absent chunks that the dump level
explains (DumpAttrs.excluded, dump_level), so the view is complete and every writer leaves them
out (kdump: bitmap 2; ELF: outside the PT_LOADs).
"""

from __future__ import annotations

import array
import bisect
import dataclasses
import itertools
import struct
from dataclasses import dataclass, field
from typing import Callable, Iterator

from dumpkit.errors import BadInputError, DumpToolError, UsageError
from meminfo_abi import mm
from meminfo_abi.diskdump import DL_EXCLUDE_ZERO, DL_MAX
from native import nonzero_ranges, page_rows
from vmcore.kvaddr import KernelSpace
from dumpkit.ranges import clip, subtract as subtract_ranges
from vmcore.model import KIND_ABSENT, KIND_RAM, Dump, MappedSource, MemChunk

PGMM_CACHED = 512               # struct pages read at once (a power of two: compound heads are aligned)
DECIDED_MAX = 1 << 14           # single-page decisions remembered in a scan (distinct flags/_mapcount)
ALL_CLASSES = DL_MAX & ~DL_EXCLUDE_ZERO
CLASS_ORDER = (mm.CLASS_CACHE, mm.CLASS_CACHE_PRIVATE, mm.CLASS_USER, mm.CLASS_FREE, mm.CLASS_HWPOISON,
               mm.CLASS_OFFLINE)

Range = tuple[int, int]


def check_level(level: int) -> int:
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= DL_MAX:
        raise UsageError(f"dump level {level!r} is not between 0 and {DL_MAX}")
    return level


@dataclass
class PageScan:
    """What the struct page scan of one dump level left out: page runs per class."""

    level: int
    page_size: int
    max_pfn: int
    runs: dict[str, list[Range]] = field(default_factory=dict)   # class -> sorted pfn runs
    sections: int = 0                   # sections with a memory map below max_pfn
    scanned: int = 0                    # struct pages read for pages in the dump
    unreadable: list[str] = field(default_factory=list)           # struct page blocks not in the dump

    def count(self, cls: str) -> int:
        return sum(e - s for s, e in self.runs.get(cls, ()))

    @property
    def counts(self) -> dict[str, int]:
        return {c: self.count(c) for c in CLASS_ORDER}

    def excluded_pfns(self, level: int | None = None) -> list[Range]:
        """Merged pfn runs of every class `level` leaves out (default: the scanned level)."""
        level = self.level if level is None else level
        picked = []
        for cls, runs in self.runs.items():
            bit = mm.CLASS_BITS[cls]
            if bit is None or level & bit:
                picked.extend(runs)
        return merge_runs(picked)

    def excluded_ranges(self, level: int | None = None) -> list[Range]:
        ps = self.page_size
        return [(s * ps, e * ps) for s, e in self.excluded_pfns(level)]


def merge_runs(runs) -> list[Range]:
    """Sorted runs with every overlapping or touching pair joined."""
    out: list[list[int]] = []
    for s, e in sorted(runs):
        if out and out[-1][1] >= s:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


class _Runs:
    """Appends pfn runs, merging a run that touches the last one; 16 bytes a run (an array of
    start, end pairs), so a scan holds little more than its excluded runs."""

    def __init__(self) -> None:
        self.flat = array.array("Q")

    def add(self, s: int, e: int) -> None:
        f = self.flat
        if f and f[-1] >= s:
            f[-1] = max(f[-1], e)
        else:
            f.append(s)
            f.append(e)

    def done(self) -> list[Range]:
        f = self.flat
        return [(f[i], f[i + 1]) for i in range(0, len(f), 2)]


def _present_pfns(dump: Dump, ps: int) -> list[Range]:
    """pfn runs whose first byte is in a ram or zero chunk (makedumpfile's is_in_segs)."""
    out: list[Range] = []
    for c in dump.chunks:
        if c.kind == KIND_ABSENT:
            continue
        s, e = -(-c.start // ps), -(-c.end // ps)
        if s < e:
            if out and out[-1][1] >= s:
                out[-1] = (out[-1][0], max(out[-1][1], e))
            else:
                out.append((s, e))
    return out


class _Memmap:
    """The SPARSEMEM memory map of a dump: section -> struct page array (virtual)."""

    def __init__(self, dump: Dump, lay: mm.MmLayout, ks: KernelSpace, nsec: int):
        self.dump, self.lay, self.ks, self.nsec = dump, lay, ks, nsec

    def _read(self, virt: int, length: int) -> bytes:
        return self.ks.read(virt, length)

    def sections(self) -> Iterator[tuple[int, int]]:
        """(section number, mem_map virtual address) of every present section below nsec."""
        lay = self.lay
        root = lay.mem_section
        found = self._decode(root)
        if found is None and lay.extreme:
            # a kernel whose SYMBOL(mem_section) is the variable holding the root array's address
            try:
                (ptr,) = struct.unpack(">Q", self._read(root, 8))
            except DumpToolError as exc:
                raise BadInputError(f"mem_section at 0x{root:x} cannot be read: {exc}") from None
            found = self._decode(ptr)
        if found is None:
            raise BadInputError(f"no present memory section through SYMBOL(mem_section)=0x{root:x}: "
                                "the memory map cannot be found")
        return iter(found)

    def _decode(self, root: int) -> list[tuple[int, int]] | None:
        lay = self.lay
        spr = lay.sections_per_root
        nroots = -(-self.nsec // spr)
        out = []
        try:
            if lay.extreme:
                raw = self._read(root, 8 * nroots)
                roots = struct.unpack(f">{nroots}Q", raw)
            else:
                roots = [root + i * lay.mem_section_size for i in range(nroots)]
        except DumpToolError:
            return None
        for r, base in enumerate(roots):
            if not base:
                continue
            first = r * spr
            n = min(spr, self.nsec - first)
            try:
                block = self._read(base, n * lay.mem_section_size)
            except DumpToolError:
                return None
            for i in range(n):
                o = i * lay.mem_section_size + lay.section_mem_map_offset
                (smm,) = struct.unpack_from(">Q", block, o)
                mem_map = lay.decode_mem_map(smm, first + i)
                if mem_map is not None:
                    out.append((first + i, mem_map))
        if not out:
            return None
        try:                                # the first map must translate, else this was no root array
            self.ks.v2p(out[0][1])
        except DumpToolError:
            return None
        return out


class _Pieces:
    """Physical runs laid end to end, kept as the pieces read (no copy into one buffer).  A run
    read before in the same scan is not read again: a memory map may map one physical block at
    many virtual places (struct pages all alike), a kernel's does not."""

    CACHED_MIN, CACHED_MAX, CACHED_RUNS = 64 << 10, 1 << 20, 16     # large runs only: 16 MiB at most
    GAP, SPAN = 16 << 10, 1 << 20         # runs this close are read together, up to SPAN bytes

    def __init__(self, offsets: list[int], pieces: list[memoryview]):
        self.offsets, self.pieces = offsets, pieces

    @classmethod
    def read(cls, dump: Dump, runs: list[tuple[int, int]], cache: dict) -> "_Pieces":
        offsets: list[int] = []
        pieces: list = []
        o = 0
        todo: list[tuple[int, int, int]] = []       # (physical, length, index) still to read
        for p, n in runs:
            piece = cache.get((p, n)) if n >= cls.CACHED_MIN else None
            if piece is None:
                todo.append((p, n, len(pieces)))
            offsets.append(o)
            pieces.append(piece)
            o += n
        # runs close to each other (the pages of a memory map are often allocated together, in
        # any order) are read in one go
        todo.sort()
        i = 0
        while i < len(todo):
            start, end = todo[i][0], todo[i][0] + todo[i][1]
            j = i + 1
            while (j < len(todo) and todo[j][0] - end <= cls.GAP
                   and max(end, todo[j][0] + todo[j][1]) - start <= cls.SPAN):
                end = max(end, todo[j][0] + todo[j][1])
                j += 1
            span = None
            if j > i + 1:
                try:
                    span = memoryview(dump.read(start, end - start))
                except DumpToolError:                  # a gap not in the dump: run by run
                    span = None
            for p, n, k in todo[i:j]:
                piece = span[p - start:p - start + n] if span is not None else memoryview(dump.read(p, n))
                pieces[k] = piece
                if cls.CACHED_MIN <= n <= cls.CACHED_MAX:
                    if len(cache) >= cls.CACHED_RUNS:
                        cache.clear()
                    cache[(p, n)] = piece
            i = j
        return cls(offsets, pieces)

    def get(self, start: int, end: int):
        """Bytes [start, end) (a view where one piece holds them)."""
        offsets, pieces = self.offsets, self.pieces
        i = max(bisect.bisect_right(offsets, start) - 1, 0)
        o, piece = offsets[i], pieces[i]
        if o + len(piece) >= end:
            return piece[start - o:end - o]
        buf = bytearray(end - start)
        while i < len(offsets) and offsets[i] < end:
            o, piece = offsets[i], pieces[i]
            s, e = max(o, start), min(o + len(piece), end)
            buf[s - start:e - start] = piece[s - o:e - o]
            i += 1
        return buf


def scan_pages(dump: Dump, level: int, progress: Callable[[int], None] | None = None) -> PageScan:
    """The pages `level` leaves out by class (not zero pages: those are the writer's), reading
    only VMCOREINFO, the memory map and the page tables from the dump."""
    scan, steps = start_scan(dump, level, progress)
    for _step in steps:
        pass
    return scan


def start_scan(dump: Dump, level: int, progress: Callable[[int], None] | None = None
               ) -> tuple[PageScan, Iterator[tuple[int, list[Range]]]]:
    """scan_pages as it goes: (the scan, filled in as the steps run; the steps).  Each step is
    (pfn, the excluded runs found since the step before), every excluded page below pfn found
    by then; the last step's pfn is max_pfn.  A writer takes the steps as it goes through memory
    (writer.write_kdump's `exclusions`), so the scan of the next memory section runs while the
    pages of the last one are compressed."""
    check_level(level)
    dump.fill_vmcoreinfo_from_memory()
    ps = dump.attrs.page_size or 4096
    max_pfn = -(-dump.size // ps)
    scan = PageScan(level=level, page_size=ps, max_pfn=max_pfn)
    lay = ks = None
    if level & ALL_CLASSES:       # what the scan needs is checked now, before a writer starts
        lay = mm.MmLayout.from_vmcoreinfo(dump.attrs.vmcoreinfo, ps)
        ks = KernelSpace(dump) if lay.scans_at(level) else None
    steps = _scan_steps(dump, level, scan, progress, lay, ks)
    # the first step now: what it reads first (the mem_section root) fails before a writer starts
    return scan, itertools.chain([next(steps)], steps)


def _scan_steps(dump: Dump, level: int, scan: PageScan, progress: Callable[[int], None] | None,
                lay: "mm.MmLayout | None", ks: KernelSpace | None) -> Iterator[tuple[int, list[Range]]]:
    ps, max_pfn = scan.page_size, scan.max_pfn
    if lay is None or ks is None:
        yield max_pfn, []
        return
    pps = lay.pages_per_section
    nsec = min(lay.nr_mem_sections, -(-max_pfn // pps))
    present = _present_pfns(dump, ps)
    pstarts = [s for s, _ in present]
    runs = {c: _Runs() for c in CLASS_ORDER}
    pstruct, names = lay.page_struct()
    sz = lay.page_struct_size
    i_flags, i_map = names.index("flags"), names.index("mapping")
    i_mc = names.index("_mapcount") if "_mapcount" in names else None
    i_priv = names.index("private") if "private" in names else None
    i_head = names.index("compound_head") if "compound_head" in names else None
    # the fast path: a page with none of these flags, no anon mapping and no page type is kept
    hot_flags = 0
    for name in ("PG_lru", "PG_swapcache", "PG_hwpoison", "PG_buddy"):
        if name in lay.pg:
            hot_flags |= 1 << lay.pg[name]
    hot_flags |= lay.pg.get("PG_head_mask", 0)
    exact_types = {t.value for t in lay.types.values() if not t.top_byte}
    top_types = {(t.value & mm.U32) >> 24 for t in lay.types.values() if t.top_byte}
    max_order = lay.free_area_orders
    Fields = mm.PageFields

    # an all-zero struct page (a hole in the memory map's pages) takes the fast path: such rows
    # are found by the native zero scan and only counted, never decoded one by one
    zero_row = pstruct.unpack(bytes(sz))
    zeros_fast = not zero_row[i_flags] & hot_flags and not zero_row[i_map] & 1 and (
        i_mc is None or zero_row[i_mc] not in exact_types and (zero_row[i_mc] & mm.U32) >> 24 not in top_types)
    unpack_row = pstruct.unpack_from
    cache: dict = {}
    head_mask = lay.pg.get("PG_head_mask", 0)
    offsets = [lay.off[n] if n in names else -1 for n in ("flags", "mapping", "_mapcount", "compound_head")]
    row_fields = (*offsets, hot_flags, sorted(exact_types), sorted(top_types))
    run_cls: str | None = None            # the excluded run being grown, added when it ends
    fresh: list[Range] = []               # excluded runs not handed out by a step yet
    run_start = run_end = 0
    decided: dict = {}                    # (flags, anon bit, _mapcount) -> (class, buddy) of single pages

    for secnr, mem_map in _Memmap(dump, lay, ks, nsec).sections():
        p0 = secnr * pps
        p1 = min(p0 + pps, max_pfn)
        if p0 >= p1:
            continue
        scan.sections += 1
        skip_to = p0
        # the struct pages of the section's present pfns, read at once (one page table walk per
        # mapping, not per block); None: read block by block, naming the blocks that fail
        k = bisect.bisect_right(pstarts, p0) - 1
        k = max(k, 0)
        lo = hi = None
        while k < len(present) and present[k][0] < p1:
            if present[k][1] > p0:
                lo = max(present[k][0], p0) if lo is None else lo
                hi = min(present[k][1], p1)
            k += 1
        section = None
        if lo is not None:
            lo -= lo % PGMM_CACHED                # whole blocks, as the block reads below
            hi = min(p1, -(-hi // PGMM_CACHED) * PGMM_CACHED)
            try:
                section = _Pieces.read(dump, ks.phys_runs(mem_map + (lo - p0) * sz, (hi - lo) * sz), cache)
            except DumpToolError:
                section = None
        for b in range(p0, p1, PGMM_CACHED):
            be = min(b + PGMM_CACHED, p1)
            if be <= skip_to:
                continue
            # any page of this block in the dump?
            k = bisect.bisect_right(pstarts, be - 1) - 1
            if k < 0 or present[k][1] <= b:
                continue
            if section is not None:
                buf = section.get((b - lo) * sz, (be - lo) * sz)
            else:
                try:
                    buf = b"".join(dump.read(p, n) for p, n in ks.phys_runs(mem_map + (b - p0) * sz, (be - b) * sz))
                except DumpToolError as exc:
                    scan.unreadable.append(f"struct pages of pfn 0x{b:x}-0x{be - 1:x}: {exc}")
                    continue
            if progress is not None:
                progress((be - b) * ps)
            nrows = be - b
            view = memoryview(buf)
            # the present pfns of the block, in runs
            k = max(bisect.bisect_right(pstarts, b) - 1, 0)
            while k < len(present) and present[k][0] < be:
                a, z = max(present[k][0], b), min(present[k][1], be)
                k += 1
                if a >= z:
                    continue
                if zeros_fast:
                    busy = [(a + s // sz, a + e // sz) for s, e in nonzero_ranges(buf[(a - b) * sz:(z - b) * sz], sz)]
                else:
                    busy = [(a, z)]
                cursor = a
                for rs, re_ in busy:
                    scan.scanned += max(0, rs - max(cursor, skip_to))     # zero rows: kept
                    cursor = re_
                    start = max(rs, skip_to)
                    if start >= re_:
                        continue
                    skipped = 0                           # rows of this run a free block covered
                    # the rows that may be left out (not tails; a hot flag, anon, a page type),
                    # found in C; every other row is kept
                    for i in page_rows(view[(start - b) * sz:(re_ - b) * sz], sz, *row_fields):
                        pfn = start + i
                        if pfn < skip_to:
                            continue
                        j = pfn - b
                        row = unpack_row(view, j * sz)
                        flags = row[i_flags]
                        mapping = row[i_map]
                        mc = row[i_mc] if i_mc is not None else None
                        head = row[i_head] if i_head is not None else 0
                        private = row[i_priv] if i_priv is not None else None
                        order = 0
                        if flags & head_mask and j + 1 < nrows and pfn % PGMM_CACHED < PGMM_CACHED - 1:
                            p = Fields(flags, mapping, mc, private, head)
                            order, hugetlb = lay.compound_info(p, bytes(view[(j + 1) * sz:(j + 2) * sz]))
                            if order >= 64 or pfn & ((1 << order) - 1):
                                order = 0
                            cls, buddy = lay.classify(p, level, hugetlb), lay.is_buddy(p)
                        else:
                            # a single page's class follows from its flags, anon bit and
                            # _mapcount alone: decided once per such triple
                            key = (flags, mapping & mm.PAGE_MAPPING_ANON, mc)
                            got = decided.get(key)
                            if got is None:
                                if len(decided) >= DECIDED_MAX:
                                    decided.clear()
                                p = Fields(flags, mapping, mc, private, head)
                                got = decided[key] = (lay.classify(p, level), lay.is_buddy(p))
                            cls, buddy = got
                        if cls is None:
                            continue
                        n = 1 << order
                        if cls == mm.CLASS_FREE:
                            if buddy:
                                if max_order is not None and private >= max_order:
                                    continue              # an order no free list has: left in, as makedumpfile
                                n = 1 << private
                            else:                         # unaccepted memory: always a MAX_ORDER block
                                n = 1 << ((max_order or 11) - 1)
                        end = min(pfn + n, max_pfn)
                        if cls == run_cls and pfn <= run_end:  # pages of one class side by side: one run
                            run_end = max(run_end, end)
                        else:
                            if run_cls is not None:
                                runs[run_cls].add(run_start, run_end)
                                fresh.append((run_start, run_end))
                            run_cls, run_start, run_end = cls, pfn, end
                        if n > 1:
                            skipped += min(end, re_) - pfn - 1
                            skip_to = end
                            if end >= re_:
                                break
                    scan.scanned += re_ - start - skipped
                scan.scanned += max(0, z - max(cursor, skip_to))
        if run_cls is not None:
            runs[run_cls].add(run_start, run_end)
            fresh.append((run_start, run_end))
            run_cls = None
        yield p1, fresh
        fresh = []
    scan.runs = {c: r.done() for c, r in runs.items()}
    yield max_pfn, fresh


# ---------------------------------------------------------------------------------------------
# the filtered view
# ---------------------------------------------------------------------------------------------

class _SourceRanges:
    """A source's data ranges, asked once (a filtered chunk is cut into thousands of pieces, and
    a source may answer each question with system calls, SEEK_DATA/SEEK_HOLE for instance)."""

    def __init__(self, src, size: int):
        self.src, self.size = src, size
        self.starts: list[int] | None = None
        self.ranges: list[Range] = []

    def between(self, s: int, e: int) -> Iterator[Range]:
        if self.starts is None:
            self.ranges = list(self.src.data_ranges(0, self.size))
            self.starts = [a for a, _b in self.ranges]
        i = max(bisect.bisect_right(self.starts, s) - 1, 0)
        yield from clip(self.ranges[i:bisect.bisect_left(self.starts, e)], s, e)


def _sub_source(src, base: int, size: int, known: _SourceRanges | None = None) -> MappedSource:
    def read(o: int, n: int) -> bytes:
        return src.read(base + o, n)

    def ranges(s: int, e: int):
        for a, b in (known.between(base + s, base + e) if known is not None
                     else src.data_ranges(base + s, base + e)):
            yield a - base, b - base
    return MappedSource(read, size, ranges, name=getattr(src, "name", "source"))


def apply_exclusion(dump: Dump, excluded: list[Range], level: int) -> Dump:
    """A view of `dump` whose `excluded` physical ranges are absent, explained by `level`.  Closing
    the view leaves `dump` open; the view reads through it while it is."""
    chunks: list[MemChunk] = []
    new_excl: list[Range] = []
    for c in dump.chunks:
        if c.kind == KIND_ABSENT:
            chunks.append(c)
            continue
        i = bisect.bisect_right(excluded, (c.start, 1 << 64)) - 1
        i = max(i, 0)
        cut = []
        while i < len(excluded) and excluded[i][0] < c.end:
            s, e = max(excluded[i][0], c.start), min(excluded[i][1], c.end)
            if s < e:
                cut.append((s, e))
            i += 1
        if not cut:       # the view's chunks read through the dump's sources, never close them
            chunks.append(MemChunk(c.start, c.size, _sub_source(c.source, 0, c.size), c.kind)
                          if c.kind == KIND_RAM else c)
            continue
        keep = subtract_ranges([(c.start, c.end)], cut)
        pieces = [(s, e, True) for s, e in keep] + [(s, e, False) for s, e in cut]
        known = _SourceRanges(c.source, c.size) if c.kind == KIND_RAM else None
        for s, e, kept in sorted(pieces):
            if not kept:
                chunks.append(MemChunk(s, e - s, None, KIND_ABSENT))
            elif c.kind == KIND_RAM:
                chunks.append(MemChunk(s, e - s, _sub_source(c.source, s - c.start, e - s, known), KIND_RAM))
            else:
                chunks.append(MemChunk(s, e - s, None, c.kind))
        new_excl.extend(cut)
    return Dump(chunks, dump.cpus, filtered_attrs(dump, new_excl, level))


def filtered_attrs(dump: Dump, excluded: list[Range], level: int):
    """`dump`'s attributes once `level` left out the physical `excluded` ranges of its memory."""
    attrs = dataclasses.replace(dump.attrs, extra=dict(dump.attrs.extra))
    attrs.dump_level = level | (dump.attrs.dump_level or 0)
    attrs.excluded = merge_runs(list(dump.attrs.excluded) + subtract_ranges(excluded, dump.absent_ranges()))
    return attrs


def filter_dump(dump: Dump, level: int, progress: Callable[[int], None] | None = None) -> tuple[Dump, PageScan]:
    """The dump as `level` keeps it, and the scan that decided it.  The view reads through
    `dump` (the caller keeps and closes it); its excluded pages are filtered, not missing."""
    scan = scan_pages(dump, level, progress)
    return apply_exclusion(dump, scan.excluded_ranges(), level), scan


# ---------------------------------------------------------------------------------------------
# the kernel's own count of free pages
# ---------------------------------------------------------------------------------------------

def kernel_free_pages(dump: Dump) -> int | None:
    """The zones' NR_FREE_PAGES counters summed (zone.vm_stat of contig_page_data's zones), as
    the kernel counts its free pages; None when VMCOREINFO lacks the keys.  The per-CPU deltas not
    yet folded into the zone counters (at most the stat threshold, 125 pages, per CPU and zone)
    are not in it."""
    dump.fill_vmcoreinfo_from_memory()
    vi = dump.attrs.vmcoreinfo
    if vi is None:
        return None
    pgdat, nr_zones = vi.symbol("contig_page_data"), vi.offset("pglist_data.nr_zones")
    zones, zone_size = vi.offset("pglist_data.node_zones"), vi.size("zone")
    vm_stat, item = vi.offset("zone.vm_stat"), vi.number("NR_FREE_PAGES")
    if None in (pgdat, nr_zones, zones, zone_size, vm_stat, item):
        return None
    ks = KernelSpace(dump)
    (n,) = struct.unpack(">i", ks.read(pgdat + nr_zones, 4))
    if not 0 <= n <= 8:
        raise BadInputError(f"contig_page_data.nr_zones is {n}: not a zone count")
    total = 0
    for z in range(n):
        (v,) = struct.unpack(">q", ks.read(pgdat + zones + z * zone_size + vm_stat + 8 * item, 8))
        total += v
    return total


# ---------------------------------------------------------------------------------------------
# --mem-usage
# ---------------------------------------------------------------------------------------------

MEM_USAGE_ROWS = (
    ("ZERO", "zero", True, "Pages filled with zero"),
    ("NON_PRI_CACHE", mm.CLASS_CACHE, True, "Cache pages without private flag"),
    ("PRI_CACHE", mm.CLASS_CACHE_PRIVATE, True, "Cache pages with private flag"),
    ("USER", mm.CLASS_USER, True, "User process pages"),
    ("FREE", mm.CLASS_FREE, True, "Free pages"),
    ("OFFLINE", "offline_hwpoison", True, "Offline and hwpoisoned pages (left out at every level that scans)"),
    ("KERN_DATA", "kernel", False, "Dumpable kernel data"),
)


def _overlap(runs: list[Range], s: int, e: int) -> int:
    """Pages of [s, e) inside the sorted, disjoint runs."""
    i = max(0, bisect.bisect_right(runs, (s, 1 << 64)) - 1)
    n = 0
    while i < len(runs) and runs[i][0] < e:
        a, b = max(runs[i][0], s), min(runs[i][1], e)
        if a < b:
            n += b - a
        i += 1
    return n


def mem_usage(dump: Dump, progress: Callable[[int], None] | None = None) -> dict:
    """Pages by class and the bytes each dump level 0..31 keeps, without writing (one scan of
    the struct pages and one read of the memory for the zero pages)."""
    scan = scan_pages(dump, ALL_CLASSES, progress)
    ps = scan.page_size
    present = _present_pfns(dump, ps)
    total = sum(e - s for s, e in present)
    counts = scan.counts
    # non-zero pages per class, and in none; every other page of the dump is zero
    nonzero = {c: 0 for c in CLASS_ORDER}
    nonzero_kernel = 0
    for addr, data in dump.iter_data():
        for s, e in nonzero_ranges(data, ps):
            p0, p1 = (addr + s) // ps, -(-(addr + e) // ps)
            inside = 0
            for c in CLASS_ORDER:
                k = _overlap(scan.runs.get(c, []), p0, p1)
                nonzero[c] += k
                inside += k
            nonzero_kernel += p1 - p0 - inside
    classed = sum(counts.values())
    kernel = total - classed
    zero_kernel = kernel - nonzero_kernel
    zero_in = {c: counts[c] - nonzero[c] for c in CLASS_ORDER}
    levels = []
    for level in range(DL_MAX + 1):
        out = 0
        for c in CLASS_ORDER:
            bit = mm.CLASS_BITS[c]
            if bit is None and level & ALL_CLASSES or bit is not None and level & bit:
                out += counts[c]
            elif level & DL_EXCLUDE_ZERO:
                out += zero_in[c]
        if level & DL_EXCLUDE_ZERO:
            out += zero_kernel
        levels.append({"dump_level": level, "pages": total - out, "bytes": (total - out) * ps})
    rows = {"zero": zero_kernel, mm.CLASS_CACHE: counts[mm.CLASS_CACHE],
            mm.CLASS_CACHE_PRIVATE: counts[mm.CLASS_CACHE_PRIVATE], mm.CLASS_USER: counts[mm.CLASS_USER],
            mm.CLASS_FREE: counts[mm.CLASS_FREE],
            "offline_hwpoison": counts[mm.CLASS_OFFLINE] + counts[mm.CLASS_HWPOISON],
            "kernel": kernel - zero_kernel}
    try:
        kfree = kernel_free_pages(dump)
    except DumpToolError:
        kfree = None
    return {"page_size": ps, "total_pages": total, "sections": scan.sections, "scanned": scan.scanned,
            "unreadable": scan.unreadable, "kernel_free_pages": kfree,
            "classes": [{"type": t, "class": k, "pages": rows[k], "excludable": x, "description": d}
                        for t, k, x, d in MEM_USAGE_ROWS],
            "levels": levels}
