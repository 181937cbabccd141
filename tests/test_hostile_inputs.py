"""Hostile inputs through the CLI on every reader (issue 15, point 8): empty files, FIFOs,
directories, symlink loops, paths through a file, dumps truncated at random points and with
random byte flips.  Never a traceback, never a hang, only documented exit codes, and a dump cut
short is never called complete."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from dumpkit.clikit import run
from tests.conftest import ROOT, run_cli

DOCUMENTED = {0, 2, 3, 4, 5, 6}
READERS = [  # (cli module, argv with DUMP standing for the input)
    ("vmcore.cli", ["info", "DUMP", "--json"]),
    ("vmcore.cli", ["regs", "DUMP"]),
    ("vmcore.cli", ["dmesg", "DUMP"]),
    ("vmcore.cli", ["vmcoreinfo", "DUMP"]),
    ("vmcore.cli", ["read", "DUMP", "0x10000", "0x40"]),
    ("vmcore.cli", ["map", "DUMP", "--rows", "2"]),
    ("vmcore.cli", ["verify", "DUMP", "--no-progress"]),
    ("vmcore.cli", ["convert", "DUMP", "-o", "OUT", "-f", "elf"]),
    ("zipl_sadump.cli", ["show", "--device", "DUMP"]),
    ("zipl_sadump.cli", ["extract", "--device", "DUMP", "-o", "OUT", "--no-progress"]),
    ("kexec_s390.cli", ["load", "-p", "DUMP", "--dry-run", "--crashkernel", "0x10000000:0x4000000"]),
]
IDS = [f"{m.split('.')[0]}-{a[0]}" for m, a in READERS]


def apps():
    import importlib
    return {m: importlib.import_module(m).app for m, _ in READERS}


def run_in_process(module: str, argv: list[str], capfd) -> tuple[int, str, str]:
    capfd.readouterr()
    code = run(apps()[module], module.split(".")[0], argv)
    out, err = capfd.readouterr()
    return code, out, err


def check(code: int, err: str, what: str, out: str = "") -> None:
    assert "Traceback" not in err, f"{what}: {err}"
    assert code in DOCUMENTED, f"{what}: exit {code}: {err}"
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) <= 1 and (code != 0 or not errors), f"{what}: exit {code}: {err}"
    if code != 0 and not errors:     # info and verify report the damage itself, then exit 3 or 4
        assert code in (3, 4) and out.strip(), f"{what}: exit {code} with neither error line nor report: {err}"


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    """Valid inputs of every reader's kind: an ELF, a kdump-compressed file, an s390 dump and a
    dump device image, from one small machine."""
    d = tmp_path_factory.mktemp("hostile")
    m, dev = str(d / "m"), str(d / "dasd.img")
    run_cli("s390_machine.cli", "create", m, "--memory", "64M", "--cpus", "2", "--crashkernel", "16M",
            "--fill", "0.1", check=True)
    run_cli("zipl_sadump.cli", "build", "--device", dev, "--size", "128M", check=True)
    run_cli("zipl_sadump.cli", "ipl", "--device", dev, "--machine", m, "--kdump", "off", "--no-map", check=True)
    out = {"device": dev}
    run_cli("zipl_sadump.cli", "extract", "--device", dev, "-f", "s390", "-o", str(d / "d.s390"), check=True)
    out["s390"] = str(d / "d.s390")
    for fmt in ("elf", "kdump"):
        out[fmt] = str(d / f"d.{fmt}")
        run_cli("vmcore.cli", "convert", dev, "-o", out[fmt], "-f", fmt, check=True)
    return out


@pytest.mark.parametrize("module,argv", READERS, ids=IDS)
def test_odd_paths(module, argv, tmp_path, capfd):
    """Empty file, directory, symlink loop, a path through a regular file, a missing file."""
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "dir").mkdir()
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    (tmp_path / "file").write_bytes(b"x" * 4096)
    for name in ("empty", "dir", "loop1", "file/inside", "missing"):
        path = str(tmp_path / name)
        args = [a.replace("DUMP", path).replace("OUT", str(tmp_path / "out.x")) for a in argv]
        code, out, err = run_in_process(module, args, capfd)
        check(code, err, f"{name}: {' '.join(args)}", out)
        assert code != 0, f"{name} accepted: {out}"
        assert not (tmp_path / "out.x").exists()


@pytest.mark.parametrize("module,argv", READERS, ids=IDS)
def test_fifo_returns_on_its_own(module, argv, tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    args = [a.replace("DUMP", fifo).replace("OUT", str(tmp_path / "out.x")) for a in argv]
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=20)
    check(proc.returncode, proc.stderr, f"FIFO: {' '.join(args)}")
    assert proc.returncode != 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["elf", "kdump", "s390", "device"])
def test_truncated_and_flipped_dumps(kind, dumps, tmp_path, capfd):
    """Cut at random points and flipped at random bytes: every reader answers with a documented
    code, and `info` never calls a cut dump complete."""
    from dumpkit.fileio import data_extents
    rng = random.Random(kind)
    src = dumps[kind]
    fd = os.open(src, os.O_RDONLY)
    try:                               # where the data ends (a device image is mostly empty space)
        size = max(end for _start, end in data_extents(fd, os.fstat(fd).st_size))
    finally:
        os.close(fd)
    with open(src, "rb") as fh:
        data = fh.read(size)
    cases = [("cut", rng.randrange(1, size)) for _ in range(6)] + [("flip", rng.randrange(size)) for _ in range(6)]
    cases.append(("cut", int(size * 0.6)))
    for how, at in cases:
        bad = str(tmp_path / f"{how}-{at}.{kind}")
        with open(bad, "wb") as fh:
            if how == "cut":
                fh.write(data[:at])
            else:
                fh.write(data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:])
        for module, argv in READERS:
            if module == "kexec_s390.cli":
                continue
            out_path = str(tmp_path / "out.x")
            args = [a.replace("DUMP", bad).replace("OUT", out_path) for a in argv]
            code, out, err = run_in_process(module, args, capfd)
            check(code, err, f"{kind} {how} at {at}: {' '.join(args)}", out)
            if how == "cut" and args[0] == "info" and code == 0:
                assert json.loads(out)["complete"] is False, f"{kind} cut at {at}/{size} reads complete"
            if how == "cut" and args[0] in ("info", "verify"):
                assert code != 0, f"{kind} cut at {at}/{size}: {args[0]} exits 0"
            if os.path.exists(out_path):
                os.unlink(out_path)
