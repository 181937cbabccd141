"""The stand-alone full dump (zipl_sadump.fulldump) against cp of the same memory image.

A 4 GiB machine with a quarter of its MiBs holding data (``--quick``: 512 MiB) is
created once; each dump goes to a freshly built ECKD dump device.  The dump runs
in a subprocess (its peak RSS is measured from the outside; target < 200 MB) and
is timed there after the imports, the way ``cp`` has no interpreter to start.

Limits:

* ``cp --sparse=always memory.img`` on the same disk (target >= 0.8x).  cp leaves
  its data in the page cache; the dump must not: it fsyncs everything before it
  writes the end marker, so it also pays for the disk.  ``cp + sync`` of the copy
  is the like-for-like limit and is reported beside it.
* compressed: zlib-ng level 1 over the same non-zero MiBs on all cores, without
  any I/O (target >= 0.8x) -- compression, not I/O, bounds that dump.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

from bench.common import GiB, MiB, Result, best_child_run, cp_throughput, main_for, size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RSS_LIMIT_MB = 200.0
REPEAT = 3


def child_main(argv: list[str]) -> None:
    """In the subprocess: build a fresh device, sync, time one full dump, print JSON."""
    machine_dir, device, compress = argv[0], argv[1], argv[2] == "1"
    from meminfo_abi.tod import tod_now
    from s390_machine.machine import Machine
    from zipl_sadump.device import build_device
    from zipl_sadump.fulldump import write_full_dump

    with Machine.open(machine_dir, "read") as m:
        if os.path.exists(device):
            os.unlink(device)
        dev = build_device(device, "eckd", m.memory.size + m.memory.size // 16 + 16 * MiB)
        os.sync()
        t = time.perf_counter()
        res = write_full_dump(dev, m.memory, [c.prefix for c in m.cpus], len(m.cpus), tod=tod_now(),
                              cpu_id=0, compress=compress)
        seconds = time.perf_counter() - t
    os.unlink(device)
    print(json.dumps({"seconds": seconds, "complete": res.complete, "written": res.bytes_written,
                      "dumped": res.bytes_dumped, "segments": res.segments}))


def _dump(machine: str, device: str, compress: bool) -> tuple[dict, float]:
    """(result of the fastest of REPEAT runs, highest peak RSS in MiB)."""
    cmd = [sys.executable, "-c", "import sys; from bench.bench_sadump import child_main; child_main(sys.argv[1:])",
           machine, device, "1" if compress else "0"]
    return best_child_run(cmd, device + ".json", repeat=REPEAT, what="dump", cwd=ROOT)


def _zlib_limit(memory_img: str) -> float:
    """Seconds zlib-ng level 1 needs for the non-zero MiBs of the image on all cores (data preloaded)."""
    import native
    from meminfo_abi.s390_dump_stream import compress_unit

    units = []
    with open(memory_img, "rb") as fh:
        while True:
            data = fh.read(MiB)
            if not data:
                break
            if not native.is_zero(data):
                units.append(data)
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        t = time.perf_counter()
        list(pool.map(compress_unit, units))
        return time.perf_counter() - t


def run(args: argparse.Namespace) -> list[Result]:
    mem = size(args, 4 * GiB, 512 * MiB)
    label = f"{mem // MiB} MiB" if mem < GiB else f"{mem // GiB} GiB"
    rows: list[Result] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/var/tmp")) as tmp:
        machine = os.path.join(tmp, "machine")
        subprocess.run([sys.executable, "-m", "s390_machine.cli", "create", machine, "--memory", str(mem),
                        "--cpus", "2", "--fill", "0.25"], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        img = os.path.join(machine, "memory.img")
        device = os.path.join(tmp, "dump.img")

        cp = cp_throughput(img, os.path.join(tmp, "copy.img"), sparse=True, repeat=REPEAT)
        rows.append(Result(f"cp --sparse=always of the {label} memory.img (limit)", cp, "B/s"))
        cps = cp_throughput(img, os.path.join(tmp, "copy.img"), sparse=True, repeat=REPEAT, durable=True)
        rows.append(Result("cp --sparse=always + fsync of the copy (durable limit)", cps, "B/s"))

        plain, rss_plain = _dump(machine, device, False)
        thr = mem / plain["seconds"]
        rows.append(Result(f"full dump {label}, uncompressed, {plain['segments']} segments", thr, "B/s",
                           "cp --sparse=always", thr / cp, 0.8))
        rows.append(Result("full dump uncompressed vs the durable copy", thr, "B/s", "cp + fsync", thr / cps, 0.8))
        rows.append(Result("full dump uncompressed: peak RSS", rss_plain, "MiB", f"{RSS_LIMIT_MB:g} MB target",
                           RSS_LIMIT_MB / rss_plain, 1.0))

        comp, rss_comp = _dump(machine, device, True)
        thr_c = mem / comp["seconds"]
        limit = _zlib_limit(img)
        rows.append(Result(f"full dump {label}, zlib ({comp['written'] / plain['written']:.2f}x the bytes)", thr_c,
                           "B/s", "zlib-ng L1, all cores, no I/O", limit / comp["seconds"], 0.8))
        rows.append(Result("full dump zlib vs cp --sparse=always (info)", thr_c, "B/s", "cp", thr_c / cp))
        rows.append(Result("full dump zlib: peak RSS", rss_comp, "MiB", f"{RSS_LIMIT_MB:g} MB target",
                           RSS_LIMIT_MB / rss_comp, 1.0))
    return rows


if __name__ == "__main__":
    sys.exit(main_for(run, "sadump"))
