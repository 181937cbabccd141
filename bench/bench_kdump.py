"""Writing a kdump-compressed file (zlib) against the compression limit.

Machine: `s390-machine create --memory 4G --fill 0.25` (no crashkernel; a
quarter of its memory holds data); `--quick` uses 512 MiB.

- write: `vmcore.formats.write_dump(dump, out, "kdump", compress="zlib")` of the
  machine's memory image (read with pread, CPUs from machine.json), timed
  inside a child process after its imports; the child's peak RSS (VmHWM) is
  taken too (target < 300 MiB).  Value: bytes of machine memory per second.
  The same from the machine directory is an info row: its image is mmap'd, so
  the RSS counts the page-cache pages read through the mapping.
- limit: zlib-ng level 1 compressing the same non-zero pages one by one (as
  the writer must) on all cores, from memory, in this process, in the same
  run.  Target: write >= 0.8x the limit.
- info rows: the serial writer (threads=1), the flattened stream, and reading
  the file back (page digests) against the machine itself.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import GiB, MiB, Result, main_for, size

TARGET = 0.8
RSS_LIMIT_MB = 300.0
BATCH = 256

CHILD = """
import json, os, sys, time
from vmcore.formats import open_dump, write_dump
machine, how, out, opts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
if how == "image":      # the memory image read with pread, CPUs from the machine
    d = open_dump(os.path.join(machine, "memory.img"), fmt="raw", cpus_from=machine)
else:                   # the machine directory (its memory image is mmap'd)
    d = open_dump(machine)
with d:
    t = time.perf_counter()
    lay = write_dump(d, out, "kdump", **opts)
    seconds = time.perf_counter() - t
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "file_size": lay.file_size, "hwm_kib": hwm,
                  "compressed": lay.pages_compressed, "raw": lay.pages_raw, "zero": lay.pages_zero}))
"""


def _write_child(machine: str, out: str, how: str = "image", **opts) -> dict:
    """Write in a child process; its report includes its peak RSS (VmHWM of its own address space:
    ru_maxrss would also count the parent's peak, kept across vfork + exec)."""
    cmd = [sys.executable, "-c", CHILD, machine, how, out, json.dumps(opts)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"kdump write failed ({proc.returncode}): {proc.stderr}")
    rep = json.loads(proc.stdout.strip().splitlines()[-1])
    rep["rss_mib"] = rep["hwm_kib"] / 1024
    return rep


def _nonzero_pages(machine: str) -> tuple[int, list]:
    """(memory size, the machine's non-zero pages as memoryviews)."""
    from native import nonzero_ranges
    from vmcore.formats import open_dump

    pages = []
    with open_dump(machine) as d:
        for _addr, data in d.iter_data():
            mv = memoryview(data)
            for s, e in nonzero_ranges(mv, 4096):
                pages.extend(mv[o:o + 4096] for o in range(s, e, 4096))
        return d.size, pages


def _compress_limit(pages: list, repeat: int = 3) -> float:
    """Best seconds of zlib-ng level 1 over every page, batches spread over all cores."""
    from zlib_ng import zlib_ng

    def work(batch):
        c = zlib_ng.compress
        return sum(len(c(p, 1)) for p in batch)

    batches = [pages[i:i + BATCH] for i in range(0, len(pages), BATCH)]
    best = float("inf")
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for _ in range(repeat):
            t = time.perf_counter()
            sum(pool.map(work, batches))
            best = min(best, time.perf_counter() - t)
    return best


def _read_back(path: str) -> float:
    from vmcore.formats import open_dump
    from vmcore.model import page_digests

    with open_dump(path) as d:
        t = time.perf_counter()
        page_digests(d)
        return d.size / (time.perf_counter() - t)


def run(args: argparse.Namespace) -> list[Result]:
    mem = size(args, 4 * GiB, 512 * MiB)
    label = f"{mem // GiB} GiB" if mem >= GiB else f"{mem // MiB} MiB"
    rows: list[Result] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/var/tmp")) as tmp:
        machine = os.path.join(tmp, "m")
        subprocess.run([sys.executable, "-m", "s390_machine.cli", "create", machine, "--memory", f"{mem // MiB}M",
                        "--fill", "0.25"], check=True, stdout=subprocess.DEVNULL)
        out = os.path.join(tmp, "vmcore.kdump")

        # the write first (cold caches hurt it, not the limit), then the limit, then the write again
        best, rss, report = float("inf"), 0.0, {}
        for i in range(2 if args.quick else 3):
            rep = _write_child(machine, out, compress="zlib")
            best, rss, report = min(best, rep["seconds"]), max(rss, rep["rss_mib"]), rep
            if i == 0:
                memsize, pages = _nonzero_pages(machine)
                limit = _compress_limit(pages, repeat=2 if args.quick else 3)
                nonzero = len(pages) * 4096
                del pages
        lim_rate = memsize / limit
        rows.append(Result(f"zlib-ng -1 per page on {os.cpu_count()} cores, {nonzero // MiB} MiB non-zero "
                           f"(limit, per byte of memory)", lim_rate, "B/s"))
        rate = memsize / best
        rows.append(Result(f"kdump --compress zlib of {label} (1/4 non-zero)", rate, "B/s",
                           "zlib-ng all cores", rate / lim_rate, TARGET))
        rows.append(Result("kdump write: peak RSS", rss, "MiB", f"{RSS_LIMIT_MB:g} MiB target",
                           RSS_LIMIT_MB / rss, 1.0))
        rows.append(Result(f"kdump file size ({report['compressed']} compressed, {report['raw']} raw, "
                           f"{report['zero']} zero pages)", report["file_size"] / MiB, "MiB"))
        rep = _write_child(machine, out, how="dir", compress="zlib")
        rows.append(Result("kdump write from the machine directory (info)", memsize / rep["seconds"], "B/s",
                           "zlib-ng all cores", memsize / rep["seconds"] / lim_rate))
        rows.append(Result("  its peak RSS (info: counts the mmap'd image pages it read)", rep["rss_mib"], "MiB"))
        rep = _write_child(machine, out, compress="zlib", threads=1)
        serial = memsize / rep["seconds"]
        rows.append(Result("kdump write, one thread (info)", serial, "B/s", "zlib-ng all cores", serial / lim_rate))
        rep = _write_child(machine, out + ".flat", compress="zlib", flattened=True)
        flat = memsize / rep["seconds"]
        rows.append(Result("kdump --flattened write (info)", flat, "B/s", "zlib-ng all cores", flat / lim_rate))
        os.unlink(out + ".flat")
        rd = _read_back(out)
        rows.append(Result("read back: page digests of the kdump file (info)", rd, "B/s"))
    return rows


if __name__ == "__main__":
    sys.exit(main_for(run, "kdump"))
