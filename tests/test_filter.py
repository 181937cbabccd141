"""Dump levels (makedumpfile -d) on small crafted kernels: the page classes, the SPARSEMEM walk,
the filtered view, --mem-usage and the CLI options (issue 18; real kernels against real
makedumpfile: tests/realworld/test_filter.py)."""

from __future__ import annotations

import json
import os
import struct

import pytest

from dumpkit.errors import BadInputError
from meminfo_abi import mm
from meminfo_abi.vmcoreinfo import VmcoreInfo
from tests.conftest import run_cli
from vmcore.filter import filter_dump, mem_usage, scan_pages
from vmcore.formats import write_dump
from vmcore.model import BytesSource, Dump, DumpAttrs, MemChunk, page_digests

PS = 4096
MIB = 1 << 20
SIZE_PAGE = 56                       # the 6.1 s390x struct page of the harness's kernels
OFF = {"flags": 0, "compound_head": 8, "compound_dtor": 16, "compound_order": 17, "mapping": 24, "lru": 8,
       "private": 40, "_mapcount": 48, "_refcount": 52}
PG = {"PG_lru": 4, "PG_slab": 9, "PG_swapcache": 10, "PG_private": 13, "PG_swapbacked": 19}
PG_HEAD = 1 << 16
ROOTS = 0x10000                      # the mem_section root array (SPARSEMEM_EXTREME)
SECTIONS = 0x11000                   # one page of struct mem_section
MEM_MAP = 0x20000                    # struct pages of both sections, back to back
SECTION_BITS = 23                    # 8 MiB sections: 2048 pages each
HOLE = (0xC00000, 0xD00000)          # not in the dump


def _vmcoreinfo(**extra) -> VmcoreInfo:
    vi = VmcoreInfo()
    vi.set("OSRELEASE", "6.1.0-test")
    vi.set("PAGESIZE", str(PS))
    vi.set_symbol("mem_section", ROOTS)
    vi.set_length("mem_section", 1)
    vi.set_size("mem_section", 16)
    vi.set_offset("mem_section.section_mem_map", 0)
    vi.set_number("SECTION_SIZE_BITS", SECTION_BITS)
    vi.set_number("MAX_PHYSMEM_BITS", 30)
    vi.set_size("page", SIZE_PAGE)
    for k, v in OFF.items():
        vi.set_offset(f"page.{k}", v)
    vi.set_length("zone.free_area", 11)
    for k, v in PG.items():
        vi.set_number(k, v)
    vi.set_number("PG_head_mask", PG_HEAD)
    vi.set_number("PAGE_BUDDY_MAPCOUNT_VALUE", -129)
    vi.set_number("PAGE_OFFLINE_MAPCOUNT_VALUE", -257)
    vi.set_number("HUGETLB_PAGE_DTOR", 2)
    for k, v in extra.items():
        vi.set(k, str(v))
    return vi


class Kernel:
    """16 MiB of memory with a memory map whose pages we set one by one."""

    def __init__(self) -> None:
        self.mem = bytearray(16 * MIB)
        struct.pack_into(">Q", self.mem, ROOTS, SECTIONS)
        for sec in range(2):          # section_mem_map: mem_map - first pfn * SIZE(page), present, has map
            coded = MEM_MAP
            struct.pack_into(">Q", self.mem, SECTIONS + 16 * sec,
                             coded | mm.SECTION_MARKED_PRESENT | mm.SECTION_HAS_MEM_MAP)
        for pfn in range(4096):       # _mapcount -1: no page type
            struct.pack_into(">i", self.mem, MEM_MAP + pfn * SIZE_PAGE + OFF["_mapcount"], -1)
        for addr in range(0x800000, 0x1000000, PS):
            self.mem[addr:addr + 8] = b"PAGEDATA"       # every page of the upper half holds data

    def page(self, pfn: int, flags: int = 0, mapping: int = 0, private: int = 0, mapcount: int = -1,
             head: int = 0) -> None:
        o = MEM_MAP + pfn * SIZE_PAGE
        struct.pack_into(">Q", self.mem, o, flags)
        struct.pack_into(">Q", self.mem, o + OFF["compound_head"], head)
        struct.pack_into(">Q", self.mem, o + OFF["mapping"], mapping)
        struct.pack_into(">Q", self.mem, o + OFF["private"], private)
        struct.pack_into(">i", self.mem, o + OFF["_mapcount"], mapcount)

    def compound(self, pfn: int, order: int, dtor: int = 1, **head) -> None:
        self.page(pfn, flags=head.pop("flags", 0) | PG_HEAD, **head)
        for t in range(pfn + 1, pfn + (1 << order)):
            self.page(t, head=(MEM_MAP + pfn * SIZE_PAGE) | 1)
        o = MEM_MAP + (pfn + 1) * SIZE_PAGE
        self.mem[o + OFF["compound_dtor"]] = dtor
        self.mem[o + OFF["compound_order"]] = order

    def dump(self, vi: VmcoreInfo | None = None) -> Dump:
        data = bytes(self.mem)
        attrs = DumpAttrs(format="test")
        attrs.set_vmcoreinfo((vi or _vmcoreinfo()).to_bytes(), "test")
        return Dump([MemChunk(0, HOLE[0], BytesSource(data[:HOLE[0]])),
                     MemChunk(HOLE[1], 16 * MIB - HOLE[1], BytesSource(data[HOLE[1]:]))], attrs=attrs)


def bit(name: str) -> int:
    return 1 << PG[name]


CACHE, CACHE_PRIVATE, USER_ANON, SWAPCACHE_ANON, SWAPCACHE_ONLY = 100, 101, 102, 103, 104
BUDDY, BAD_ORDER, SLAB_TYPED, OFFLINE = 128, 136, 144, 300
HUGETLB, ANON_THP, IN_HOLE, HIGH_FREE = 256, 264, HOLE[0] // PS + 16, 2100


@pytest.fixture(scope="module")
def kernel() -> Kernel:
    k = Kernel()
    k.page(CACHE, flags=bit("PG_lru"), mapping=0x5000)
    k.page(CACHE_PRIVATE, flags=bit("PG_lru") | bit("PG_private"), mapping=0x5000)
    k.page(USER_ANON, flags=bit("PG_lru"), mapping=0x6001)
    k.page(SWAPCACHE_ANON, flags=bit("PG_swapcache") | bit("PG_swapbacked"), mapping=0x6001)
    k.page(SWAPCACHE_ONLY, flags=bit("PG_swapcache"), mapping=0x5000)     # without PG_swapbacked: no cache
    k.page(BUDDY, private=3, mapcount=-129)                                # 8 free pages
    k.page(BAD_ORDER, private=11, mapcount=-129)                           # no free list has order 11: kept
    k.page(SLAB_TYPED, flags=bit("PG_slab"), mapcount=-129, mapping=0x7001)  # slab: neither free nor anon
    k.page(OFFLINE, mapcount=-257)
    k.compound(HUGETLB, 2, dtor=2, mapping=0x5000)                         # hugetlbfs: user, 4 pages
    k.compound(ANON_THP, 3, mapping=0x6001)                                # anonymous THP: 8 pages
    k.page(IN_HOLE, mapping=0x6001)                                        # not in the dump: never counted
    k.page(HIGH_FREE, private=0, mapcount=-129)                            # second section, free
    return k


def _pfns(scan) -> set[int]:
    return {p for s, e in scan.excluded_pfns() for p in range(s, e)}


EXPECTED = {
    2: {CACHE},
    4: {CACHE, CACHE_PRIVATE},
    8: {USER_ANON, SWAPCACHE_ANON, *range(HUGETLB, HUGETLB + 4), *range(ANON_THP, ANON_THP + 8)},
    16: {*range(BUDDY, BUDDY + 8), HIGH_FREE},
}


@pytest.mark.parametrize("level", [2, 4, 8, 16, 31, 6, 24])
def test_each_dump_level_leaves_out_its_classes_and_offline_pages_always(kernel, level):
    with kernel.dump() as d:
        scan = scan_pages(d, level)
    want = {OFFLINE}
    for b, pages in EXPECTED.items():
        if level & b:
            want |= pages
    assert _pfns(scan) == want
    assert scan.sections == 2 and not scan.unreadable


def test_levels_0_and_1_do_not_scan(kernel):
    with kernel.dump() as d:
        for level in (0, 1):
            assert _pfns(scan_pages(d, level)) == set()


def test_classes_are_named_and_counted(kernel):
    with kernel.dump() as d:
        scan = scan_pages(d, 31)
    assert scan.counts == {"cache": 1, "cache_private": 1, "user": 2 + 4 + 8, "free": 9, "hwpoison": 0,
                           "offline": 1}


def test_the_filtered_view_is_complete_and_reads_what_it_keeps(kernel, tmp_path):
    with kernel.dump() as d:
        view, scan = filter_dump(d, 31)
        assert view.attrs.complete and view.attrs.dump_level == 31
        assert view.attrs.excluded == scan.excluded_ranges()
        assert view.read(MEM_MAP, 16) == d.read(MEM_MAP, 16)               # a kept page
        with pytest.raises(BadInputError, match="filtered out"):
            view.read(BUDDY * PS, 8)
        assert view.attrs.filtered_text().startswith("dump level 31, 26 pages excluded")
        out = str(tmp_path / "f.kdump")
        view.write(out, "kdump")
        import vmcore
        with vmcore.open(out) as back:
            assert back.attrs.complete and back.attrs.dump_level == 31
            assert back.attrs.excluded == view.attrs.excluded
            assert page_digests(back) == page_digests(view)
        elf = str(tmp_path / "f.elf")
        view.write(elf, "elf")
        with vmcore.open(elf) as back:
            assert not any(c.start <= BUDDY * PS < c.end for c in back.chunks if c.kind != "absent")
            assert page_digests(back) == page_digests(view)


def test_mem_usage_counts_every_page_once(kernel):
    with kernel.dump() as d:
        usage = mem_usage(d)
    rows = {r["type"]: r["pages"] for r in usage["classes"]}
    total = (16 * MIB - (HOLE[1] - HOLE[0])) // PS
    assert usage["total_pages"] == total == sum(rows.values())
    assert (rows["NON_PRI_CACHE"], rows["PRI_CACHE"], rows["USER"], rows["FREE"], rows["OFFLINE"]) == (1, 1, 14, 9, 1)
    levels = {r["dump_level"]: r["pages"] for r in usage["levels"]}
    assert levels[0] == total and levels[16] == total - 9 - 1 and levels[8] == total - 14 - 1
    # pages with data: the upper half's (less the hole), the root array, the sections, the memory map
    with_data = (0x800000 - (HOLE[1] - HOLE[0])) // PS + 2 + -(-4096 * SIZE_PAGE // PS)
    assert levels[1] == with_data
    assert levels[31] == with_data - 1      # HIGH_FREE is the one class page with data; the rest are zero


def test_a_pointer_to_the_root_array_is_followed(kernel):
    """A kernel whose SYMBOL(mem_section) names the variable holding the root array's address."""
    k = Kernel()
    k.mem[:] = kernel.mem
    struct.pack_into(">Q", k.mem, 0x30, ROOTS)          # the variable
    with k.dump(_vmcoreinfo(**{"SYMBOL(mem_section)": "30"})) as d:
        assert _pfns(scan_pages(d, 16)) == EXPECTED[16] | {OFFLINE}


def test_a_dump_without_the_memory_map_keys_is_bad_input_in_one_line(kernel):
    vi = _vmcoreinfo()
    del vi.entries["SIZE(page)"]
    with kernel.dump(vi) as d, pytest.raises(BadInputError, match=r"SIZE\(page\)"):
        scan_pages(d, 31)


def test_the_6_12_page_types_are_the_top_byte():
    buddy = mm.PageType(-268435456)                      # PGTY_buddy << 24
    assert buddy.top_byte and buddy.matches(mm._int32(0xF0000123)) and not buddy.matches(-1)
    old = mm.PageType(-129)
    assert not old.top_byte and old.matches(-129) and not old.matches(-129 & ~0x100)
    vi = _vmcoreinfo()
    for key in ("PAGE_BUDDY_MAPCOUNT_VALUE", "PAGE_OFFLINE_MAPCOUNT_VALUE", "PG_slab", "HUGETLB_PAGE_DTOR"):
        del vi.entries[f"NUMBER({key})"]
    vi.set_number("PAGE_BUDDY_MAPCOUNT_VALUE", -268435456)
    vi.set_number("PAGE_SLAB_MAPCOUNT_VALUE", mm._int32(0xF5000000))
    vi.set_number("PAGE_HUGETLB_MAPCOUNT_VALUE", mm._int32(0xF4000000))
    vi.set_number("PAGE_OFFLINE_MAPCOUNT_VALUE", mm._int32(0xF1000000))
    lay = mm.MmLayout.from_vmcoreinfo(vi)
    page = mm.PageFields(flags=0, mapping=0, mapcount=mm._int32(0xF0000005), private=2)
    assert lay.classify(page, 31) == mm.CLASS_FREE
    slab = mm.PageFields(flags=0, mapping=1, mapcount=mm._int32(0xF5000000), private=0)
    assert lay.classify(slab, 31) is None                # slab: neither free nor anon
    off = mm.PageFields(flags=0, mapping=0, mapcount=mm._int32(0xF1000000), private=0)
    assert lay.classify(off, 2) == mm.CLASS_OFFLINE
    head = mm.PageFields(flags=PG_HEAD, mapping=0, mapcount=mm._int32(0xF4000000))
    tail = bytearray(SIZE_PAGE)
    tail[7] = 9                                          # 6.9+: order in the first tail's flags
    assert lay.compound_info(head, bytes(tail)) == (9, True)


@pytest.mark.parametrize("level", [1, 2, 16, 31])
@pytest.mark.parametrize("collapse", [True, False])
def test_exclusions_taken_as_the_writer_goes_make_the_filtered_view_file(kernel, tmp_path, level, collapse,
                                                                         monkeypatch):
    """kdump written from the scan's steps (the scan of each section between the writes of the last
    one) holds what the filtered view's file holds: the same bitmaps, pages, level; where the file
    system can collapse the descriptor room the exclusions left unused, the same size too, else
    that room stays a hole."""
    import vmcore
    from vmcore.filter import start_scan
    from vmcore.formats.kdump import writer
    if not collapse:
        monkeypatch.setattr(writer, "collapse_range", lambda fd, offset, length: False)
    opts = dict(compress="zlib", timestamp=0, exclude_zero=level == 1)
    view_path, stream_path = str(tmp_path / "view.kdump"), str(tmp_path / "stream.kdump")
    with kernel.dump() as d:
        view, _scan = filter_dump(d, level)
        view_lay = write_dump(view, view_path, "kdump", **opts)
        scan, steps = start_scan(d, level)
        steps = list(steps)
        assert steps[-1][0] == 16 * MIB // PS and len(steps) == (3 if level > 1 else 1)  # a section each, the end
        scan2, steps = start_scan(d, level)
        lay = write_dump(d, stream_path, "kdump", exclusions=steps, excluding=level, **opts)
        assert scan2.excluded_pfns() == scan.excluded_pfns()
    assert lay.num_dumpable == view_lay.num_dumpable
    with open(view_path, "rb") as a, open(stream_path, "rb") as b:
        va, sb = a.read(), b.read()
    start = view_lay.offset_bitmap1
    assert va[PS:start] == sb[PS:start]                                # sub header, notes
    assert va[start:view_lay.offset_desc] == sb[start:lay.offset_desc]  # both bitmaps
    # the same data after the descriptors; they start on the block after the descriptors written,
    # or, where the unused room stays, after the room for every page
    assert len(sb) - lay.offset_data == len(va) - view_lay.offset_data
    room = -(-(lay.offset_desc + lay.desc_slots * 24) // PS) * PS
    used = -(-(lay.offset_desc + lay.num_dumpable * 24) // PS) * PS
    assert lay.offset_data == (used if collapse and room - used >= PS else room)
    with vmcore.open(view_path) as a, vmcore.open(stream_path) as b:
        assert page_digests(a) == page_digests(b) and a.attrs.excluded == b.attrs.excluded
        assert a.attrs.dump_level == b.attrs.dump_level and b.attrs.complete


def test_a_scan_that_cannot_start_fails_before_a_writer_does(kernel, tmp_path):
    """The memory map's root not in the dump: start_scan says so itself (its first step runs at
    once), so `-c -d 31 -F -o -` writes not a byte of a stream it cannot finish."""
    import io

    from vmcore.filter import start_scan
    vi = _vmcoreinfo()
    vi.set_symbol("mem_section", HOLE[0] + 0x100)
    with kernel.dump(vi) as d:
        with pytest.raises(BadInputError, match="mem_section .* cannot be read"):
            start_scan(d, 31)
        out = io.BytesIO()
        with pytest.raises(BadInputError):
            _scan, steps = start_scan(d, 31)
            write_dump(d, out, "kdump", flattened=True, exclusions=steps, excluding=31)
        assert out.getvalue() == b""


def test_cli_dump_level_on_convert_and_mem_usage(kernel, tmp_path):
    import vmcore
    src = str(tmp_path / "src.elf")
    with kernel.dump() as d:
        d.write(src, "elf")
    out = str(tmp_path / "d31.kdump")
    proc = run_cli("vmcore.cli", "convert", src, "-o", out, "-c", "-d", "31", "--json", check=True)
    res = json.loads(proc.stdout)
    assert res["dump_level"] == 31 and res["complete"] and res["format"] == "kdump"
    with vmcore.open(out) as back:
        assert back.attrs.dump_level == 31 and back.attrs.complete
        assert {p for s, e in back.attrs.excluded for p in range(s // PS, e // PS)} >= \
            EXPECTED[2] | EXPECTED[8] | EXPECTED[16] | {OFFLINE, CACHE_PRIVATE}
    usage = json.loads(run_cli("vmcore.cli", "convert", src, "--mem-usage", "--json", check=True).stdout)
    assert {r["type"] for r in usage["classes"]} >= {"ZERO", "NON_PRI_CACHE", "PRI_CACHE", "USER", "FREE"}
    assert len(usage["levels"]) == 32
    text = run_cli("vmcore.cli", "convert", src, "--mem-usage", check=True).stdout
    assert "NON_PRI_CACHE" in text and "KERN_DATA" in text
    for bad in (["-d", "32"], ["-d", "-1"]):
        proc = run_cli("vmcore.cli", "convert", src, "-o", str(tmp_path / "x"), "-f", "kdump", *bad)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    proc = run_cli("vmcore.cli", "convert", src, "-o", str(tmp_path / "x"), "-f", "s390", "-d", "31")
    assert proc.returncode == 2 and "s390" in proc.stderr
    proc = run_cli("vmcore.cli", "convert", src, "-o", str(tmp_path / "x"), "-c", "-z")
    assert proc.returncode == 2 and "one compression" in proc.stderr


def test_cli_split_and_dump_dmesg(kernel, tmp_path):
    import vmcore
    src = str(tmp_path / "src.elf")
    with kernel.dump() as d:
        d.write(src, "elf")
    parts = [str(tmp_path / f"p{i}") for i in range(3)]
    run_cli("vmcore.cli", "convert", src, "-o", ",".join(parts), "-c", "-d", "16", "--split", check=True)
    with vmcore.open(parts) as back, vmcore.open(src) as orig:
        assert back.attrs.complete and back.attrs.dump_level & 16
        assert {p for s, e in back.attrs.excluded for p in range(s // PS, e // PS)} == EXPECTED[16] | {OFFLINE}
        view, _ = filter_dump(orig, 16)
        assert page_digests(back) == page_digests(view)
    proc = run_cli("vmcore.cli", "convert", src, "-o", str(tmp_path / "one"), "-c", "--split")
    assert proc.returncode == 2 and "two or more" in proc.stderr
    proc = run_cli("vmcore.cli", "convert", src, "-o", f"{tmp_path}/a,{tmp_path}/b", "-E", "--split")
    assert proc.returncode == 2 and "kdump" in proc.stderr
    # no printk buffer in this crafted kernel: --dump-dmesg says so in one line, as vmcore dmesg does
    a = run_cli("vmcore.cli", "convert", src, "--dump-dmesg")
    b = run_cli("vmcore.cli", "dmesg", src)
    assert (a.returncode, a.stdout, a.stderr.replace("convert", "dmesg")) == (b.returncode, b.stdout, b.stderr)


def test_convert_reads_a_flattened_stream_from_standard_input(kernel, tmp_path):
    """makedumpfile -R's way: DUMP `-` is a flattened kdump stream on standard input; nothing of it is
    left behind."""
    import subprocess
    import sys

    import vmcore
    from tests.conftest import ROOT
    src = str(tmp_path / "src.elf")
    with kernel.dump() as d:
        d.write(src, "elf")
    flat = str(tmp_path / "s.flat")
    with open(flat, "wb") as fh:
        proc = subprocess.run([sys.executable, "-m", "vmcore.cli", "convert", src, "-o", "-", "-c", "-d", "31"],
                              stdout=fh, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = str(tmp_path / "out" / "r.kdump")
    (tmp_path / "out").mkdir()
    with open(flat, "rb") as fh:
        proc = subprocess.run([sys.executable, "-m", "vmcore.cli", "convert", "-", "-o", out, "-f", "kdump"],
                              stdin=fh, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["r.kdump"]
    with vmcore.open(out) as back, vmcore.open(flat) as orig:
        assert back.attrs.dump_level == 31 and back.attrs.excluded == orig.attrs.excluded
        assert page_digests(back) == page_digests(orig)
    with open(os.devnull, "rb") as fh:
        proc = subprocess.run([sys.executable, "-m", "vmcore.cli", "convert", "-", "-o", out + "2", "-f", "kdump"],
                              stdin=fh, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 3 and "empty" in proc.stderr and proc.stderr.count("\n") == 1


def test_the_compound_order_per_kernel_generation():
    """6.1: compound_order / compound_dtor bytes of the first tail; 6.6+: the low byte of its flags
    (PG_hugetlb there, or 6.9+ the head's hugetlb page type)."""
    head = mm.PageFields(flags=PG_HEAD, mapping=0, mapcount=-1)
    tail = bytearray(SIZE_PAGE)
    tail[OFF["compound_order"]], tail[OFF["compound_dtor"]] = 4, 2
    assert mm.MmLayout.from_vmcoreinfo(_vmcoreinfo()).compound_info(head, bytes(tail)) == (4, True)
    vi = _vmcoreinfo()
    for key in ("OFFSET(page.compound_order)", "OFFSET(page.compound_dtor)", "NUMBER(HUGETLB_PAGE_DTOR)"):
        del vi.entries[key]
    tail = bytearray(SIZE_PAGE)
    tail[7] = 5
    assert mm.MmLayout.from_vmcoreinfo(vi).compound_info(head, bytes(tail)) == (5, False)
    vi.set_number("PG_hugetlb", 8)
    tail[6] = 1                                          # bit 8 of the tail's flags
    assert mm.MmLayout.from_vmcoreinfo(vi).compound_info(head, bytes(tail)) == (5, True)


def test_phys_runs_take_a_large_page_in_one_walk():
    """vmemmap may be mapped with 1 MiB segments or 2 GiB regions: one walk each, and one per
    page table (its pages read from its entries), contiguous pieces merged; an invalid entry
    names address and level."""
    from tests.test_backtrace import machine
    from vmcore.kvaddr import KernelSpace, TranslationError
    with machine() as d:
        ks = KernelSpace(d)
        walks = []
        real = ks.walk
        ks.walk = lambda v: walks.append(v) or real(v)
        assert ks.phys_runs(0x80000, 0x280000 - 0x1000) == [(0x80000, 0x280000 - 0x1000)]
        assert len(walks) == 2 + 1                       # two segments, then one page table (255 pages)
        walks.clear()
        assert ks.phys_runs((2 << 30) + 0x1000, 0x200000) == [(0x1000, 0x200000)]
        assert len(walks) == 1                           # one 2 GiB region frame
        with pytest.raises(TranslationError, match="page-table entry .* invalid"):
            ks.phys_runs(0x2FF000, 0x1000)
        with pytest.raises(TranslationError, match="0x2ff000: page-table entry .* invalid"):
            ks.phys_runs(0x280000, 0x80000)               # met from the page table's entries too
        pages = [(ks.v2p(v), 0x1000) for v in range(0x200000, 0x2FF000, 0x1000)]
        merged: list = []
        for p, n in pages:                               # what a walk per page gives
            if merged and merged[-1][0] + merged[-1][1] == p:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((p, n))
        assert ks.phys_runs(0x200000, 0xFF000) == merged


def test_closing_the_view_leaves_the_dump_open(kernel, tmp_path):
    import vmcore
    src = str(tmp_path / "src.elf")
    with kernel.dump() as d:
        d.write(src, "elf")
    with vmcore.open(src) as dump:
        view, _scan = filter_dump(dump, 16)
        view.close()
        assert dump.read(MEM_MAP, 8) == kernel.mem[MEM_MAP:MEM_MAP + 8]


def test_vmcore_save_takes_the_dump_level(tmp_path):
    """The kdump kernel's save: -d 1 -c is today's zero-page filter with the level in the header; a
    kernel without struct pages in VMCOREINFO (the simulated one, for now) refuses -d 31 in one line."""
    import vmcore
    from tests.realdata import debian_kernel, make_initrd
    m = str(tmp_path / "m")
    run_cli("s390_machine.cli", "create", m, "--memory", "256M", "--cpus", "2", "--crashkernel", "96M", check=True)
    initrd = make_initrd(str(tmp_path / "initrd.img"), payload_size=MIB)
    run_cli("kexec_s390.cli", "load", "-p", debian_kernel(), "--initrd", initrd, "--machine", m, check=True)
    run_cli("s390_machine.cli", "panic", m, check=True)
    out = str(tmp_path / "d1.kdump")
    res = json.loads(run_cli("vmcore.cli", "save", "--machine", m, "-o", out, "-c", "-d", "1", "--json",
                             check=True).stdout)
    assert res["dump_level"] == 1 and res["format"] == "kdump" and res["saved_bytes"] == os.path.getsize(out)
    with vmcore.open(out) as d:
        assert d.attrs.complete and d.attrs.dump_level == 1
    proc = run_cli("vmcore.cli", "save", "--machine", m, "-o", str(tmp_path / "d31.kdump"), "-c", "-d", "31")
    if proc.returncode != 0:                 # until the simulated kernel carries its memory map
        assert proc.returncode == 3 and proc.stderr.count("\n") == 1 and "VMCOREINFO has no" in proc.stderr
    else:
        with vmcore.open(str(tmp_path / "d31.kdump")) as d:
            assert d.attrs.complete and d.attrs.dump_level == 31
