import io
import json
import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Memory(bytearray):
    """A bytearray that quacks like PhysicalMemory for the meminfo checks."""

    @property
    def size(self) -> int:
        return len(self)

    def read(self, addr: int, length: int) -> bytes:
        return bytes(self[addr:addr + length])

    def write(self, addr: int, data: bytes) -> None:
        self[addr:addr + len(data)] = data


FORKING_COMMANDS = {("vmcore.cli", "mount")}


def default_signals() -> None:
    """preexec_fn of a child that a test signals: SIGINT/SIGTERM/SIGHUP at their defaults, whatever
    the test runner inherited (under nohup SIGHUP is ignored, and an ignored signal stays ignored
    in the CLIs, as nohup asks)."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def run_cli(module: str, *args: str, check: bool = False, isolated: bool = False) -> subprocess.CompletedProcess:
    """Run one of the suite's CLIs as a user would and return what a separate process would.

    By default it runs in this interpreter through the CLI kit (dumpkit.clikit.run, the same
    path `python -m module` takes after its imports), with stdout and stderr caught in temporary
    files (so a command that writes to standard output's descriptor works as under a pipe) and the
    worktree as cwd; an exception the kit does not map prints its traceback and exits 1, as the
    interpreter would.  isolated=True starts a fresh `python -m module` instead, where the process
    itself is under test; commands that fork (vmcore mount: a fork of this test process would hold
    its locks and threads) always start one."""
    if isolated or (module, *args[:1]) in FORKING_COMMANDS:
        proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT)
    else:
        proc = _run_in_process(module, list(args))
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def _run_in_process(module: str, argv: list[str]) -> subprocess.CompletedProcess:
    import contextlib
    import importlib
    import locale
    import tempfile
    import traceback

    from dumpkit import clikit
    main = importlib.import_module(module).main
    encoding = locale.getpreferredencoding(False)
    files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    out, err = (io.TextIOWrapper(f, encoding=encoding, write_through=True) for f in files)
    saved = sys.stdout, sys.stderr, sys.argv
    try:
        sys.stdout, sys.stderr, sys.argv = out, err, [module, *argv]
        with contextlib.chdir(ROOT):
            clikit.tolerate_any_terminal()
            try:
                code = clikit.run(main.app, main.prog, argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if exc.code is not None and not isinstance(exc.code, int):
                    print(exc.code, file=sys.stderr)
            except Exception:
                traceback.print_exc()
                code = 1
        out.flush()
        err.flush()
    finally:
        sys.stdout, sys.stderr, sys.argv = saved
    texts = []
    for f in files:
        f.seek(0)
        texts.append(f.read().decode(encoding).replace("\r\n", "\n").replace("\r", "\n"))
        f.close()
    return subprocess.CompletedProcess([sys.executable, "-m", module, *argv], code, texts[0], texts[1])


def cli_json(module: str, *args: str) -> dict:
    return json.loads(run_cli(module, *args, "--json", check=True).stdout)


@pytest.fixture(scope="session")
def machine_1g(tmp_path_factory):
    """A 1 GiB, 2-CPU machine with 256M crashkernel (read-only use: copy it before changing it)."""
    path = str(tmp_path_factory.mktemp("machines") / "m1g")
    run_cli("s390_machine.cli", "create", path, "--memory", "1G", "--cpus", "2", "--crashkernel", "256M",
            check=True)
    return path


def tree_digest(path: str) -> dict:
    """Name -> (size, digest of the data extents and their offsets) of every file below path:
    proves 'nothing changed on disk' without reading the holes of sparse images."""
    import hashlib
    from dumpkit.fileio import data_extents
    out = {}
    for base, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(base, f)
            h = hashlib.sha256()
            fd = os.open(p, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                for start, end in data_extents(fd, size):
                    h.update(start.to_bytes(8, "big"))
                    for pos in range(start, end, 1 << 22):
                        h.update(os.pread(fd, min(1 << 22, end - pos), pos))
            finally:
                os.close(fd)
            out[os.path.relpath(p, path)] = (size, h.hexdigest())
    return out


def exercise_dump(path: str) -> None:
    """Open a (possibly corrupted) dump and touch everything a command may read: its data
    ranges, every page, the start of the first chunks, VMCOREINFO from memory, the attributes.
    Only the suite's errors may escape (reads of single chunks swallow them)."""
    from dumpkit.errors import DumpToolError
    from vmcore.formats import open_dump
    with open_dump(path) as d:
        list(d.data_ranges())
        for _ in d.iter_pages():
            pass
        for c in d.chunks[:4]:
            try:
                d.read(c.start, min(64, c.size))
            except DumpToolError:
                pass
        d.fill_vmcoreinfo_from_memory()
        repr(d)
        d.attrs.to_json()


def copy_machine(src: str, dst: str) -> str:
    """Copy a machine directory keeping memory.img sparse (shutil.copytree would fill the holes)."""
    from dumpkit.fileio import sparse_copy
    os.makedirs(dst)
    for name in os.listdir(src):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        with open(d, "wb") as fh:
            sparse_copy(s, fh)
    return dst


def peer_kdumpfile():
    """libkdumpfile's Python binding (Debian python3-libkdumpfile, installed by .ci/run).
    A peer test must not pass vacuously: a missing peer fails."""
    import sys
    if "/usr/lib/python3/dist-packages" not in sys.path:
        sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import kdumpfile
    except ImportError as exc:
        pytest.fail(f"libkdumpfile (python3-libkdumpfile) is not installed: {exc}")
    return kdumpfile


def peer_drgn():
    try:
        import drgn
    except ImportError as exc:
        pytest.fail(f"drgn is not installed (pip install drgn): {exc}")
    return drgn
