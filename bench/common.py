"""Shared helpers for the benchmark modules (``bench/bench_*.py``).

Conventions every benchmark module follows:

* it defines ``run(args) -> list[Result]``; ``args`` is the namespace built by
  :func:`make_parser` (``args.quick``, ``args.json``, ``args.modules``);
* with ``args.quick`` it uses small sizes (see :func:`size`) so CI can run the
  whole suite as a smoke test in seconds;
* a throughput row compares against a *limit* (memcpy, cp, ...) through
  ``ratio`` and ``target``; a missed target is reported, not raised.

The limits measured here are physical ceilings: ``memcpy_throughput`` is how
fast this machine can stream a buffer of that size through memory, which is
the most any scan of that buffer can hope for.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

MiB = 1 << 20
GiB = 1 << 30

__all__ = [
    "MiB",
    "GiB",
    "Result",
    "measure",
    "throughput",
    "memcpy_throughput",
    "cp_throughput",
    "peak_rss_mb",
    "run_peak_rss_mb",
    "best_child_run",
    "size",
    "make_parser",
    "make_console",
    "print_table",
    "results_to_json",
    "format_value",
    "main_for",
]


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


def measure(fn: Callable[[], Any], *, repeat: int = 3) -> float:
    """Call ``fn()`` ``repeat`` times and return the best wall time in seconds."""
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def throughput(nbytes: int, fn: Callable[[], Any], *, repeat: int = 3) -> float:
    """Bytes per second of ``fn()`` processing ``nbytes`` (best of ``repeat``)."""
    return nbytes / measure(fn, repeat=repeat)


def memcpy_throughput(buf, *, repeat: int = 3) -> float:
    """Bytes/s of copying ``buf`` into a preallocated bytearray of equal size.

    The copy is a memoryview slice assignment, i.e. one memmove of the whole
    buffer with no Python overhead per byte; the destination is allocated
    (and its pages touched) before timing starts.
    """
    src = memoryview(buf).cast("B")
    dst = bytearray(src.nbytes)
    dst_view = memoryview(dst)

    def copy() -> None:
        dst_view[:] = src

    try:
        return throughput(src.nbytes, copy, repeat=repeat)
    finally:
        dst_view.release()
        src.release()


def fsync_path(path: str | os.PathLike) -> None:
    """fsync an existing file by name (what makes a copy durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cp_throughput(src: str | os.PathLike, dst: str | os.PathLike, sparse: bool = True,
                  *, repeat: int = 3, durable: bool = False) -> float:
    """Bytes/s (apparent size of ``src``) of ``cp`` copying ``src`` to ``dst``.

    ``sparse=True`` runs ``cp --sparse=always`` (holes are created for zero
    runs, the limit for writing a sparse dump); ``sparse=False`` runs
    ``cp --sparse=never`` (every byte is written).  ``sync`` runs once before
    timing; no caches are dropped, so a warm page cache is measured.  ``dst``
    is removed before each run (outside the timed part) and after the last.
    ``durable=True`` also times an fsync of the copy (and syncs before each run): the
    limit for a writer that, like ours, returns only once its output is on disk.
    """
    cp = shutil.which("cp")
    if cp is None:
        raise RuntimeError("cp not found in PATH")
    nbytes = os.path.getsize(src)
    mode = "always" if sparse else "never"
    cmd = [cp, f"--sparse={mode}", os.fspath(src), os.fspath(dst)]
    subprocess.run(["sync"], check=True)
    best = float("inf")
    try:
        for _ in range(max(1, repeat)):
            if os.path.lexists(dst):
                os.unlink(dst)
            if durable:
                os.sync()
            start = time.perf_counter()
            subprocess.run(cmd, check=True)
            if durable:
                fsync_path(dst)
            best = min(best, time.perf_counter() - start)
    finally:
        if os.path.lexists(dst):
            os.unlink(dst)
    return nbytes / best


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident set size of the current process so far, in MiB (Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_RSS_RUNNER = """
import os, sys
out, cmd = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as fh:
    fh.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_peak_rss_mb(cmd: Sequence[str], **popen_kwargs: Any) -> tuple[int, float]:
    """Run ``cmd`` to completion; return ``(exit_code, peak_rss_mib)`` of ``cmd`` alone.

    A child's ru_maxrss counts from its fork, when it still shares the forking process's
    pages; forked from a large benchmark process it would report that process's size.  So
    ``cmd`` is forked by a small intermediary Python process, which reports the rusage of
    ``cmd`` (ru_maxrss, KiB on Linux).  A negative exit code means death by that signal.
    """
    import tempfile
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as res:
        proc = subprocess.Popen([sys.executable, "-c", _RSS_RUNNER, res.name, *cmd], **popen_kwargs)
        proc.wait()
        text = open(res.name).read().split()
    if len(text) != 2:
        raise RuntimeError(f"could not measure {' '.join(cmd)}: runner exited {proc.returncode}")
    return int(text[0]), int(text[1]) / 1024


def best_child_run(cmd: Sequence[str], json_path: str, *, repeat: int, what: str,
                   **popen_kwargs: Any) -> tuple[dict, float]:
    """Run ``cmd`` ``repeat`` times; each run prints a JSON object with ``seconds`` and
    ``complete`` as the last line of its stdout (kept in ``json_path`` meanwhile).
    Return ``(that object of the fastest run, highest peak RSS in MiB)``; a failed run
    (``what`` names it) or an incomplete dump raises RuntimeError."""
    best, rss = None, 0.0
    for _ in range(repeat):
        with open(json_path, "w") as out:
            code, peak = run_peak_rss_mb(cmd, stdout=out, **popen_kwargs)
        if code != 0:
            raise RuntimeError(f"{what} subprocess failed with exit code {code}")
        with open(json_path) as fh:
            res = json.loads(fh.read().strip().splitlines()[-1])
        os.unlink(json_path)
        if not res["complete"]:
            raise RuntimeError("the benchmark dump did not complete")
        rss = max(rss, peak)
        if best is None or res["seconds"] < best["seconds"]:
            best = res
    return best, rss


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass
class Result:
    """One row of a benchmark table.

    ``value``/``unit`` is the measurement; ``limit`` names what it is compared
    with (e.g. ``"memcpy"``), ``ratio`` is value / limit value (higher is
    better unless the module says otherwise), ``target`` the minimum ratio
    wanted.  ``ok`` is derived from ratio and target when not given; it stays
    None for purely informative rows.
    """

    name: str
    value: float
    unit: str
    limit: str | None = None
    ratio: float | None = None
    target: float | None = None
    ok: bool | None = None

    def __post_init__(self) -> None:
        if self.ok is None and self.ratio is not None and self.target is not None:
            self.ok = self.ratio >= self.target

    @property
    def missed(self) -> bool:
        return self.ok is False


def format_value(value: float, unit: str) -> str:
    """Human form of a value; bytes/s are shown as MiB/s or GiB/s."""
    if unit == "B/s":
        if value >= GiB:
            return f"{value / GiB:.2f} GiB/s"
        return f"{value / MiB:.1f} MiB/s"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def _status(row: Result) -> str:
    if row.ok is None:
        return ""
    return "ok" if row.ok else "MISSED"


def make_console(*, stderr: bool = False) -> Any:
    """A rich Console; wide (160 columns) when not writing to a terminal."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160
    return console


def print_table(title: str, rows: Sequence[Result], *, console: Any = None) -> None:
    """Print ``rows`` as a rich table headed ``title``."""
    from rich.table import Table

    console = console or make_console()
    table = Table(title=title, title_justify="left")
    table.add_column("benchmark")
    table.add_column("value", justify="right")
    table.add_column("vs", justify="left")
    table.add_column("ratio", justify="right")
    table.add_column("target", justify="right")
    table.add_column("status", justify="center")
    for row in rows:
        status = _status(row)
        style = {"ok": "green", "MISSED": "bold red"}.get(status, "")
        table.add_row(
            row.name,
            format_value(row.value, row.unit),
            row.limit or "",
            "" if row.ratio is None else f"{row.ratio:.3g}x",
            "" if row.target is None else f">= {row.target:g}x",
            f"[{style}]{status}[/]" if style else status,
        )
    console.print(table)


def results_to_json(results: dict[str, list[Result]]) -> str:
    """JSON document ``{"modules": {name: [row, ...]}, "missed": [...]}``."""
    missed = [f"{mod}: {r.name}" for mod, rows in results.items() for r in rows if r.missed]
    doc = {
        "modules": {mod: [asdict(r) for r in rows] for mod, rows in results.items()},
        "missed": missed,
    }
    return json.dumps(doc, indent=2)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def size(args: argparse.Namespace, full: int, quick: int) -> int:
    """The buffer size a module should use: ``quick`` under --quick."""
    return quick if getattr(args, "quick", False) else full


def make_parser(prog: str = "python -m bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the s390-dumptools benchmarks (bench/bench_*.py) and "
        "compare them with the machine's physical limits.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: a fast smoke run (for CI)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document instead of tables")
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help="only run these modules (e.g. 'native' for bench_native)")
    return parser


def main_for(run: Callable[[argparse.Namespace], list[Result]], title: str,
             argv: Sequence[str] | None = None) -> int:
    """Entry point for running one benchmark module on its own."""
    args = make_parser(prog=f"python -m bench.bench_{title}").parse_args(argv)
    rows = run(args)
    if args.json:
        print(results_to_json({title: rows}))
    else:
        print_table(title, rows)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("bench.common is a library; run `python -m bench`")
