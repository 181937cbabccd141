"""Creating a machine (issue 2) and loading kdump into it (issue 3), against cp of the same data.

- `s390-machine create --memory 1G --cpus 2 --crashkernel 256M`: seconds (target < 2 s) and
  allocated disk (target < 100 MB).
- `kexec-s390 load -p` of the real-sized kernel with a 64 MiB initrd into the machine, against
  `cp` of the same initrd file into a file on the same disk (limit; target >= 0.5x).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench.common import MiB, Result, cp_throughput, main_for, measure, run_peak_rss_mb, size


def _cli(module: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", module, *args], check=True, stdout=subprocess.DEVNULL)


def _kernel_image(tmp: str) -> str:
    """The Debian s390x kernel when it is cached, else a synthetic image of the same size."""
    cache = os.path.expanduser("~/.cache/s390-dumptools/root")
    if os.path.isdir(cache):
        for base, _d, files in os.walk(cache):
            for f in files:
                if f.startswith("vmlinuz-"):
                    return os.path.join(base, f)
    path = os.path.join(tmp, "image")
    data = bytearray(os.urandom(5 * MiB))
    data[0:8] = bytes.fromhex("0008000080010000")
    data[0x10008:0x1000E] = b"S390EP"
    data[0x10400:0x10480] = bytes(0x80)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def run(args: argparse.Namespace) -> list[Result]:
    rows: list[Result] = []
    initrd_size = size(args, 64 * MiB, 16 * MiB)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/var/tmp")) as tmp:
        # issue 2: create
        best = float("inf")
        for i in range(3):
            path = os.path.join(tmp, f"m{i}")
            t = time.perf_counter()
            _cli("s390_machine.cli", "create", path, "--memory", "1G", "--cpus", "2", "--crashkernel", "256M")
            best = min(best, time.perf_counter() - t)
        alloc = os.stat(os.path.join(tmp, "m0", "memory.img")).st_blocks * 512 / MiB
        rows.append(Result("create 1G/2 CPUs/256M crashkernel (s, incl. interpreter start)", best, "s",
                           "2 s target", 2.0 / best, 1.0))
        rows.append(Result("create: allocated disk of memory.img", alloc, "MiB", "100 MiB target",
                           100 / alloc, 1.0))

        # issue 3: load a 64 MiB initrd
        kernel = _kernel_image(tmp)
        initrd = os.path.join(tmp, "initrd.img")
        with open(initrd, "wb") as fh:
            for _ in range(initrd_size // MiB):
                fh.write(os.urandom(MiB))
        cp = cp_throughput(initrd, os.path.join(tmp, "initrd.copy"), sparse=False)
        rows.append(Result(f"cp of the {initrd_size // MiB} MiB initrd (limit)", cp, "B/s"))
        cps = cp_throughput(initrd, os.path.join(tmp, "initrd.copy"), sparse=False, durable=True)
        rows.append(Result("cp + fsync of the copy (durable limit: a load returns once storage is flushed)",
                           cps, "B/s"))
        import hashlib
        blob = open(kernel, "rb").read()[0x10000:] + open(initrd, "rb").read()
        sha = len(blob) / measure(lambda: hashlib.sha256(blob).digest())
        del blob
        rows.append(Result("SHA-256 of the same bytes (the digest every load must compute)", sha, "B/s",
                           "cp", sha / cp))
        best = float("inf")
        rss = 0.0
        for i in range(3):
            # a fresh machine per load, the previous one removed first: cp above also writes a
            # fresh file after removing its previous copy, so both get the freed page cache
            for j in range(3):
                shutil.rmtree(os.path.join(tmp, f"m{j}"), ignore_errors=True)
            path = os.path.join(tmp, f"m{i}")
            _cli("s390_machine.cli", "create", path, "--memory", "1G", "--cpus", "2", "--crashkernel", "256M")
            # timed in-process after the imports: cp has no interpreter to start either
            cmd = [sys.executable, "-c",
                   "import sys,time;from kexec_s390 import ops;t=time.perf_counter();"
                   f"ops.load({kernel!r},initrd={initrd!r},command_line=[],append=[],reuse_cmdline=False,"
                   f"kdump=True,machine={path!r},dry_run=False,crashkernel=None);"
                   "print(time.perf_counter()-t)"]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            best = min(best, float(out.split()[-1]))
            code, r = run_peak_rss_mb(cmd, stdout=subprocess.DEVNULL)
            rss = max(rss, r)
        load = (initrd_size + os.path.getsize(kernel)) / best
        rows.append(Result(f"kexec-s390 load -p kernel + {initrd_size // MiB} MiB initrd", load, "B/s", "cp",
                           load / cp, 0.5))
        rows.append(Result("kexec-s390 load vs the durable copy", load, "B/s", "cp + fsync", load / cps, 0.5))
        rows.append(Result("kexec-s390 load vs its SHA-256 bound", load, "B/s", "SHA-256", load / sha))
        rows.append(Result("kexec-s390 load: peak RSS", rss, "MiB"))

        # the dumper's stage 1 on that load: every segment's CKSM and the SHA-256 digest
        check = ("import sys,time\nfrom meminfo_abi import meminfo\nfrom s390_machine.machine import Machine\n"
                 "if sys.argv[1] == 'serial':\n    meminfo._parallel_safe = lambda mem: False\n"
                 f"with Machine.open({path!r}, \"read\") as m:\n    best = 9e9\n    for _ in range(3):\n"
                 "        t = time.perf_counter(); r = m.meminfo_report(); best = min(best, time.perf_counter() - t)\n"
                 "        assert r.kdump_intact, r.reason\nprint(best)")
        secs = {mode: float(subprocess.run([sys.executable, "-c", check, mode], check=True, capture_output=True,
                                           text=True).stdout.split()[-1]) for mode in ("serial", "parallel")}
        checked = initrd_size + os.path.getsize(kernel)
        for mode in ("serial", "parallel"):
            rows.append(Result(f"sadump stage-1 check of the load ({mode}: CKSMs{' beside' if mode == 'parallel' else ', then'}"
                               " SHA-256)", checked / secs[mode], "B/s", "SHA-256", checked / secs[mode] / sha))
        rows.append(Result("stage-1 check: parallel vs serial", secs["serial"] / secs["parallel"], "x"))
    return rows


if __name__ == "__main__":
    sys.exit(main_for(run, "kexec"))
