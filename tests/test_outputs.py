"""Issue 15, points 1, 2, 5 and 7: outputs go where the user points, nothing is overwritten
silently, an input is never an output, a FIFO input never hangs, dumps are private, signals
and ASCII-only terminals leave nothing half-written and crash nothing.

The flattened stream on standard output is rebuilt by the real makedumpfile 1.7.6 (Debian's
s390x build, run through qemu-user from the peers in shared/peers/s390x-peers.sh): its pages
must equal the source's.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import ROOT, copy_machine, default_signals, run_cli
from tests.realdata import debian_kernel, make_initrd, s390x_peers
from vmcore.formats import open_dump
from vmcore.model import page_digests

QEMU = "qemu-s390x-static"
ONE_LINE = re.compile(r"[a-z0-9-]+: error: [^\n]+\n")


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def machine(work):
    path = str(work / "machine")
    run_cli("s390_machine.cli", "create", path, "--memory", "256M", "--cpus", "2", "--crashkernel", "64M",
            check=True)
    return path


@pytest.fixture(scope="module")
def dump(machine, work):
    """An ELF dump of the machine (the input of the conversions below)."""
    path = str(work / "d.elf")
    run_cli("vmcore.cli", "convert", machine, "-o", path, "-f", "elf", "--no-progress", check=True)
    return path


@pytest.fixture(scope="module")
def digests(dump):
    with open_dump(dump) as d:
        return page_digests(d)


@pytest.fixture(scope="module")
def device(machine, work):
    """A dump device holding a complete full dump of the machine (not extracted)."""
    dev = str(work / "dev.img")
    run_cli("zipl_sadump.cli", "build", "--device", dev, "--size", "300M", check=True)
    m = copy_machine(machine, str(work / "ipl-machine"))
    run_cli("zipl_sadump.cli", "ipl", "--device", dev, "--machine", m, "--kdump", "off", "--no-map",
            "--no-progress", check=True)
    return dev


@pytest.fixture(scope="session")
def makedumpfile():
    """argv prefix running the real makedumpfile (s390x) under qemu-user."""
    return s390x_peers()["MAKEDUMPFILE"]


def digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def vmcore(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vmcore.cli", *args], cwd=ROOT, capture_output=True, **kw)


def assert_refused(proc, code: int = 2, *words: str) -> None:
    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    assert ONE_LINE.fullmatch(err), err
    for w in words:
        assert w in err, err


def pages_of(path: str) -> dict:
    with open_dump(path) as d:
        return page_digests(d)


# -- 1. outputs go where the user points ------------------------------------------------------------


def test_symlink_output_is_written_through_to_its_target(dump, digests, tmp_path):
    link = tmp_path / "link.elf"
    os.symlink("target.elf", link)
    proc = vmcore("convert", dump, "-o", str(link), "-f", "elf", "--no-progress", text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.path.islink(link) and os.readlink(link) == "target.elf"
    target = tmp_path / "target.elf"
    assert stat.S_ISREG(os.lstat(target).st_mode)
    if shutil.which("readelf"):
        out = subprocess.run(["readelf", "-h", str(target)], capture_output=True, text=True, check=True).stdout
        assert re.search(r"Type:\s+CORE", out) and "S/390" in out, out
    assert pages_of(str(link)) == digests
    # the link now points at an existing file: refused without --force, replaced through it with it
    before = digest(target)
    proc = vmcore("convert", dump, "-o", str(link), "-f", "kdump", "--no-progress", text=True)
    assert_refused(proc, 2, "already exists", "--force")
    assert digest(target) == before and os.path.islink(link)
    proc = vmcore("convert", dump, "-o", str(link), "-f", "kdump", "--force", "--no-progress", text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.path.islink(link) and os.readlink(link) == "target.elf"
    assert open_dump(str(target)).attrs.format == "kdump"
    assert pages_of(str(target)) == digests


def _read_fifo_in_background(fifo: str, into: str) -> threading.Thread:
    def reader():
        with open(fifo, "rb") as src, open(into, "wb") as dst:
            shutil.copyfileobj(src, dst)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    return t


def test_fifo_output_stays_a_fifo_and_its_reader_gets_a_flattened_kdump(dump, digests, tmp_path):
    fifo = str(tmp_path / "out.fifo")
    os.mkfifo(fifo)
    got = str(tmp_path / "received.flat")
    reader = _read_fifo_in_background(fifo, got)
    proc = vmcore("convert", dump, "-o", fifo, "-f", "kdump", "--no-progress", text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    reader.join(30)
    assert not reader.is_alive()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with open(got, "rb") as fh:
        assert fh.read(16) == b"makedumpfile\0\0\0\0"     # makedumpfile -F's stream
    with open_dump(got) as d:
        assert d.attrs.complete
        assert page_digests(d) == digests


@pytest.mark.parametrize("fmt", ["elf", "s390", "raw"])
def test_seeking_formats_refuse_a_fifo_at_once(fmt, dump, tmp_path):
    fifo = str(tmp_path / "out.fifo")
    os.mkfifo(fifo)
    proc = vmcore("convert", dump, "-o", fifo, "-f", fmt, "--no-progress", text=True, timeout=20)
    assert_refused(proc, 2, "FIFO", "flattened")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["out.fifo"]


def test_stdout_flattened_kdump_rebuilt_by_real_makedumpfile_R(dump, digests, makedumpfile, tmp_path):
    """`vmcore convert D -o - -f kdump -F | makedumpfile -R out`: out holds the pages of D."""
    out = str(tmp_path / "rebuilt.kdump")
    conv = subprocess.Popen([sys.executable, "-m", "vmcore.cli", "convert", dump, "-o", "-", "-f", "kdump", "-F",
                             "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    mdf = subprocess.run([*makedumpfile, "-R", out], stdin=conv.stdout, capture_output=True, text=True,
                         timeout=300)
    conv.stdout.close()
    err = conv.stderr.read().decode()
    assert conv.wait() == 0, err
    assert "-> - (kdump)" in err                    # the closing line went to stderr, not into the stream
    assert mdf.returncode == 0, mdf.stdout + mdf.stderr
    with open(out, "rb") as fh:
        assert fh.read(8) == b"KDUMP   "             # rebuilt: a plain kdump-compressed file
    with open_dump(out) as d:
        assert d.attrs.complete
        assert page_digests(d) == digests


def test_stdout_takes_only_streamable_formats_and_never_a_terminal(dump, tmp_path):
    proc = vmcore("convert", dump, "-o", "-", "-f", "elf", "--no-progress", text=True)
    assert_refused(proc, 2, "standard output")
    assert proc.stdout == ""
    assert not os.path.exists(os.path.join(ROOT, "-"))
    proc = vmcore("convert", dump, "-o", "-", "-f", "kdump", "--json", "--no-progress", text=True)
    assert_refused(proc, 2, "--json")
    proc = vmcore("convert", dump, "-o", str(tmp_path / "x"), "-f", "elf", "-F", "--no-progress", text=True)
    assert_refused(proc, 2, "-F")


def test_character_device_is_written_through_never_replaced(dump):
    before = os.stat("/dev/full")
    proc = vmcore("convert", dump, "-o", "/dev/full", "-f", "kdump", "--no-progress", text=True)
    assert_refused(proc, 5, "No space left on device")
    after = os.lstat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    proc = vmcore("convert", dump, "-o", "/dev/null", "-f", "kdump", "--no-progress", text=True)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_a_planted_symlink_at_a_temporary_name_is_never_followed(dump, tmp_path):
    from dumpkit.fileio import atomic_file
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    # every name a temporary of out.elf could take is a symlink to the victim: the writer must fail
    # to create them (O_EXCL | O_NOFOLLOW) and take another; here: plant a few and write
    for name in (".out.elf.aaaaaaaa.tmp", ".out.elf.bbbbbbbb.tmp"):
        os.symlink(victim, tmp_path / name)
    with atomic_file(tmp_path / "out.elf") as fh:
        fh.write(b"new")
    assert victim.read_bytes() == b"precious"
    assert (tmp_path / "out.elf").read_bytes() == b"new"


# -- 2. no silent overwrite -------------------------------------------------------------------------


def _writers(machine, dump, device, out):
    return {
        "convert": ["vmcore.cli", "convert", dump, "-o", out, "-f", "elf", "--no-progress"],
        "save": None,                     # needs a crashed machine: covered in test_faults
        "manifest": ["vmcore.cli", "verify", dump, "--write-manifest", out, "--no-progress"],
        "svg": ["vmcore.cli", "map", dump, "--svg", out],
        "extract": ["zipl_sadump.cli", "extract", "--device", device, "-o", out, "--no-progress"],
    }


@pytest.mark.parametrize("writer", ["convert", "manifest", "svg", "extract"])
def test_existing_output_is_refused_without_force(writer, machine, dump, device, tmp_path):
    out = str(tmp_path / "existing")
    with open(out, "wb") as fh:
        fh.write(b"the only copy of something" * 1000)
    before = digest(out)
    argv = _writers(machine, dump, device, out)[writer]
    proc = run_cli(*argv)
    assert_refused(proc, 2, "already exists", "--force")
    assert digest(out) == before
    assert os.listdir(tmp_path) == ["existing"]
    proc = run_cli(*argv, "--force")
    assert proc.returncode == 0, proc.stderr
    assert digest(out) != before


def test_sadump_build_refuses_a_device_holding_a_dump(device, tmp_path):
    dev = str(tmp_path / "dev.img")
    shutil.copyfile(device, dev)
    before = digest(dev)
    shown = run_cli("zipl_sadump.cli", "show", "--device", dev, "--json", check=True).stdout
    import json
    d = json.loads(shown)["dump"]
    for extra in ([], ["--size", "300M"]):
        proc = run_cli("zipl_sadump.cli", "build", "--device", dev, *extra)
        assert_refused(proc, 2, "holds a complete dump", d["tod_text"], "256 MiB", "--force")
        assert digest(dev) == before
    proc = run_cli("zipl_sadump.cli", "build", "--device", dev, "--force")
    assert proc.returncode == 0, proc.stderr
    after = json.loads(run_cli("zipl_sadump.cli", "show", "--device", dev, "--json", check=True).stdout)
    assert not after["dump"]["present"]


def test_sadump_build_with_size_refuses_a_file_that_is_no_dump_device(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_bytes(b"not a device" * 100)
    proc = run_cli("zipl_sadump.cli", "build", "--device", str(f), "--size", "300M")
    assert_refused(proc, 2, "not a dump device", "--force")
    assert f.read_bytes() == b"not a device" * 100


# -- 7. inputs are never outputs; FIFO inputs; private dumps ---------------------------------------


def test_an_input_is_never_an_output(dump, device, tmp_path):
    d = str(tmp_path / "d.elf")
    shutil.copyfile(dump, d)
    os.symlink(d, tmp_path / "alias.elf")
    os.link(d, tmp_path / "hard.elf")
    before = digest(d)
    for out in (d, str(tmp_path / "alias.elf"), str(tmp_path / "hard.elf")):
        for force in ([], ["--force"]):
            proc = run_cli("vmcore.cli", "convert", d, "-o", out, "-f", "elf", "--no-progress", *force)
            assert_refused(proc, 2, "is the input")
        proc = run_cli("vmcore.cli", "verify", d, "--write-manifest", out, "--force", "--no-progress")
        assert_refused(proc, 2, "is the input")
    assert digest(d) == before
    dev = str(tmp_path / "dev.img")
    shutil.copyfile(device, dev)
    before = digest(dev)
    proc = run_cli("zipl_sadump.cli", "extract", "--device", dev, "-o", dev, "--force", "--no-progress")
    assert_refused(proc, 2, "is the input")
    assert digest(dev) == before


def test_fifo_inputs_are_refused_at_once(tmp_path, machine):
    fifo = str(tmp_path / "in.fifo")
    os.mkfifo(fifo)
    kernel = debian_kernel()
    initrd = make_initrd(str(tmp_path / "initrd.img"))
    m = copy_machine(machine, str(tmp_path / "m"))
    runs = [
        ("vmcore.cli", "info", fifo), ("vmcore.cli", "regs", fifo), ("vmcore.cli", "dmesg", fifo),
        ("vmcore.cli", "verify", fifo), ("vmcore.cli", "map", fifo),
        ("vmcore.cli", "convert", fifo, "-o", str(tmp_path / "o.elf"), "-f", "elf"),
        ("zipl_sadump.cli", "show", "--device", fifo),
        ("zipl_sadump.cli", "extract", "--device", fifo, "-o", str(tmp_path / "o.s390")),
        ("kexec_s390.cli", "load", "-p", fifo, "--initrd", initrd, "--machine", m),
        ("kexec_s390.cli", "load", "-p", kernel, "--initrd", fifo, "--machine", m),
    ]
    for module, *args in runs:
        t0 = time.monotonic()
        proc = subprocess.run(["timeout", "20", sys.executable, "-m", module, *args], cwd=ROOT,
                              capture_output=True, text=True)
        assert time.monotonic() - t0 < 15, args
        assert_refused(proc, 3, "FIFO")
    assert sorted(os.listdir(tmp_path)) == ["in.fifo", "initrd.img", "m"]


def test_new_dump_files_are_private_whatever_the_umask(machine, dump, device, tmp_path):
    def run(*argv):
        proc = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True,
                              preexec_fn=lambda: os.umask(0o022))
        assert proc.returncode == 0, proc.stderr
    outs = {}
    for fmt in ("elf", "kdump", "s390"):
        outs[fmt] = str(tmp_path / f"d.{fmt}")
        run("vmcore.cli", "convert", dump, "-o", outs[fmt], "-f", fmt, "--no-progress")
    outs["manifest"] = str(tmp_path / "d.manifest")
    run("vmcore.cli", "verify", dump, "--write-manifest", outs["manifest"], "--no-progress")
    outs["extracted"] = str(tmp_path / "extracted.s390")
    run("zipl_sadump.cli", "extract", "--device", device, "-o", outs["extracted"], "--no-progress")
    replaced = str(tmp_path / "was-public.elf")
    with open(replaced, "wb"):
        pass
    os.chmod(replaced, 0o644)
    run("vmcore.cli", "convert", dump, "-o", replaced, "-f", "elf", "--force", "--no-progress")
    outs["replaced"] = replaced
    for name, path in outs.items():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, (name, oct(os.stat(path).st_mode))


# -- 5. signals and terminals -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def big(work):
    """A 2 GiB machine (the input of a convert long enough to be interrupted)."""
    path = str(work / "big")
    run_cli("s390_machine.cli", "create", path, "--memory", "2G", "--cpus", "2", "--crashkernel", "256M",
            check=True)
    return path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_during_a_2gib_convert_leaves_nothing(sig, big, tmp_path):
    out = str(tmp_path / "big.kdump")
    proc = subprocess.Popen([sys.executable, "-m", "vmcore.cli", "convert", big, "-o", out, "-f", "kdump",
                             "--level", "9", "--no-progress"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, restore_signals=True,
                                preexec_fn=default_signals)
    deadline = time.monotonic() + 60
    while not any(f.startswith(".big.kdump.") for f in os.listdir(tmp_path)):
        assert proc.poll() is None and time.monotonic() < deadline, "the write never started"
        time.sleep(0.001)
    proc.send_signal(sig)
    err = proc.stderr.read()
    assert proc.wait() == 128 + sig, err
    assert re.fullmatch(rf"vmcore: error: stopped by {sig.name} [^\n]*\n", err), err
    assert os.listdir(tmp_path) == []


@pytest.mark.slow                  # a process per command: the encoding is set at its start
@pytest.mark.parametrize("env", [{"LC_ALL": "C", "PYTHONIOENCODING": "ascii"},
                                 {"LC_ALL": "C", "PYTHONIOENCODING": "latin-1"}])
def test_ascii_only_terminal_crashes_nothing(env, machine, dump, tmp_path):
    environ = dict(os.environ, **env)
    dev = str(tmp_path / "dev.img")
    run_cli("zipl_sadump.cli", "build", "--device", dev, "--size", "300M", check=True)
    m = copy_machine(machine, str(tmp_path / "m"))
    runs = [("zipl_sadump.cli", "ipl", "--device", dev, "--machine", m, "--kdump", "off", "--no-progress"),
            ("zipl_sadump.cli", "show", "--device", dev), ("vmcore.cli", "map", dump),
            ("vmcore.cli", "info", dump), ("vmcore.cli", "dmesg", dump), ("vmcore.cli", "verify", dump),
            ("s390_machine.cli", "show", m)]
    for module, *args in runs:
        proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, env=environ)
        err = proc.stderr.decode("ascii", "replace")
        assert proc.returncode == 0, (args, err)
        assert "Traceback" not in err and "Error" not in err, err
    ipl_map = subprocess.run([sys.executable, "-m", "vmcore.cli", "map", dump], cwd=ROOT, capture_output=True,
                             env=environ).stdout.decode("latin-1")
    assert "#" in ipl_map and "present, holds data" in ipl_map
