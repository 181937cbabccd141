"""`make bench-scale` (issue 8): a 1 TiB sparse machine with 8 GiB of data spread over it, every
stage timed against `cp --sparse=always` of the same data in the same run, peak RSS per stage
(each stage runs in its own process), and zlib-ng compression scaling from 1 to N cores.

Not part of `make bench` (it writes tens of GiB); needs ~40 GB free under BENCH_TMP
(default /var/tmp).  `--quick` uses a 64 GiB machine with 512 MiB of data.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench.common import GiB, MiB, Result, fsync_path, print_table, run_peak_rss_mb

RSS_LIMIT = 500


def _run(cmd: list[str]) -> tuple[float, float]:
    # untimed: the file system is mounted with discard here, and the discards of the
    # gigabytes the previous stage freed would otherwise land in this stage's fsync
    os.sync()
    t = time.perf_counter()
    code, rss = run_peak_rss_mb(cmd, stdout=subprocess.DEVNULL)
    if code != 0:
        raise SystemExit(f"bench-scale: stage failed ({code}): {' '.join(cmd)}")
    return time.perf_counter() - t, rss


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def _cp(src: str, dst: str, durable: bool = False) -> float:
    """Seconds of cp --sparse=always (durable: and an fsync of the copy, what our writers do)."""
    os.sync()
    t = time.perf_counter()
    subprocess.run(["cp", "--sparse=always", src, dst], check=True)
    if durable:
        fsync_path(dst)
    dt = time.perf_counter() - t
    os.unlink(dst)
    return dt


def _kernel() -> str:
    out = subprocess.run(["bash", "scripts/fetch-s390x-debs.sh", "linux-image-6.1.0-[0-9]+-s390x"],
                         check=True, capture_output=True, text=True).stdout.split()[0]
    boot = os.path.join(out, "boot")
    return os.path.join(boot, next(f for f in os.listdir(boot) if f.startswith("vmlinuz-")))


def run(args: argparse.Namespace) -> list[Result]:
    mem, data = (64 * GiB, 512 * MiB) if args.quick else (1 << 40, 8 * GiB)
    fill = data / mem
    root = os.environ.get("BENCH_TMP", "/var/tmp")
    need = data * 4 + 2 * GiB
    free = shutil.disk_usage(root).free
    if free < need:
        raise SystemExit(f"bench-scale: {root} has {free >> 30} GiB free, needs {need >> 30} GiB")
    rows: list[Result] = []
    with tempfile.TemporaryDirectory(dir=root, prefix="bench-scale.") as tmp:
        m = os.path.join(tmp, "machine")
        dt, rss = _run(_py("-m", "s390_machine.cli", "create", m, "--memory", str(mem), "--cpus", "4",
                           "--crashkernel", "512M", "--fill", repr(fill)))
        img = os.path.join(m, "memory.img")
        cp = data / _cp(img, os.path.join(tmp, "cp.img"))
        rows.append(Result(f"cp --sparse=always of the {mem >> 30} GiB image ({data >> 20} MiB data) (limit)",
                           cp, "B/s"))
        cp_durable = data / _cp(img, os.path.join(tmp, "cp.img"), durable=True)
        rows.append(Result("cp --sparse=always + fsync of the copy (durable limit)", cp_durable, "B/s"))

        def stage(name: str, seconds: float, rss: float, copy_like: bool = True, limit: float | None = None,
                  vs: str = "cp", durable: float | None = None) -> None:
            tp = data / seconds
            rows.append(Result(f"{name}", tp, "B/s", vs, tp / (limit or cp), 0.7 if copy_like else None))
            if copy_like:   # our writers fsync before they return: the same against a durable copy
                rows.append(Result(f"{name} vs the durable copy", tp, "B/s", vs + " + fsync",
                                   tp / (durable or cp_durable), 0.7))
            rows.append(Result(f"{name}: peak RSS", rss, "MiB", f"{RSS_LIMIT} MiB", RSS_LIMIT / max(rss, 1), 1.0))

        stage("create", dt, rss)
        initrd = os.path.join(tmp, "initrd.img")
        subprocess.run(_py("-c", f"from tests.realdata import make_initrd; make_initrd({initrd!r})"), check=True)
        dt, rss = _run(_py("-m", "kexec_s390.cli", "load", "-p", _kernel(), "--initrd", initrd, "--machine", m))
        rows.append(Result("kexec-s390 load -p (s)", dt, "s"))
        rows.append(Result("kexec-s390 load: peak RSS", rss, "MiB", f"{RSS_LIMIT} MiB", RSS_LIMIT / max(rss, 1), 1.0))

        # the stand-alone dumper's data path (the machine stays as it is)
        dev = os.path.join(tmp, "dasd.img")
        subprocess.run(_py("-m", "zipl_sadump.cli", "build", "--device", dev, "--type", "eckd", "--size",
                           str(data + 2 * GiB), "--no-compress"), check=True, stdout=subprocess.DEVNULL)
        dt, rss = _run(_py("-c", "import sys\nfrom s390_machine.memory import PhysicalMemory\n"
                           "from zipl_sadump.fulldump import write_full_dump\nfrom meminfo_abi.tod import tod_now\n"
                           f"with PhysicalMemory({img!r}) as mem:\n"
                           f"    r = write_full_dump([{dev!r}], mem, [0x410000], 4, tod=tod_now(), cpu_id=0, compress=False)\n"
                           "sys.exit(0 if r.complete else 1)"))
        stage("full dump (sadump, uncompressed, incl. fsync)", dt, rss)
        os.unlink(dev)

        # the kdump path: panic, then the kdump kernel saves /proc/vmcore
        _run(_py("-m", "s390_machine.cli", "panic", m))
        elf = os.path.join(tmp, "vmcore.elf")
        dt, rss = _run(_py("-m", "vmcore.cli", "save", "--machine", m, "-o", elf))
        stage("kdump save, ELF", dt, rss)
        from vmcore.formats import WRITERS
        if "kdump" in WRITERS:
            kd = os.path.join(tmp, "vmcore.kdump")
            dt, rss = _run(_py("-m", "vmcore.cli", "save", "--machine", m, "-o", kd, "-f", "kdump"))
            stage("kdump save, kdump-compressed zlib", dt, rss, copy_like=False)
            os.unlink(kd)

        # conversion and inspection of the saved dump
        # a conversion copies the dump, not the memory image: its limit is cp of the dump itself
        # (best of two: the dump writer dropped its pages from the cache, the first cp reads
        # them back from disk, and the conversion then finds them cached like the second cp)
        out = os.path.join(tmp, "converted.elf")
        cp_elf = data / min(_cp(elf, out) for _ in range(2))
        rows.append(Result(f"cp --sparse=always of the saved ELF dump ({data >> 20} MiB data) (limit)",
                           cp_elf, "B/s"))
        cp_elf_durable = data / _cp(elf, out, durable=True)
        rows.append(Result("cp --sparse=always + fsync of the saved ELF dump (durable limit)", cp_elf_durable,
                           "B/s"))
        dt, rss = _run(_py("-m", "vmcore.cli", "convert", elf, "-o", out, "-f", "elf"))
        stage("convert ELF -> ELF", dt, rss, limit=cp_elf, vs="cp of the ELF", durable=cp_elf_durable)
        rows.append(Result("convert ELF -> ELF (info)", data / dt, "B/s", "cp of the image", data / dt / cp))
        os.unlink(out)
        if "kdump" in WRITERS:
            out = os.path.join(tmp, "converted.kdump")
            dt, rss = _run(_py("-m", "vmcore.cli", "convert", elf, "-o", out, "-f", "kdump"))
            stage("convert ELF -> kdump-compressed zlib", dt, rss, copy_like=False)
            os.unlink(out)
        for cmd in ("info", "dmesg"):
            dt, rss = _run(_py("-m", "vmcore.cli", cmd, elf))
            rows.append(Result(f"vmcore {cmd} (s, incl. interpreter start)", dt, "s", "1 s", 1.0 / dt, 1.0))
            rows.append(Result(f"vmcore {cmd}: peak RSS", rss, "MiB"))

        # compression scaling: zlib-ng level 1 over 1 MiB units of real page data, 1 vs N threads
        rows += _scaling(img, min(data, 512 * MiB))
    return rows


def _scaling(img: str, nbytes: int) -> list[Result]:
    from concurrent.futures import ThreadPoolExecutor
    from zlib_ng import zlib_ng
    from s390_machine.memory import PhysicalMemory
    units = []
    with PhysicalMemory(img) as mem:
        for s, e in mem.data_ranges():
            for a in range(s, e, MiB):
                units.append(mem.read(a, min(MiB, e - a)))
                if len(units) * MiB >= nbytes:
                    break
            if len(units) * MiB >= nbytes:
                break
    n = os.cpu_count() or 1

    def timed(workers: int) -> float:
        t = time.perf_counter()
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(lambda u: zlib_ng.compress(u, 1), units))
        return time.perf_counter() - t
    one, many = min(timed(1) for _ in range(2)), min(timed(n) for _ in range(2))
    total = sum(len(u) for u in units)
    return [Result("zlib-ng level 1, 1 thread", total / one, "B/s"),
            Result(f"zlib-ng level 1, {n} threads", total / many, "B/s", "1 thread", one / many, 1.7)]


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = run(args)
    print_table("bench-scale" + (" (quick)" if args.quick else ""), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
