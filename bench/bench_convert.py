"""`vmcore convert` of a stand-alone s390 dump to ELF against cp of the same file; info and dmesg.

A 4 GiB machine with a quarter of its MiBs holding data (``--quick``: 512 MiB) is dumped by
the stand-alone dumper to an ECKD device and extracted, twice: uncompressed (--no-compress)
and with zlib segments (the dumper's default).  Then:

* `vmcore convert DUMP -f elf` of each stream, timed in a subprocess after its imports (as
  bench_sadump times the dump: cp has no interpreter to start), its peak RSS measured from
  the outside (target < 200 MB);
* limits: ``cp --sparse=always`` of the same file (target >= 0.8x, the issue's number), and
  cp followed by an fsync of the copy -- the like-for-like limit, because the converter's
  output is atomic: written under a temporary name, fsynced, renamed.  The zlib stream is
  a different job (1 MiB units to inflate, a file half the size to copy): its limit is
  zlib-ng inflating the same units on all cores, data preloaded, no output, measured in
  the same run (target >= 0.8x); cp is reported beside it;
* `vmcore info` and `vmcore dmesg` on the zlib stream as the user runs them (whole
  subprocess, interpreter start included; target < 1 s each).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench.common import GiB, MiB, Result, best_child_run, cp_throughput, main_for, size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RSS_LIMIT_MB = 200.0
TIME_LIMIT_S = 1.0
REPEAT = 3


def child_main(argv: list[str]) -> None:
    """In the subprocess: open the dump, time one conversion to ELF, print JSON."""
    from dumpkit.parallel import reuse_large_buffers

    reuse_large_buffers()                       # as the CLI's main does
    src, out = argv[0], argv[1]
    from vmcore.formats import open_dump, write_dump

    if os.path.exists(out):
        os.unlink(out)
    os.sync()
    t = time.perf_counter()
    with open_dump(src) as d:
        write_dump(d, out, "elf")
        complete = d.attrs.complete
    seconds = time.perf_counter() - t
    os.unlink(out)
    print(json.dumps({"seconds": seconds, "complete": complete}))


def _convert(src: str, out: str) -> tuple[float, float]:
    """(best seconds of REPEAT conversions, highest peak RSS in MiB)."""
    cmd = [sys.executable, "-c", "import sys; from bench.bench_convert import child_main; child_main(sys.argv[1:])",
           src, out]
    best, rss = best_child_run(cmd, out + ".json", repeat=REPEAT, what="convert", cwd=ROOT)
    return best["seconds"], rss


def _inflate_limit(src: str) -> float:
    """Seconds zlib-ng needs to inflate every compressed unit of the s390_ext stream `src` on
    all cores (the units read into memory first; best of REPEAT)."""
    import concurrent.futures

    from meminfo_abi.s390_dump_stream import ExtStreamWalker, inflate_unit

    units = []
    with open(src, "rb") as fh:
        for seg in ExtStreamWalker(fh.fileno()):
            for i in range(seg.units if seg.compressed else 0):
                offset, on_disk, stored_raw = seg.unit_location(i)
                if not stored_raw:
                    units.append(os.pread(fh.fileno(), on_disk, offset))
    best = float("inf")
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for _ in range(REPEAT):
            t = time.perf_counter()
            for _out in pool.map(inflate_unit, units):
                pass
            best = min(best, time.perf_counter() - t)
    return best


def _cli_seconds(*args: str) -> float:
    """Wall seconds of `python -m vmcore.cli ARGS` (best of REPEAT), output discarded."""
    best = float("inf")
    for _ in range(REPEAT):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vmcore.cli", *args], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t)
    return best


def _make_dumps(tmp: str, mem: int) -> dict[str, str]:
    py = sys.executable
    quiet = dict(check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    out = {}
    for name, extra in (("plain", ["--no-compress"]), ("zlib", [])):
        machine = os.path.join(tmp, f"machine-{name}")
        subprocess.run([py, "-m", "s390_machine.cli", "create", machine, "--memory", str(mem), "--cpus", "2",
                        "--crashkernel", str(mem // 16), "--fill", "0.25"], **quiet)
        device = os.path.join(tmp, f"{name}.img")
        subprocess.run([py, "-m", "zipl_sadump.cli", "build", "--device", device, "--type", "eckd", "--size",
                        str(mem + mem // 4 + 64 * MiB)], **quiet)
        subprocess.run([py, "-m", "zipl_sadump.cli", "ipl", "--device", device, "--machine", machine, "--kdump",
                        "off", "--no-map", *extra], **quiet)
        out[name] = os.path.join(tmp, f"{name}.dump")
        subprocess.run([py, "-m", "zipl_sadump.cli", "extract", "--device", device, "-f", "s390_ext", "-o", out[name]], **quiet)
        os.unlink(device)
    return out


def run(args: argparse.Namespace) -> list[Result]:
    mem = size(args, 4 * GiB, 512 * MiB)
    label = f"{mem // MiB} MiB" if mem < GiB else f"{mem // GiB} GiB"
    rows: list[Result] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/var/tmp")) as tmp:
        dumps = _make_dumps(tmp, mem)
        for name, what in (("plain", "uncompressed"), ("zlib", "zlib segments")):
            src = dumps[name]
            nbytes = os.path.getsize(src)
            copy = os.path.join(tmp, "copy")
            cp = cp_throughput(src, copy, sparse=True, repeat=REPEAT)
            cps = cp_throughput(src, copy, sparse=True, repeat=REPEAT, durable=True)
            seconds, rss = _convert(src, os.path.join(tmp, "out.elf"))
            thr = nbytes / seconds
            head = f"convert {label} s390 ({what}, {nbytes / MiB:.0f} MiB file) -> ELF"
            rows.append(Result(f"cp --sparse=always of the {what} dump (limit)", cp, "B/s"))
            if name == "plain":
                # the writer fsyncs: its limit is the durable copy (cp + fsync); against a copy left
                # in the page cache the row is for information
                rows.append(Result(f"{head}, durable", thr, "B/s", "cp + fsync", thr / cps, 0.8))
                rows.append(Result(f"{head} (info)", thr, "B/s", "cp --sparse=always", thr / cp))
            else:
                limit = _inflate_limit(src)
                rows.append(Result(head, thr, "B/s", "zlib-ng inflate, all cores, no I/O", limit / seconds, 0.8))
                rows.append(Result(f"{head} (info)", thr, "B/s", "cp --sparse=always", thr / cp))
                rows.append(Result(f"{head}, durable (info)", thr, "B/s", "cp + fsync", thr / cps))
            rows.append(Result(f"convert ({what}): peak RSS", rss, "MiB", f"{RSS_LIMIT_MB:g} MB target",
                               RSS_LIMIT_MB / rss, 1.0))
        for cmd in ("info", "dmesg"):
            t = _cli_seconds(cmd, dumps["zlib"])
            rows.append(Result(f"vmcore {cmd} on the {label} zlib dump (whole process)", t, "s",
                               f"{TIME_LIMIT_S:g} s target", TIME_LIMIT_S / t, 1.0))
    return rows


if __name__ == "__main__":
    sys.exit(main_for(run, "convert"))
