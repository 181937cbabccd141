"""Issue 7: fault injection for every writer - nothing lost, nothing that claims to be complete.

Writers: the stand-alone full dump to a dump device (`sadump ipl --kdump off`), `vmcore save`
(the kdump kernel's saver), `vmcore convert`, `kexec-s390 load`.  Faults:

  * ENOSPC at a chosen byte offset: the output lives on a tmpfs we mount and then shrink to
    what it holds + N bytes (root only; skipped otherwise);
  * EFBIG at a chosen file offset: RLIMIT_FSIZE in the writer's process (any user);
  * EIO at a chosen byte offset: os.write / os.pwrite / os.pwritev / os.copy_file_range (and
    os.fsync) patched in-process, the CLI run in-process through clikit.run;
  * SIGKILL at a random point of the write (a subprocess, repeated).

After each: the CLI failed with one line on stderr and exit code 5 (I/O); no file is left at
the output name (only a complete one, when the kill came after the rename); a device dump
has no end marker and `sadump show` / `vmcore info` call it incomplete and say after which
segment; a machine's memory and state are exactly as before a failed load (tree_digest),
a killed load included (the next writing command rolls it back; a reading one only reports it).
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import resource
import signal
import stat
import subprocess
import sys
import time

import pytest

from dumpkit.clikit import run as run_app
from tests.conftest import ROOT, cli_json, copy_machine, default_signals, run_cli, tree_digest
from tests.realdata import debian_kernel, make_initrd

MIB = 1 << 20
DEVICE_SIZE = "300M"
SEED = int(os.environ.get("FAULTS_SEED", "390"))
KILLS = int(os.environ.get("FAULTS_KILLS", "3"))
# a kill lands at a random time: on a loaded machine all KILLS may miss the phase under test, so the
# SIGKILL tests go on (every invariant checked each time) until one landed, at most this many times
MAX_KILLS = 4 * KILLS


def _kills(landed):
    """Attempt numbers: at least KILLS, then more while `landed()` is still 0, up to MAX_KILLS."""
    i = 0
    while i < KILLS or (landed() == 0 and i < MAX_KILLS):
        yield i
        i += 1


# -- machines, devices, dumps ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel():
    return debian_kernel()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    return {"dir": str(d), "initrd": make_initrd(str(d / "initrd.img"), payload_size=MIB),
            "initrd2": make_initrd(str(d / "initrd2.img"), payload_size=3 * MIB)}


@pytest.fixture(scope="module")
def base(files):
    """A 256 MiB machine with 64 MiB crashkernel and no kdump loaded."""
    path = os.path.join(files["dir"], "base")
    run_cli("s390_machine.cli", "create", path, "--memory", "256M", "--cpus", "2", "--crashkernel", "64M",
            check=True)
    return path


@pytest.fixture(scope="module")
def loaded(base, kernel, files):
    path = copy_machine(base, os.path.join(files["dir"], "loaded"))
    run_cli("kexec_s390.cli", "load", "-p", kernel, "--initrd", files["initrd"], "--machine", path, check=True)
    return path


@pytest.fixture(scope="module")
def crashed(loaded, files):
    """Panicked with kdump loaded: the kdump kernel runs (what `vmcore save` needs)."""
    path = copy_machine(loaded, os.path.join(files["dir"], "crashed"))
    run_cli("s390_machine.cli", "panic", path, check=True)
    return path


@pytest.fixture(scope="module")
def elf_dump(crashed, files):
    path = os.path.join(files["dir"], "dump.elf")
    run_cli("vmcore.cli", "save", "--machine", crashed, "-o", path, "--no-progress", check=True)
    return path


@pytest.fixture(scope="module")
def after_load_memory(base, kernel, files):
    """memory.img digest of `base` after a successful load of kernel + initrd (the reference a
    kill after the load's commit point must match)."""
    path = copy_machine(base, os.path.join(files["dir"], "after-load"))
    run_cli("kexec_s390.cli", "load", "-p", kernel, "--initrd", files["initrd"], "--machine", path, check=True)
    return tree_digest(path)["memory.img"]


def new_device(directory: str, name: str = "dev.img") -> str:
    path = os.path.join(directory, name)
    run_cli("zipl_sadump.cli", "build", "--device", path, "--size", DEVICE_SIZE, check=True)
    return path


# -- the writers as a user runs them --------------------------------------------------------------


def ipl_args(dev, machine):
    return ["ipl", "--device", dev, "--machine", machine, "--kdump", "off", "--no-map", "--no-progress"]


def save_args(machine, out):
    return ["save", "--machine", machine, "-o", out, "--no-progress"]


def convert_args(dump, out):
    return ["convert", dump, "-o", out, "-f", "elf", "--no-progress"]


def load_args(kernel, initrd, machine):
    return ["load", "-p", kernel, "--initrd", initrd, "--machine", machine, "--no-progress"]


def cmd(module, args):
    return [sys.executable, "-m", module, *args]


# -- what must hold after a fault -----------------------------------------------------------------


def assert_io_error(rc: int, stderr: str, *words: str) -> None:
    assert rc == 5, f"exit code {rc}, stderr: {stderr}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for w in words:
        assert w in stderr, stderr


def assert_no_output(out: str, temp_too: bool = True) -> None:
    """Nothing at the output name (and, after a clean failure, no temporary file beside it)."""
    assert not os.path.exists(out), f"{out} was left behind"
    if temp_too:
        base = "." + os.path.basename(out) + "."
        left = [f for f in os.listdir(os.path.dirname(out)) if f.startswith(base)]
        assert not left, f"temporary files left: {left}"


def device_dump(dev: str) -> dict:
    return cli_json("zipl_sadump.cli", "show", "--device", dev)["dump"]


def assert_device_incomplete(dev: str) -> dict:
    """No end marker anywhere in the dump area, and the reader says the dump is incomplete and
    after which segment it stops (or that there is no dump at all)."""
    d = device_dump(dev)
    assert not d["complete"], d
    assert d["end_marker_tod"] is None, d
    if d["present"]:
        assert d["reason"].startswith("incomplete: no end marker after "), d["reason"]
    assert b"DUMP_END" not in device_data(dev)
    return d


def device_data(dev: str) -> bytes:
    from dumpkit.fileio import data_extents
    out = bytearray()
    fd = os.open(dev, os.O_RDONLY)
    try:
        for s, e in data_extents(fd, os.fstat(fd).st_size):
            out += os.pread(fd, e - s, s)
    finally:
        os.close(fd)
    return bytes(out)


def memory_digest(machine: str) -> tuple:
    return tree_digest(machine)["memory.img"]


# -- ENOSPC: a tmpfs of our own, shrunk to what it holds + N bytes --------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """mount(dir) -> a fresh tmpfs at dir; limit(dir, n) -> shrink it to its use + n bytes."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the EFBIG and EIO tests cover the other users)")
    mounted = []

    class FS:
        @staticmethod
        def mount(name: str = "fs") -> str:
            d = tmp_path / name
            d.mkdir()
            proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g,mode=0755", "tmpfs", str(d)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
            mounted.append(str(d))
            return str(d)

        @staticmethod
        def limit(d: str, free: int) -> None:
            st = os.statvfs(d)
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            size = used + free
            size -= size % 4096
            subprocess.run(["mount", "-o", f"remount,size={max(size, 4096)}", d], check=True)
            st = os.statvfs(d)
            assert abs(st.f_bavail * st.f_frsize - free) < 8192, (st.f_bavail * st.f_frsize, free)

    yield FS
    for d in reversed(mounted):
        if subprocess.run(["umount", d], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", d], capture_output=True)


@pytest.mark.parametrize("free", [0, 64 * 1024, 2 * MIB, 7 * MIB])
def test_enospc_full_dump(free, small_fs, loaded, tmp_path):
    fs = small_fs.mount()
    dev = new_device(fs)
    machine = copy_machine(loaded, str(tmp_path / "m"))
    small_fs.limit(fs, free)
    proc = run_cli("zipl_sadump.cli", *ipl_args(dev, machine))
    assert_io_error(proc.returncode, proc.stderr, "No space left on device")
    d = assert_device_incomplete(dev)
    assert d["present"] == (free >= 2 * 4096), d
    assert cli_json("s390_machine.cli", "show", machine)["status"] == "disabled-wait"


@pytest.mark.parametrize("free", [0, 4096, 3 * MIB])
def test_enospc_vmcore_save(free, small_fs, crashed, tmp_path):
    fs = small_fs.mount()
    out = os.path.join(fs, "vmcore.elf")
    small_fs.limit(fs, free)
    proc = run_cli("vmcore.cli", *save_args(crashed, out))
    assert_io_error(proc.returncode, proc.stderr, "No space left on device")
    assert_no_output(out)


@pytest.mark.parametrize("free", [0, 1 * MIB, 5 * MIB])
def test_enospc_vmcore_convert(free, small_fs, elf_dump, tmp_path):
    fs = small_fs.mount()
    out = os.path.join(fs, "copy.elf")
    small_fs.limit(fs, free)
    proc = run_cli("vmcore.cli", *convert_args(elf_dump, out))
    assert_io_error(proc.returncode, proc.stderr, "No space left on device")
    assert_no_output(out)


def _journal_bytes(machine: str, kernel: str, initrd: str) -> int:
    """What the load's journal holds: the data (not holes) of every range the load overwrites."""
    from meminfo_abi.kernel_image import read_kernel_image
    from kexec_s390.plan import plan_load
    from s390_machine.machine import Machine
    with Machine.open(machine, "read") as m:
        ck = m.state.crashkernel
        plan = plan_load(read_kernel_image(kernel), initrd, None, kdump=True, crash_base=ck.base,
                         crash_size=ck.size)
        ranges = [(s.mem, s.memsz) for s in plan.segments] + [(ck.base + 0x2000, 0x1000), (0x400000, 0x1000)]
        return sum(e - s for a, n in ranges for s, e in m.memory.data_ranges(a, a + n))


@pytest.mark.parametrize("case", ["first-load-journal", "first-load-storage", "reload-journal", "reload-storage"])
def test_enospc_kexec_load_leaves_machine_unchanged(case, small_fs, base, loaded, kernel, files):
    fs = small_fs.mount()
    src = base if case.startswith("first") else loaded
    machine = copy_machine(src, os.path.join(fs, "m"))
    initrd = files["initrd2"]             # larger than the loaded one: a reload needs new pages
    journal = _journal_bytes(machine, kernel, initrd)
    free = journal // 2 if case.endswith("journal") else journal + 16 * 4096
    small_fs.limit(fs, free)
    before = tree_digest(machine)
    proc = run_cli("kexec_s390.cli", *load_args(kernel, initrd, machine))
    where = "kexec load journal" if case.endswith("journal") else "writing memory image"
    assert_io_error(proc.returncode, proc.stderr, "No space left on device", where)
    assert tree_digest(machine) == before
    status = cli_json("kexec_s390.cli", "status", "--machine", machine) if src is loaded else None
    assert status is None or status["kdump_intact"]


# -- EFBIG: RLIMIT_FSIZE in the writer's process ---------------------------------------------------


def _with_fsize(limit: int):
    def pre():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def test_efbig_full_dump(loaded, tmp_path):
    dev = new_device(str(tmp_path))
    machine = copy_machine(loaded, str(tmp_path / "m"))
    # the dump area starts at 0x18000: 5 MiB into it (store status writes the machine's memory
    # image below 0x414000, which the limit must let through)
    limit = 0x18000 + 5 * MIB
    proc = subprocess.run(cmd("zipl_sadump.cli", ipl_args(dev, machine)), capture_output=True, text=True,
                          cwd=ROOT, preexec_fn=_with_fsize(limit))
    assert_io_error(proc.returncode, proc.stderr, "File too large")
    d = assert_device_incomplete(dev)
    assert d["present"] and d["segments"] >= 1, d


def test_efbig_vmcore_save(crashed, tmp_path):
    out = str(tmp_path / "vmcore.elf")
    proc = subprocess.run(cmd("vmcore.cli", save_args(crashed, out)), capture_output=True, text=True, cwd=ROOT,
                          preexec_fn=_with_fsize(2 * MIB))
    assert_io_error(proc.returncode, proc.stderr, "File too large")
    assert_no_output(out)


def test_efbig_kexec_load(base, kernel, files, tmp_path):
    machine = copy_machine(base, str(tmp_path / "m"))
    before = tree_digest(machine)
    limit = 0xC000000 + 2 * MIB                   # memory.img offset 2 MiB into the crashkernel
    proc = subprocess.run(cmd("kexec_s390.cli", load_args(kernel, files["initrd"], machine)),
                          capture_output=True, text=True, cwd=ROOT, preexec_fn=_with_fsize(limit))
    assert_io_error(proc.returncode, proc.stderr, "File too large")
    assert tree_digest(machine) == before


# -- EIO: the write calls fail once N bytes went to the file ---------------------------------------


class FaultyWrites:
    """os-level writes to files `match(path)` accepts fail with `err` once `after` bytes were
    written to them: the write that crosses the mark is cut short there, the next one raises.
    once=True: only that one call fails (a transient error); fsync=True: every fsync of such a
    file fails (the error a write-back failure reports)."""

    def __init__(self, monkeypatch, match, after: int, err: int = errno.EIO, once: bool = False,
                 fsync: bool = False):
        self.match, self.after, self.err, self.once, self.fsync = match, after, err, once, fsync
        self.written = 0
        self.failed = 0
        real = {n: getattr(os, n) for n in ("write", "pwrite", "pwritev", "writev", "copy_file_range", "fsync")}
        self.real = real

        def gate(fd: int, n: int) -> int:
            """How many of n bytes may go through (raises when none may)."""
            if not self._target(fd) or (self.once and self.failed):
                return n
            if self.written >= self.after:
                self.failed += 1
                raise OSError(self.err, os.strerror(self.err))
            allowed = min(n, self.after - self.written)
            self.written += allowed
            return allowed

        def write(fd, data):
            k = gate(fd, memoryview(data).nbytes)
            return real["write"](fd, memoryview(data)[:k])

        def pwrite(fd, data, offset):
            k = gate(fd, memoryview(data).nbytes)
            return real["pwrite"](fd, memoryview(data).cast("B")[:k], offset)

        def pwritev(fd, buffers, offset, *flags):
            data = b"".join(bytes(b) for b in buffers)
            k = gate(fd, len(data))
            return real["pwrite"](fd, data[:k], offset)

        def writev(fd, buffers):
            data = b"".join(bytes(b) for b in buffers)
            k = gate(fd, len(data))
            return real["write"](fd, data[:k])

        def copy_file_range(src, dst, count, offset_src=None, offset_dst=None):
            k = gate(dst, count)
            return real["copy_file_range"](src, dst, k, offset_src, offset_dst)

        def fsync(fd):
            if self.fsync and self._target(fd) and not (self.once and self.failed):
                self.failed += 1
                raise OSError(self.err, os.strerror(self.err))
            return real["fsync"](fd)

        for name, fn in (("write", write), ("pwrite", pwrite), ("pwritev", pwritev), ("writev", writev),
                         ("copy_file_range", copy_file_range), ("fsync", fsync)):
            monkeypatch.setattr(os, name, fn)

    def _target(self, fd: int) -> bool:
        try:
            return self.match(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return False


def run_in_process(app_module: str, prog: str, args: list[str], capsys) -> tuple[int, str]:
    import importlib
    app = importlib.import_module(app_module).app
    capsys.readouterr()
    rc = run_app(app, prog, args)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("after,fsync", [(0, False), (1 * MIB, False), (5 * MIB + 123, False), (1 << 40, True)])
def test_eio_full_dump(after, fsync, loaded, tmp_path, monkeypatch, capsys):
    dev = new_device(str(tmp_path))
    machine = copy_machine(loaded, str(tmp_path / "m"))
    f = FaultyWrites(monkeypatch, lambda p: p == dev, after, fsync=fsync)
    rc, err = run_in_process("zipl_sadump.cli", "sadump", ipl_args(dev, machine), capsys)
    monkeypatch.undo()
    assert f.failed, "the fault was never hit"
    assert_io_error(rc, err, "Input/output error")
    assert_device_incomplete(dev)


@pytest.mark.parametrize("after,fsync", [(0, False), (100, False), (3 * MIB + 1, False), (1 << 40, True)])
def test_eio_vmcore_save(after, fsync, crashed, tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = str(out_dir / "vmcore.elf")
    f = FaultyWrites(monkeypatch, lambda p: p.startswith(str(out_dir)), after, fsync=fsync)
    rc, err = run_in_process("vmcore.cli", "vmcore", save_args(crashed, out), capsys)
    monkeypatch.undo()
    assert f.failed, "the fault was never hit"
    assert_io_error(rc, err, "Input/output error")
    assert_no_output(out)


@pytest.mark.parametrize("after", [0, 2 * MIB + 7])
def test_eio_vmcore_convert(after, elf_dump, tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = str(out_dir / "copy.elf")
    f = FaultyWrites(monkeypatch, lambda p: p.startswith(str(out_dir)), after)
    rc, err = run_in_process("vmcore.cli", "vmcore", convert_args(elf_dump, out), capsys)
    monkeypatch.undo()
    assert f.failed, "the fault was never hit"
    assert_io_error(rc, err, "Input/output error")
    assert_no_output(out)


@pytest.mark.parametrize("src", ["base", "loaded"])
@pytest.mark.parametrize("after", [0, 4096, 3 * MIB + 5])
def test_eio_kexec_load_restores_storage(src, after, base, loaded, kernel, files, tmp_path, monkeypatch, capsys):
    machine = copy_machine(base if src == "base" else loaded, str(tmp_path / "m"))
    before = tree_digest(machine)
    mem = os.path.join(machine, "memory.img")
    f = FaultyWrites(monkeypatch, lambda p: p == mem, after, once=True)
    rc, err = run_in_process("kexec_s390.cli", "kexec-s390", load_args(kernel, files["initrd2"], machine), capsys)
    monkeypatch.undo()
    assert f.failed == 1
    assert_io_error(rc, err, "Input/output error")
    assert tree_digest(machine) == before


def test_eio_that_persists_is_rolled_back_by_the_next_open(loaded, kernel, files, tmp_path, monkeypatch, capsys):
    """The disk keeps failing: the load cannot restore storage itself, so it leaves its journal;
    once the disk works again, the next command that opens the machine rolls the load back."""
    machine = copy_machine(loaded, str(tmp_path / "m"))
    before = tree_digest(machine)
    mem = os.path.join(machine, "memory.img")
    f = FaultyWrites(monkeypatch, lambda p: p == mem, 2 * MIB)
    rc, err = run_in_process("kexec_s390.cli", "kexec-s390", load_args(kernel, files["initrd2"], machine), capsys)
    monkeypatch.undo()
    assert f.failed >= 2                   # the load's write and the restore's
    assert_io_error(rc, err, "Input/output error")
    assert os.path.exists(os.path.join(machine, "kexec-load.journal"))
    status = run_cli("kexec_s390.cli", "status", "--machine", machine, "--json")   # reads: rolls nothing back
    assert "interrupted kexec load; the next writing command rolls it back" in status.stderr
    assert os.path.exists(os.path.join(machine, "kexec-load.journal"))
    run_cli("s390_machine.cli", "recover", machine, check=True)                    # writes: rolls back
    assert cli_json("kexec_s390.cli", "status", "--machine", machine)["kdump_intact"]
    assert tree_digest(machine) == before


# -- SIGKILL at a random point ---------------------------------------------------------------------


def _kill_during(argv: list[str], started, window: float, rng: random.Random) -> tuple[bool, bool]:
    """Start the writer, wait until `started()` says it writes, SIGKILL it a random time later
    (uniform in [0, window]).  Returns (it was still running, `started()` held at the kill)."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not started() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, window))
        running = proc.poll() is None
        mid = started()
        proc.kill()
    finally:
        proc.wait()
    return running, mid


def _timed(argv: list[str], started, phase: bool = False) -> float:
    """Seconds a normal run spends writing: from `started()` to the end of the run, or with
    phase=True until `started()` is false again (a temporary file renamed, a journal removed)."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = t1 = None
    while proc.poll() is None:
        now = started()
        if t0 is None and now:
            t0 = time.monotonic()
        elif t0 is not None and t1 is None and phase and not now:
            t1 = time.monotonic()
        time.sleep(0.001)
    assert proc.returncode == 0, proc.stderr.read()
    end = t1 or time.monotonic()
    assert t0 is not None, "the write phase was never seen"
    return end - t0


def _temp_beside(out: str):
    d, prefix = os.path.dirname(out), "." + os.path.basename(out) + "."
    return lambda: any(f.startswith(prefix) for f in os.listdir(d))


def _allocated(path: str, initial: int):
    return lambda: os.stat(path).st_blocks > initial


@pytest.mark.slow
def test_sigkill_full_dump(loaded, tmp_path):
    rng = random.Random(SEED)
    ref_dev = new_device(str(tmp_path), "ref.img")
    window = _timed(cmd("zipl_sadump.cli", ipl_args(ref_dev, copy_machine(loaded, str(tmp_path / "ref")))),
                    _allocated(ref_dev, os.stat(ref_dev).st_blocks))
    outcomes = []
    for i in _kills(lambda: outcomes.count(False)):
        dev = new_device(str(tmp_path), f"dev{i}.img")
        machine = copy_machine(loaded, str(tmp_path / f"m{i}"))
        running, _ = _kill_during(cmd("zipl_sadump.cli", ipl_args(dev, machine)),
                                  _allocated(dev, os.stat(dev).st_blocks), 0.8 * window, rng)
        d = device_dump(dev)
        if d["complete"]:
            assert not running or d["end_marker_tod"], d     # killed after the end marker: fine
        else:
            assert_device_incomplete(dev)
        outcomes.append(d["complete"])
    print(f"sigkill full dump: {outcomes.count(False)}/{len(outcomes)} killed mid-dump (window {window:.2f} s)")
    assert outcomes.count(False) >= 1, "no kill landed inside the dump: the test proved nothing"


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["save", "convert"])
def test_sigkill_vmcore_writers(writer, crashed, elf_dump, tmp_path):
    rng = random.Random(SEED + 1)

    def argv(out):
        return cmd("vmcore.cli", save_args(crashed, out) if writer == "save" else convert_args(elf_dump, out))

    ref = str(tmp_path / "ref.elf")
    window = _timed(argv(ref), _temp_beside(ref), phase=True)
    mid_write = 0
    left = {}
    for i in _kills(lambda: mid_write):
        out = str(tmp_path / f"out{i}.elf")
        running, mid = _kill_during(argv(out), _temp_beside(out), 0.8 * window, rng)
        if os.path.exists(out):              # renamed into place before the kill: must be whole
            assert run_cli("vmcore.cli", "info", out, "--json").returncode == 0
            assert os.path.getsize(out) == os.path.getsize(ref)
        else:
            mid_write += mid
        if _temps_of(out):
            left[out] = _temps_of(out)
    print(f"sigkill vmcore {writer}: {mid_write}/{i + 1} killed while writing (window {window:.2f} s)")
    assert mid_write >= 1, "no kill landed inside the write: the test proved nothing"
    # the killed run's temporary stays; the next run of the same output removes it, says so, succeeds
    assert left, "no kill left a temporary file"
    for out, temps in left.items():
        proc = subprocess.run(argv(out), cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        for t in temps:
            assert re.search(rf"^removed stale temporary {re.escape(t)} \([0-9.]+ [KMG]?i?B\) "
                             r"left by an interrupted run$", proc.stderr, re.M), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == len(temps), proc.stderr
        assert not _temps_of(out)
        assert os.path.getsize(out) == os.path.getsize(ref)
        assert run_cli("vmcore.cli", "info", out, "--json").returncode == 0


def _temps_of(out: str) -> list[str]:
    d, prefix = os.path.dirname(out), "." + os.path.basename(out) + "."
    return sorted(f for f in os.listdir(d) if f.startswith(prefix) and f.endswith(".tmp"))


def test_stale_temporaries_of_live_writers_and_other_targets_are_left_alone(elf_dump, tmp_path):
    """Only what no living writer holds and what belongs to this output is removed."""
    import fcntl
    out = str(tmp_path / "copy.elf")
    temps = {name: str(tmp_path / name) for name in (
        ".copy.elf.live0000.tmp",            # a writer of copy.elf that is running (holds its lock)
        ".copy.elf.stale000.tmp",            # a writer of copy.elf that was killed
        ".other.elf.stale000.tmp",           # another output's
        ".copy.elf.gz.stale000.tmp",         # copy.elf.gz's, whose name starts like ours
        ".copy.stale000.tmp",                # copy's
    )}
    for name, path in temps.items():
        with open(path, "wb") as fh:
            fh.write(name.encode() * 1000)
    live = open(temps[".copy.elf.live0000.tmp"], "r+b")
    try:
        fcntl.flock(live.fileno(), fcntl.LOCK_EX)
        proc = run_cli("vmcore.cli", *convert_args(elf_dump, out))
        assert proc.returncode == 0, proc.stderr
        assert re.fullmatch(r"removed stale temporary \.copy\.elf\.stale000\.tmp \([0-9.]+ KiB\) left by an "
                            r"interrupted run\n", proc.stderr), proc.stderr
        assert os.path.getsize(out) == os.path.getsize(elf_dump)
        for name, path in temps.items():
            if name != ".copy.elf.stale000.tmp":
                with open(path, "rb") as fh:
                    assert fh.read() == name.encode() * 1000, name
        assert not os.path.exists(temps[".copy.elf.stale000.tmp"])
    finally:
        live.close()
    # once its writer is gone, the live one is stale too (copy.elf exists now: --force replaces it)
    proc = run_cli("vmcore.cli", *convert_args(elf_dump, out), "--force")
    assert proc.returncode == 0 and "removed stale temporary .copy.elf.live0000.tmp" in proc.stderr, proc.stderr
    assert sorted(os.listdir(tmp_path)) == sorted([".other.elf.stale000.tmp", ".copy.elf.gz.stale000.tmp",
                                                   ".copy.stale000.tmp", "copy.elf"])


def test_stale_temporaries_in_process(tmp_path, capsys):
    """The helper every writer uses: a killed `s390-machine create` leaves a temporary
    directory, removed by the next create of the same machine; a symlink or a name that is
    not ours is never followed or removed."""
    from dumpkit.fileio import atomic_directory, atomic_file
    stale_dir = tmp_path / ".m.abcdefgh.tmp"
    stale_dir.mkdir()
    (stale_dir / "memory.img").write_bytes(b"\1" * 8192)
    (tmp_path / "victim").write_bytes(b"keep")
    os.symlink(tmp_path / "victim", tmp_path / ".out.abcdefgh.tmp")
    (tmp_path / ".out.abc.tmp").write_bytes(b"not a name we make")
    with atomic_directory(tmp_path / "m") as tmp:
        assert os.path.basename(tmp).startswith(".m.") and os.path.isdir(tmp)
    with atomic_file(tmp_path / "out") as fh:
        fh.write(b"x")
    err = capsys.readouterr().err
    assert re.fullmatch(r"removed stale temporary \.m\.abcdefgh\.tmp \([0-9.]+ KiB\) left by an interrupted run\n",
                        err), err
    assert sorted(os.listdir(tmp_path)) == [".out.abc.tmp", ".out.abcdefgh.tmp", "m", "out", "victim"]
    assert (tmp_path / "victim").read_bytes() == b"keep"


@pytest.mark.slow
def test_sigkill_kexec_load_is_rolled_back(base, kernel, files, after_load_memory, tmp_path):
    rng = random.Random(SEED + 2)

    def journal(machine):
        return lambda: any(f.startswith(".kexec-load.journal.") or f == "kexec-load.journal" for f in os.listdir(machine))

    ref = copy_machine(base, str(tmp_path / "ref"))
    window = _timed(cmd("kexec_s390.cli", load_args(kernel, files["initrd"], ref)), journal(ref), phase=True)
    rolled_back = 0
    for i in _kills(lambda: rolled_back):
        machine = copy_machine(base, str(tmp_path / f"m{i}"))
        before = tree_digest(machine)
        running, mid = _kill_during(cmd("kexec_s390.cli", load_args(kernel, files["initrd"], machine)),
                                    journal(machine), 0.8 * window, rng)
        run_cli("s390_machine.cli", "recover", machine, check=True)              # a writer: rolls back
        proc = run_cli("kexec_s390.cli", "status", "--machine", machine, "--json")
        assert proc.returncode in (0, 1), proc.stderr           # 1: kdump not loaded
        status = json.loads(proc.stdout)
        after = tree_digest(machine)
        if after == before:
            rolled_back += mid
            assert not status["loaded"]
        else:                                # killed after the load's commit point: fully loaded
            assert after["memory.img"] == after_load_memory
            assert status["kdump_intact"]
        assert not journal(machine)()
    print(f"sigkill kexec load: {rolled_back}/{i + 1} rolled back (window {window:.2f} s)")
    assert rolled_back >= 1, "no kill landed inside the load: the test proved nothing"


def test_interrupted_device_dump_vmcore_info(loaded, tmp_path):
    """`vmcore info` on a device whose dump stopped: exit code 4, incomplete, and from where."""
    dev = new_device(str(tmp_path))
    machine = copy_machine(loaded, str(tmp_path / "m"))
    limit = 0x18000 + 6 * MIB
    proc = subprocess.run(cmd("zipl_sadump.cli", ipl_args(dev, machine)), capture_output=True, text=True,
                          cwd=ROOT, preexec_fn=_with_fsize(limit))
    assert proc.returncode == 5, proc.stderr
    shown = assert_device_incomplete(dev)
    info = run_cli("vmcore.cli", "info", dev, "--json")
    assert info.returncode == 4, info.stderr
    data = json.loads(info.stdout)
    assert data["complete"] is False
    reason = data["incomplete_reason"] or ""
    assert "incomplete" in reason.lower() or "end marker" in reason, reason
    assert re.search(r"0x[0-9a-f]+", reason), f"the reason does not say from where: {reason}"
    assert shown["reason"].startswith("incomplete: no end marker after segment ending at 0x"), shown


# -- issue 15: every file writer x {ENOSPC, SIGTERM, SIGKILL} x {new file, existing file, symlink, FIFO} --
#
# A new file and a symlink's target are absent after the fault, an existing file is byte-identical
# (unless a SIGKILL came after the rename: then it is whole), a symlink is still the same link and
# a FIFO still a FIFO; no temporary is left after ENOSPC or SIGTERM (SIGKILL's is removed by the
# next run: test_sigkill_vmcore_writers).  Formats that need seeking refuse a FIFO at once (exit 2);
# kdump streams into it (flattened), and what a reader got before the fault never reads as complete.
# Under ENOSPC the stream target is /dev/full.

STREAMING = ("convert-kdump", "save-kdump")
FILE_WRITERS = ("convert-elf", "convert-kdump", "save-kdump", "extract", "manifest")
TARGETS = ("new", "existing", "symlink", "fifo")
OLD = b"an older dump nobody may lose\n" * 2000


@pytest.fixture(scope="module")
def dumped_device(loaded, files):
    """A device holding a complete full dump (what `sadump extract` reads)."""
    dev = new_device(files["dir"], "dumped.img")
    run_cli("zipl_sadump.cli", *ipl_args(dev, copy_machine(loaded, os.path.join(files["dir"], "for-dev"))),
            check=True)
    return dev


def _writer_argv(writer: str, out: str, crashed: str, elf_dump: str, device: str) -> list[str]:
    return {
        "convert-elf": cmd("vmcore.cli", convert_args(elf_dump, out) + ["--force"]),
        "convert-kdump": cmd("vmcore.cli", ["convert", elf_dump, "-o", out, "-f", "kdump", "--no-progress",
                                            "--force"]),
        "save-kdump": cmd("vmcore.cli", save_args(crashed, out) + ["-f", "kdump", "--force"]),
        "extract": cmd("zipl_sadump.cli", ["extract", "--device", device, "-f", "s390_ext", "-o", out, "--no-progress",
                                            "--force"]),
        "manifest": cmd("vmcore.cli", ["verify", elf_dump, "--write-manifest", out, "--no-progress", "--force"]),
    }[writer]


class Target:
    """The output as the user points at it, and what must hold of it after a fault."""

    def __init__(self, kind: str, directory: str):
        self.kind, self.dir = kind, directory
        self.path = os.path.join(directory, "out")
        self.file = self.path                 # where the bytes land (a symlink's target)
        self.received = os.path.join(os.path.dirname(directory), "received")
        self.reader = None
        if kind == "existing":
            with open(self.path, "wb") as fh:
                fh.write(OLD)
        elif kind == "symlink":
            os.symlink("real-out", self.path)
            self.file = os.path.join(directory, "real-out")
        elif kind == "fifo":
            os.mkfifo(self.path)

    def start_reader(self) -> None:
        import threading

        def drain():
            with open(self.path, "rb") as src, open(self.received, "wb") as dst:
                while True:
                    b = src.read(65536)
                    if not b:
                        return
                    dst.write(b)
                    dst.flush()

        self.reader = threading.Thread(target=drain, daemon=True)
        self.reader.start()

    def writing(self) -> bool:
        """The writer is under way: its temporary exists, or the FIFO's reader got bytes."""
        if self.kind == "fifo":
            return os.path.exists(self.received) and os.path.getsize(self.received) > 0
        prefix = "." + os.path.basename(self.file) + "."
        return any(f.startswith(prefix) for f in os.listdir(os.path.dirname(self.file)))

    def temporaries(self) -> list[str]:
        prefix = "." + os.path.basename(self.file) + "."
        return [f for f in os.listdir(os.path.dirname(self.file)) if f.startswith(prefix)]

    def check_untouched(self, may_be_whole: bool = False, whole=None) -> None:
        """`whole(path)`: the writer's output there is complete (a SIGKILL after the rename)."""
        if self.kind == "fifo":
            assert stat.S_ISFIFO(os.lstat(self.path).st_mode), "the FIFO was replaced"
            if self.reader is not None:
                self.reader.join(30)
                assert not self.reader.is_alive()
            if os.path.exists(self.received) and os.path.getsize(self.received):
                self._received_is_not_complete()
            return
        if self.kind == "symlink":
            assert os.path.islink(self.path) and os.readlink(self.path) == "real-out", "the symlink was replaced"
        if may_be_whole and os.path.exists(self.file) and (self.kind != "existing" or _read(self.file) != OLD):
            assert (whole or _dump_is_whole)(self.file), f"{self.file} is not whole"   # renamed after the write
            return
        if self.kind == "existing":
            assert _read(self.file) == OLD, "the existing file was changed"
        else:
            assert not os.path.exists(self.file), f"{self.file} was left behind"

    def _received_is_not_complete(self) -> None:
        """What the FIFO's reader got reads as complete only if the stream was ended (its end
        record written before the fault)."""
        from meminfo_abi.diskdump import FLAT_END_RECORD
        from dumpkit.errors import DumpToolError
        from vmcore.formats import open_dump
        with open(self.received, "rb") as fh:
            fh.seek(max(0, os.path.getsize(self.received) - len(FLAT_END_RECORD)))
            if fh.read() == FLAT_END_RECORD:
                return
        try:
            with open_dump(self.received) as d:
                assert not d.attrs.complete, "a cut stream reads as complete"
        except DumpToolError:
            pass                               # refused as damaged: fine


def _dump_is_whole(path: str) -> bool:
    return run_cli("vmcore.cli", "info", path, "--json").returncode == 0


def _manifest_is_whole(elf_dump: str):
    return lambda path: run_cli("vmcore.cli", "verify", elf_dump, "--manifest", path).returncode == 0


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _matrix(faults):
    out = []
    for fault in faults:
        for writer in FILE_WRITERS:
            for target in TARGETS:
                if target == "fifo" and writer not in STREAMING and fault != "SIGTERM":
                    continue                   # refused before anything happens: checked once, under SIGTERM
                marks = [pytest.mark.slow] if fault in ("SIGKILL", "SIGTERM") else []   # a process killed
                out.append(pytest.param(fault, writer, target, id=f"{fault}-{writer}-{target}", marks=marks))
    return out


@pytest.mark.parametrize("fault,writer,target", _matrix(["ENOSPC"]))
def test_enospc_every_writer_every_target(fault, writer, target, small_fs, crashed, elf_dump, dumped_device):
    fs = small_fs.mount()
    t = Target(target, fs)
    out = "/dev/full" if target == "fifo" else t.path
    small_fs.limit(fs, 16 * 1024)
    proc = run_cli(*_writer_argv(writer, out, crashed, elf_dump, dumped_device)[2:])   # drop python -m
    assert_io_error(proc.returncode, proc.stderr)
    # kdump checks the room for its page descriptors before it writes (a one-line refusal too)
    assert "No space left on device" in proc.stderr or "free" in proc.stderr, proc.stderr
    if target == "fifo":
        assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)
    else:
        t.check_untouched()
        assert not t.temporaries()


@pytest.mark.parametrize("after", [0, 64 * 1024 + 3])
@pytest.mark.parametrize("fault,writer,target", [p for p in _matrix(["EIO"]) if p.values[2] != "fifo"])
def test_eio_every_writer_every_target(fault, writer, target, after, crashed, elf_dump, dumped_device, tmp_path,
                                       monkeypatch, capsys):
    """EIO from the disk at the first byte or part way (or, for writers that go through Python's
    buffered files, from fsync, as a failed write-back reports it): one line, exit 5, the target
    as it was (an existing file byte-identical, a symlink still a symlink), no temporary left."""
    d = tmp_path / "out-dir"
    d.mkdir()
    t = Target(target, str(d))
    argv = _writer_argv(writer, t.path, crashed, elf_dump, dumped_device)
    module, args = argv[argv.index("-m") + 1], argv[argv.index("-m") + 2:]
    f = FaultyWrites(monkeypatch, lambda p: p.startswith(str(d)), after, fsync=True)
    rc, err = run_in_process(module, module.split(".")[0], args, capsys)
    monkeypatch.undo()
    assert f.failed, "the fault was never hit"
    assert_io_error(rc, err, "Input/output error")
    t.check_untouched()
    assert not t.temporaries()


def _signal_when_writing(argv: list[str], t: Target, sig: int, streams: bool, delay: float = 0.0) \
        -> subprocess.Popen:
    if t.kind == "fifo" and streams:
        t.start_reader()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals)
    deadline = time.monotonic() + 120
    while not t.writing():
        if proc.poll() is not None:
            return proc                        # finished (or refused) before the write was seen
        assert time.monotonic() < deadline, "the write never started"
        time.sleep(0.001)
    time.sleep(delay)
    proc.send_signal(sig)
    return proc


@pytest.mark.parametrize("fault,writer,target", _matrix(["SIGTERM"]))
def test_sigterm_every_writer_every_target(fault, writer, target, crashed, elf_dump, dumped_device, tmp_path):
    d = tmp_path / "out-dir"
    d.mkdir()
    t = Target(target, str(d))
    argv = _writer_argv(writer, t.path, crashed, elf_dump, dumped_device)
    proc = _signal_when_writing(argv, t, signal.SIGTERM, writer in STREAMING)
    err = proc.stderr.read()
    proc.wait(120)
    if target == "fifo" and writer not in STREAMING:
        assert proc.returncode == 2 and len(err.splitlines()) == 1 and "FIFO" in err, err
    else:
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert re.fullmatch(r"[a-z-]+: error: stopped by SIGTERM [^\n]*\n", err), err
    t.check_untouched()
    if target != "fifo":
        assert not t.temporaries()


@pytest.mark.parametrize("fault,writer,target", _matrix(["SIGKILL"]))
def test_sigkill_every_writer_every_target(fault, writer, target, crashed, elf_dump, dumped_device, tmp_path):
    rng = random.Random(f"{SEED}-{writer}-{target}")
    d = tmp_path / "out-dir"
    d.mkdir()
    t = Target(target, str(d))
    argv = _writer_argv(writer, t.path, crashed, elf_dump, dumped_device)
    proc = _signal_when_writing(argv, t, signal.SIGKILL, writer in STREAMING, delay=rng.uniform(0, 0.2))
    proc.stderr.read()
    proc.wait(120)
    t.check_untouched(may_be_whole=True, whole=_manifest_is_whole(elf_dump) if writer == "manifest" else None)
    if t.temporaries():                        # the next run removes what the killed one left
        rerun = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert "removed stale temporary" in rerun.stderr
        assert not t.temporaries()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_kexec_load_rolls_back(sig, base, kernel, files, tmp_path):
    """A load stopped by SIGTERM/SIGHUP once its journal exists: exit 128+N with one line, and
    the machine exactly as before: restored at once, or (a signal between two steps of the
    journal's life) by the next command that opens it, which removes the journal."""
    machine = copy_machine(base, str(tmp_path / "m"))
    before = tree_digest(machine)
    proc = subprocess.Popen(cmd("kexec_s390.cli", load_args(kernel, files["initrd2"], machine)), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)
    deadline = time.monotonic() + 60
    while not any(f.startswith(".kexec-load.journal.") or f == "kexec-load.journal" for f in os.listdir(machine)):
        assert proc.poll() is None and time.monotonic() < deadline, "the load never started its journal"
        time.sleep(0.001)
    proc.send_signal(sig)
    err = proc.stderr.read()
    assert proc.wait() == 128 + sig, err
    assert re.fullmatch(rf"kexec-s390: error: stopped by {sig.name} [^\n]*\n", err), err
    if sorted(os.listdir(machine)) != sorted(before):
        status = run_cli("kexec_s390.cli", "status", "--machine", machine, "--json")   # opens: rolls back
        assert status.returncode in (0, 1), status.stderr
    assert sorted(os.listdir(machine)) == sorted(before)
    assert tree_digest(machine) == before
