"""The fuzz runner: seeds, one libFuzzer worker per harness, the summary.

    python -m fuzz [--seconds N] [--only NAME[,NAME]] [--jobs J] [--work DIR] [--fresh] [--json FILE]
    python -m fuzz --only NAME --replay FILE...      run inputs through a harness, no fuzzing

`--seconds` is the wall-clock budget of the whole run (default 480 s): seeds are built
first, then the harnesses run `--jobs` at a time (default: one per CPU), each for an equal
share of what is left.  A worker is `python -m fuzz.worker NAME` with libFuzzer's
-max_total_time, -timeout (per input), -rss_limit_mb and -max_len; one that outlives its
time by GRACE seconds is killed (process group, SIGKILL) and counted as a failure.  A worker
that fails is restarted for the rest of its share (at most MAX_FAILURES per harness), so one
failure does not hide the next.

Work directory (default out/fuzz): seeds/NAME (built from the suite's outputs this run),
corpus/NAME (what libFuzzer found, kept across runs unless --fresh), artifacts/NAME (inputs
that failed), logs/NAME-K.log, summary.json.  Committed seeds: fuzz/seeds/NAME, and the
minimized inputs of earlier failures, tests/regressions/NAME.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field

from fuzz.harnesses import NAMES, REQUIRES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SECONDS = 480.0
INPUT_TIMEOUT = 20            # libFuzzer -timeout: seconds one input may run before the worker dies
RSS_LIMIT_MB = 2048           # libFuzzer -rss_limit_mb (the harness' own bound is tighter)
GRACE = 45                    # a worker still running this long after its time is killed
STARTUP = 4.0                 # seconds a worker needs before it fuzzes (imports, instrumentation)
MIN_SLOT = 3.0
MAX_FAILURES = 3


@dataclass
class Failure:
    harness: str
    kind: str                 # exception | timeout | oom | stuck | crash
    summary: str
    artifact: str | None
    log: str


@dataclass
class Result:
    name: str
    executions: int = 0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    seconds: float = 0.0
    runs: int = 0
    seeds: int = 0
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def exec_per_sec(self) -> int:
        return int(self.executions / self.seconds) if self.seconds else 0


# -- seeds ------------------------------------------------------------------------------------

def build_seeds(names: list[str], work: str, results: dict[str, Result]) -> None:
    from fuzz.seedbuild import SeedContext
    ctx = SeedContext(os.path.join(work, "seedbuild"))
    for name in names:
        out = os.path.join(work, "seeds", name)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        try:
            mod = importlib.import_module(f"fuzz.harnesses.{name}")
            for data in getattr(mod, "seeds", lambda c: ())(ctx):
                digest = hashlib.sha1(data).hexdigest()[:16]
                with open(os.path.join(out, f"seed-{digest}"), "wb") as fh:
                    fh.write(data)
                results[name].seeds += 1
        except Exception as exc:     # a broken writer must not stop the other harnesses
            results[name].notes.append(f"seeds: {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)
    shutil.rmtree(os.path.join(work, "seedbuild"), ignore_errors=True)


def max_len(name: str, work: str) -> int:
    mod = importlib.import_module(f"fuzz.harnesses.{name}")
    biggest = 0
    for d in seed_dirs(name, work):
        for f in os.listdir(d):
            biggest = max(biggest, os.path.getsize(os.path.join(d, f)))
    return max(mod.MAX_LEN, biggest)


def write_dict(name: str, work: str) -> str | None:
    """The harness' DICT tokens as a libFuzzer -dict file."""
    tokens = getattr(importlib.import_module(f"fuzz.harnesses.{name}"), "DICT", ())
    if not tokens:
        return None
    os.makedirs(os.path.join(work, "dicts"), exist_ok=True)
    path = os.path.join(work, "dicts", f"{name}.dict")
    with open(path, "w") as fh:
        for t in tokens:
            fh.write('"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\x{b:02x}" for b in t) + '"\n')
    return path


def seed_dirs(name: str, work: str) -> list[str]:
    dirs = [os.path.join(work, "seeds", name), os.path.join(ROOT, "fuzz", "seeds", name),
            os.path.join(ROOT, "tests", "regressions", name)]
    return [d for d in dirs if os.path.isdir(d)]


# -- workers ----------------------------------------------------------------------------------

_LAST = re.compile(r"^#(\d+)\s+\S+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.M)
_EXEC = re.compile(r"^#(\d+)\s", re.M)


def parse_log(text: str) -> dict:
    out = {"executions": 0, "cov": 0, "ft": 0, "corpus": 0}
    m = re.search(r"stat::number_of_executed_units: (\d+)", text)
    if m:
        out["executions"] = int(m.group(1))
    else:
        runs = _EXEC.findall(text)
        if runs:
            out["executions"] = int(runs[-1])
    stats = _LAST.findall(text)
    if stats:
        _, cov, ft, corp = stats[-1]
        out.update(cov=int(cov), ft=int(ft), corpus=int(corp))
    return out


def classify(text: str, rc: int | None) -> tuple[str, str]:
    if "=== Uncaught Python exception: ===" in text:
        tail = text.split("=== Uncaught Python exception: ===", 1)[1].strip().splitlines()
        frames = [ln.strip() for ln in tail if ln.startswith('  File "')]
        where = frames[-1] if frames else ""
        return "exception", f"{tail[0] if tail else '?'} ({where})"
    if "ERROR: libFuzzer: timeout" in text:
        return "timeout", f"an input ran longer than {INPUT_TIMEOUT} s"
    if "out-of-memory" in text:
        m = re.search(r"out-of-memory \(used: (\d+)Mb", text)
        return "oom", f"RSS above {RSS_LIMIT_MB} MiB" + (f" ({m.group(1)} MiB)" if m else "")
    if "deadly signal" in text:
        return "crash", "the worker died on a signal (segfault/abort in native code?)"
    return "crash", f"worker exit status {rc}"


def run_worker(name: str, seconds: int, work: str, k: int) -> tuple[dict, Failure | None, float]:
    corpus = os.path.join(work, "corpus", name)
    arts = os.path.join(work, "artifacts", name)
    logs = os.path.join(work, "logs")
    for d in (corpus, arts, logs):
        os.makedirs(d, exist_ok=True)
    log_path = os.path.join(logs, f"{name}-{k}.log")
    cmd = [sys.executable, "-m", "fuzz.worker", name, f"-max_total_time={seconds}", f"-timeout={INPUT_TIMEOUT}",
           f"-rss_limit_mb={RSS_LIMIT_MB}", f"-max_len={max_len(name, work)}", f"-artifact_prefix={arts}/",
           "-print_final_stats=1", "-print_pcs=0"]
    dict_path = write_dict(name, work)
    if dict_path:
        cmd.append(f"-dict={dict_path}")
    cmd += [corpus, *seed_dirs(name, work)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    before = set(os.listdir(arts))
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        stuck = False
        try:
            proc.wait(timeout=seconds + STARTUP + GRACE)
        except subprocess.TimeoutExpired:
            stuck = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    elapsed = time.monotonic() - start
    for leftover in _scratch(proc.pid):
        shutil.rmtree(leftover, ignore_errors=True)
    with open(log_path, "r", errors="replace") as fh:
        text = fh.read()
    stats = parse_log(text)
    new = sorted(set(os.listdir(arts)) - before)
    artifact = os.path.join(arts, new[0]) if new else None
    if stuck:
        return stats, Failure(name, "stuck", f"worker did not finish {GRACE} s after its time: killed",
                              artifact, log_path), elapsed
    if proc.returncode != 0 or "ERROR: libFuzzer" in text:
        kind, summary = classify(text, proc.returncode)
        return stats, Failure(name, kind, summary, artifact, log_path), elapsed
    return stats, None, elapsed


def _scratch(pid: int) -> list[str]:
    base = "/dev/shm"
    try:
        return [os.path.join(base, d) for d in os.listdir(base) if d.startswith(f"s390fuzz-{pid}-")]
    except OSError:
        return []


def fuzz_one(res: Result, slot: float, work: str, lock: threading.Lock) -> Result:
    end = time.monotonic() + slot
    k = 0
    while len(res.failures) < MAX_FAILURES:
        left = end - time.monotonic() - STARTUP
        if left < 1 and res.runs:
            break
        stats, failure, elapsed = run_worker(res.name, max(1, int(left)), work, k)
        k += 1
        res.runs += 1
        res.executions += stats["executions"]
        res.cov = max(res.cov, stats["cov"])
        res.ft = max(res.ft, stats["ft"])
        res.corpus = max(res.corpus, stats["corpus"])
        res.seconds += elapsed
        if failure is None:
            break
        res.failures.append(failure)
        with lock:
            print(f"fuzz: {res.name}: FAILURE ({failure.kind}) {failure.summary}", file=sys.stderr, flush=True)
    with lock:
        print(f"fuzz: {res.name}: {res.executions} executions, cov {res.cov}, {len(res.failures)} failures",
              file=sys.stderr, flush=True)
    return res


# -- replay -----------------------------------------------------------------------------------

def replay(name: str, files: list[str]) -> int:
    from fuzz.common import replay as replay_one
    mod = importlib.import_module(f"fuzz.harnesses.{name}")
    bad = 0
    for path in files:
        with open(path, "rb") as fh:
            data = fh.read()
        try:
            replay_one(mod.target, data)
            print(f"{path}: ok")
        except BaseException:
            bad += 1
            print(f"{path}: FAILED")
            traceback.print_exc()
    return 1 if bad else 0


# -- main -------------------------------------------------------------------------------------

def select(only: list[str] | None) -> tuple[list[str], dict[str, str]]:
    wanted = list(NAMES)
    if only:
        wanted = [n.strip() for item in only for n in item.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in NAMES]
        if unknown:
            raise SystemExit(f"python -m fuzz: unknown harness {', '.join(unknown)} (known: {', '.join(NAMES)})")
    skipped = {}
    for n in wanted:
        missing = [f for f in REQUIRES.get(n, ()) if not os.path.exists(os.path.join(ROOT, f))]
        if missing:
            skipped[n] = f"not yet written: {', '.join(missing)}"
    return wanted, skipped


def print_summary(results: list[Result], wall: float) -> None:
    print(f"{'harness':18} {'executions':>11} {'cov':>6} {'ft':>7} {'corpus':>7} {'exec/s':>7} {'failures':>8}")
    for r in results:
        if r.skipped:
            print(f"{r.name:18} {'skipped':>11}  ({r.skipped})")
            continue
        print(f"{r.name:18} {r.executions:>11} {r.cov:>6} {r.ft:>7} {r.corpus:>7} {r.exec_per_sec:>7} "
              f"{len(r.failures):>8}")
    run = [r for r in results if not r.skipped]
    total = sum(r.executions for r in run)
    nfail = sum(len(r.failures) for r in run)
    print(f"{'total':18} {total:>11} {'':>6} {'':>7} {'':>7} {'':>7} {nfail:>8}   ({len(run)} parsers, {wall:.0f} s)")
    for r in run:
        for note in r.notes:
            print(f"note: {r.name}: {note}")
        for f in r.failures:
            print(f"FAILURE {f.harness} [{f.kind}]: {f.summary}")
            print(f"    input: {f.artifact or '(none written)'}    log: {f.log}")
            if f.artifact:
                print(f"    replay: python -m fuzz --only {f.harness} --replay {f.artifact}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="wall-clock budget of the whole run")
    ap.add_argument("--only", action="append", help="harness name(s), comma separated (default: all)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="workers at a time")
    ap.add_argument("--work", default=os.path.join(ROOT, "out", "fuzz"), help="work directory")
    ap.add_argument("--fresh", action="store_true", help="start without the corpus of earlier runs")
    ap.add_argument("--json", help="write the summary as JSON to this file too")
    ap.add_argument("--list", action="store_true", help="list the harnesses and exit")
    ap.add_argument("--replay", nargs="+", metavar="FILE", help="run these inputs through --only NAME")
    args = ap.parse_args(argv)

    try:
        import atheris  # noqa: F401
    except ImportError:
        print("python -m fuzz: atheris is not installed (pip install atheris, or make install)", file=sys.stderr)
        return 2
    names, skipped = select(args.only)
    if args.list:
        for n in names:
            mod_doc = (importlib.import_module(f"fuzz.harnesses.{n}").__doc__ or "").strip().split("\n")[0]
            print(f"{n:18} {skipped.get(n, mod_doc)}")
        return 0
    if args.replay:
        if len(names) != 1:
            raise SystemExit("python -m fuzz: --replay needs exactly one --only NAME")
        return replay(names[0], args.replay)

    start = time.monotonic()
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    if args.fresh:
        shutil.rmtree(os.path.join(work, "corpus"), ignore_errors=True)
    results = {n: Result(n, skipped=skipped.get(n)) for n in names}
    active = [n for n in names if n not in skipped]
    build_seeds(active, work, results)
    jobs = max(1, min(args.jobs, len(active) or 1))
    left = args.seconds - (time.monotonic() - start) - 5
    waves = -(-len(active) // jobs) if active else 1
    slot = max(MIN_SLOT, left / waves)
    print(f"fuzz: {len(active)} harnesses, {jobs} at a time, {slot:.0f} s each "
          f"(budget {args.seconds:.0f} s, work {work})", file=sys.stderr, flush=True)
    lock = threading.Lock()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(fuzz_one, results[n], slot, work, lock) for n in active]
        for f in futures:
            f.result()
    wall = time.monotonic() - start
    ordered = [results[n] for n in names]
    print_summary(ordered, wall)
    summary = {"seconds": round(wall, 1), "budget": args.seconds, "jobs": jobs,
               "total_executions": sum(r.executions for r in ordered),
               "failures": sum(len(r.failures) for r in ordered),
               "harnesses": {r.name: dict(asdict(r), exec_per_sec=r.exec_per_sec) for r in ordered}}
    for path in filter(None, [os.path.join(work, "summary.json"), args.json]):
        with open(path, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 1 if summary["failures"] else 0
