"""`vmcore save -d 31 -c` (makedumpfile's dump levels) against what its work costs at the least.

1. A 4 GiB machine (``--quick``: 512 MiB) with a quarter of its MiBs holding data, half of
   those pages user, page cache or free (``--pages``), crashed with kdump loaded as
   scripts/demo.sh does it.  `vmcore save --machine M -d 31 -c` (the library calls behind it:
   the kdump view, the page-class scan taken section by section by the kdump writer with zlib
   at the CLI's level) is timed in a subprocess after its imports (best of REPEAT), its peak RSS
   measured from the outside (target < 300 MiB).  Its limit, measured in the same run: zlib-ng
   compressing, page by page as the writer does, every page the save keeps (non-zero pages of
   the filtered view; zero pages share one stored page) on all cores (one process per core:
   zlib_ng.compress holds the GIL), data preloaded, plus reading the whole memory image once as
   our reader reads it (its data extents only, holes are not read).  Target >= 0.8x.
2. A 1 TiB sparse machine (``--quick``: 64 GiB) with little data: the page-class scan
   (`vmcore.filter.scan_pages`, what `-d 31` and `--mem-usage` decide from) must cost what the
   struct pages cost, not what the memory costs.  Its limit: reading the struct-page arrays of
   every present section (64 bytes per page, through the page tables' physical runs, in large
   reads, no decoding) measured in the same run.  Target >= 0.5x: the scan reads the same bytes
   in blocks of PGMM_CACHED struct pages and decodes each block (it may skip the blocks a free
   buddy block covers), so an interpreter's share of at most the reading time itself is allowed;
   a scan proportional to the memory (reading or testing every page) would be far below it.
   (The simulator maps the struct pages of untouched memory to one shared block, so most of
   the limit's 16 GiB come from the page cache: reading is as fast as it gets here.)
   Peak RSS of the scan (target < 300 MiB).

Measured on a 2-core machine shared with other jobs, the limits move with the load as the
timed runs do; both are measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench.common import GiB, MiB, Result, best_child_run, main_for, size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RSS_LIMIT_MB = 300.0
REPEAT = 3
DUMP_LEVEL = 31
ZLIB_LEVEL = 1                  # `vmcore save --level`'s default (vmcore/cli_write.py)
# a quarter of the memory holds data; of those pages half are user (anon + hugetlb), page cache or free
PAGES = "free=15,cache=15,private=5,anon=12,hugetlb=3"
READ_BLOCK = 8 * MiB


# --------------------------------------------------------------------------------------------
# in the subprocesses
# --------------------------------------------------------------------------------------------

def child_save(argv: list[str]) -> None:
    """`vmcore save --machine M -d 31 -c -o OUT` as library calls, timed after the imports."""
    from dumpkit.parallel import reuse_large_buffers

    reuse_large_buffers()                       # as the CLI's main does
    machine, out = argv[0], argv[1]
    from s390_machine.machine import Machine
    from vmcore.filter import start_scan
    from vmcore.formats import write_dump
    from vmcore.kdump import kdump_dump

    if os.path.exists(out):
        os.unlink(out)
    os.sync()
    t = time.perf_counter()
    with Machine.open(machine, "read") as m, kdump_dump(m) as dump:
        # as cli_write.write_filtered writes a kdump file: the scan's steps taken as the writer goes
        _scan, steps = start_scan(dump, DUMP_LEVEL)
        write_dump(dump, out, "kdump", compress="zlib", level=ZLIB_LEVEL, exclusions=steps, excluding=DUMP_LEVEL)
        complete = dump.attrs.complete
    seconds = time.perf_counter() - t
    written = os.path.getsize(out)
    os.unlink(out)
    print(json.dumps({"seconds": seconds, "complete": complete, "bytes": written}))


def child_scan(argv: list[str]) -> None:
    """The page-class scan of -d 31 alone, timed after the imports."""
    from dumpkit.parallel import reuse_large_buffers

    reuse_large_buffers()                       # as the CLI's main does
    machine = argv[0]
    from s390_machine.machine import Machine
    from vmcore.filter import ALL_CLASSES, scan_pages
    from vmcore.kdump import kdump_dump

    t = time.perf_counter()
    with Machine.open(machine, "read") as m, kdump_dump(m) as dump:
        scan = scan_pages(dump, ALL_CLASSES)
        complete = dump.attrs.complete
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "complete": complete, "scanned": scan.scanned,
                      "excluded": sum(scan.counts.values())}))


def _child(fn: str, *args: str) -> tuple[dict, float]:
    cmd = [sys.executable, "-c", f"import sys; from bench.bench_filter import {fn}; {fn}(sys.argv[1:])", *args]
    fd, json_path = tempfile.mkstemp(suffix=".json", dir=os.path.dirname(args[0]))
    os.close(fd)
    return best_child_run(cmd, json_path, repeat=REPEAT, what=fn, cwd=ROOT)


# --------------------------------------------------------------------------------------------
# the machines
# --------------------------------------------------------------------------------------------

def _crashed_machine(tmp: str, name: str, mem: int, fill: float, pages: str, crashkernel: int) -> str:
    """A machine created, kdump loaded (minimal kernel and a 1 MiB initrd) and crashed."""
    py = sys.executable
    quiet = dict(check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    machine = os.path.join(tmp, name)
    kernel, initrd = os.path.join(tmp, "vmlinuz"), os.path.join(tmp, "initrd.img")
    if not os.path.exists(kernel):
        subprocess.run([py, "-m", "tests.initrd", "kernel", kernel], **quiet)
        subprocess.run([py, "-m", "tests.initrd", "initrd", initrd, str(MiB)], **quiet)
    create = [py, "-m", "s390_machine.cli", "create", machine, "--memory", str(mem), "--cpus", "2",
              "--crashkernel", str(crashkernel), "--fill", str(fill), "--no-progress"]
    subprocess.run(create + (["--pages", pages] if pages else []), **quiet)
    subprocess.run([py, "-m", "kexec_s390.cli", "load", "-p", kernel, "--initrd", initrd, "--machine", machine],
                   **quiet)
    subprocess.run([py, "-m", "s390_machine.cli", "panic", machine, "--cpu", "1"], **quiet)
    return machine


# --------------------------------------------------------------------------------------------
# the limits, measured here
# --------------------------------------------------------------------------------------------

def _read_memory_seconds(machine: str) -> tuple[float, int]:
    """(best seconds, bytes) of reading the data extents of the machine's memory image once."""
    from dumpkit.fileio import data_extents

    path = os.path.join(machine, "memory.img")
    buf = bytearray(READ_BLOCK)
    view = memoryview(buf)
    best, nbytes = float("inf"), 0
    fd = os.open(path, os.O_RDONLY)
    try:
        extents = list(data_extents(fd, os.fstat(fd).st_size))
        nbytes = sum(e - s for s, e in extents)
        for _ in range(REPEAT):
            t = time.perf_counter()
            for s, e in extents:
                pos = s
                while pos < e:
                    n = os.preadv(fd, [view[:min(READ_BLOCK, e - pos)]], pos)
                    if n <= 0:
                        break
                    pos += n
            best = min(best, time.perf_counter() - t)
    finally:
        view.release()
        os.close(fd)
    return best, nbytes


def _kept_pages(machine: str) -> bytearray:
    """The non-zero pages the -d 31 view keeps, end to end."""
    from s390_machine.machine import Machine
    from vmcore.filter import filter_dump
    from vmcore.kdump import kdump_dump

    out = bytearray()
    with Machine.open(machine, "read") as m, kdump_dump(m) as dump:
        view, _scan = filter_dump(dump, DUMP_LEVEL)
        for _addr, page in view.iter_pages():
            out += page
    return out


def _compress_seconds(machine: str) -> tuple[float, int]:
    """(best seconds of REPEAT, pages): zlib-ng at the writer's level compressing each kept page
    on its own on all cores.  zlib_ng.compress holds the GIL, so threads of one process would
    measure one core: the pages are preloaded, then compressed by one forked process per core
    (a page is a view of the shared buffer, nothing is copied), timed from their common start."""
    from zlib_ng import zlib_ng

    blob = _kept_pages(machine)
    ps = 4096
    npages = len(blob) // ps
    workers = os.cpu_count() or 1
    best = float("inf")
    for _ in range(REPEAT):
        go_r, go_w = os.pipe()
        pids = []
        for k in range(workers):
            pid = os.fork()
            if pid == 0:                              # pragma: no cover (child)
                try:
                    os.close(go_w)
                    os.read(go_r, 1)
                    mv = memoryview(blob)
                    compress = zlib_ng.compress
                    for i in range(k, npages, workers):
                        compress(mv[i * ps:(i + 1) * ps], ZLIB_LEVEL)
                finally:
                    os._exit(0)
            pids.append(pid)
        os.close(go_r)
        t = time.perf_counter()
        os.write(go_w, b"x" * workers)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError("a compression worker failed")
        best = min(best, time.perf_counter() - t)
        os.close(go_w)
    return best, npages


def _struct_page_read_seconds(machine: str) -> tuple[float, int]:
    """(best seconds, bytes) of reading every present section's struct pages (the physical runs
    of its vmemmap range, in reads of up to READ_BLOCK) through the dump, nothing decoded."""
    from meminfo_abi import mm
    from s390_machine.machine import Machine
    from vmcore.filter import _Memmap, _present_pfns
    from vmcore.kdump import kdump_dump
    from vmcore.kvaddr import KernelSpace

    with Machine.open(machine, "read") as m, kdump_dump(m) as dump:
        dump.fill_vmcoreinfo_from_memory()
        ps = dump.attrs.page_size or 4096
        lay = mm.MmLayout.from_vmcoreinfo(dump.attrs.vmcoreinfo, ps)
        ks = KernelSpace(dump)
        max_pfn = -(-dump.size // ps)
        pps, sz = lay.pages_per_section, lay.page_struct_size
        nsec = min(lay.nr_mem_sections, -(-max_pfn // pps))
        present = _present_pfns(dump, ps)
        runs: list[tuple[int, int]] = []
        for secnr, mem_map in _Memmap(dump, lay, ks, nsec).sections():
            p0, p1 = secnr * pps, min(secnr * pps + pps, max_pfn)
            for s, e in present:           # the struct pages of the section's present pfns
                a, b = max(s, p0), min(e, p1)
                if a < b:
                    for phys, n in ks.phys_runs(mem_map + (a - p0) * sz, (b - a) * sz):
                        if runs and runs[-1][0] + runs[-1][1] == phys:
                            runs[-1] = (runs[-1][0], runs[-1][1] + n)
                        else:
                            runs.append((phys, n))
        nbytes = sum(n for _p, n in runs)
        best = float("inf")
        for _ in range(REPEAT):
            t = time.perf_counter()
            for phys, n in runs:
                pos, end = phys, phys + n
                while pos < end:
                    k = min(READ_BLOCK, end - pos)
                    dump.read(pos, k)
                    pos += k
            best = min(best, time.perf_counter() - t)
    return best, nbytes


# --------------------------------------------------------------------------------------------

def _label(n: int) -> str:
    if n >= 1 << 40:
        return f"{n >> 40} TiB"
    return f"{n // GiB} GiB" if n >= GiB else f"{n // MiB} MiB"


def run(args: argparse.Namespace) -> list[Result]:
    mem = size(args, 4 * GiB, 512 * MiB)
    big = size(args, 1 << 40, 64 * GiB)
    rows: list[Result] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/var/tmp")) as tmp:
        # 1. -d 31 -c of a machine with a quarter of data
        machine = _crashed_machine(tmp, "machine", mem, 0.25, PAGES, min(256 * MiB, mem // 8))
        best, rss = _child("child_save", machine, os.path.join(tmp, "out.d31"))
        read_s, read_bytes = _read_memory_seconds(machine)
        zip_s, kept = _compress_seconds(machine)
        limit = read_s + zip_s
        seconds = best["seconds"]
        head = (f"save -d {DUMP_LEVEL} -c of {_label(mem)} ({kept} pages kept, "
                f"{best['bytes'] / MiB:.0f} MiB written)")
        rows.append(Result(f"read the memory image's data once ({read_bytes / MiB:.0f} MiB, limit part)",
                           read_s, "s"))
        rows.append(Result(f"zlib-ng level {ZLIB_LEVEL}, all cores, of the {kept} kept pages (limit part)",
                           zip_s, "s"))
        rows.append(Result(head, seconds, "s", "read once + zlib-ng of kept pages", limit / seconds, 0.8))
        rows.append(Result(f"save -d {DUMP_LEVEL} -c: peak RSS", rss, "MiB", f"{RSS_LIMIT_MB:g} MB target",
                           RSS_LIMIT_MB / rss, 1.0))
        subprocess.run(["rm", "-rf", machine], check=True)
        # 2. the page-class scan of a large sparse machine
        machine = _crashed_machine(tmp, "sparse", big, 0.001, "", 256 * MiB)
        best, rss = _child("child_scan", machine)
        sp_s, sp_bytes = _struct_page_read_seconds(machine)
        seconds = best["seconds"]
        rows.append(Result(f"read the struct pages of {_label(big)} ({sp_bytes / MiB:.0f} MiB, limit)", sp_s, "s"))
        rows.append(Result(f"page-class scan of {_label(big)} sparse ({best['scanned']} struct pages decoded, "
                           f"{best['excluded']} pages classed out)", seconds, "s",
                           "reading the struct pages", sp_s / seconds, 0.5))
        rows.append(Result("page-class scan: peak RSS", rss, "MiB", f"{RSS_LIMIT_MB:g} MB target",
                           RSS_LIMIT_MB / rss, 1.0))
    return rows


if __name__ == "__main__":
    sys.exit(main_for(run, "filter"))
