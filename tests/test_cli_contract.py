"""The CLI contract of all four commands, as a user meets it (issue 14).

Every command answers -h/--help and --version; a usage error (unknown option or command,
missing argument, bad value, bad size or address) is one line on stderr and exit 2; bad
input is one line and exit 3; nothing prints a traceback.  Each case runs twice: in-process
through the suite's own runner, and as the installed console script (a process per case: the
slow tier, `make check`).

This file imports nothing from the source tree but the installed packages, so .ci/run also
runs it from `/` in a fresh virtual environment that holds only the built wheel
(S390_SMOKE=1: there the packages must come from that environment, not from a checkout).
"""
from __future__ import annotations

import gzip
import importlib
import os
import shutil
import struct
import subprocess
import sysconfig

import pytest

CLIS = {  # console script -> module with `app`
    "vmcore": "vmcore.cli",
    "sadump": "zipl_sadump.cli",
    "kexec-s390": "kexec_s390.cli",
    "s390-machine": "s390_machine.cli",
}
EXIT_USAGE, EXIT_BAD_INPUT = 2, 3

# (error class, argv, expected exit code) per CLI; NOFILE is a path that does not exist
NOFILE = "/nonexistent/s390-dumptools-smoke"
ERRORS = {
    "vmcore": [
        ("unknown option", ["info", NOFILE, "--bogus"], EXIT_USAGE),
        ("unknown command", ["bogus"], EXIT_USAGE),
        ("missing argument", ["info"], EXIT_USAGE),
        ("bad value", ["info", NOFILE, "-s", "nonsense"], EXIT_USAGE),
        ("bad size", ["read", "DUMP", "0x1000", "ten"], EXIT_USAGE),
        ("bad address", ["read", "DUMP", "0xZZ"], EXIT_USAGE),
        ("bad input", ["info", NOFILE], EXIT_BAD_INPUT),
    ],
    "sadump": [
        ("unknown option", ["show", "--device", NOFILE, "--bogus"], EXIT_USAGE),
        ("unknown command", ["bogus"], EXIT_USAGE),
        ("missing argument", ["ipl", "--device", NOFILE], EXIT_USAGE),
        ("bad value", ["ipl", "--device", NOFILE, "--machine", NOFILE, "--cpu", "one"], EXIT_USAGE),
        ("bad size", ["build", "--device", "TMP/dev.img", "--size", "huge"], EXIT_USAGE),
        ("bad input", ["show", "--device", NOFILE], EXIT_BAD_INPUT),
    ],
    "kexec-s390": [
        ("unknown option", ["status", "--machine", NOFILE, "--bogus"], EXIT_USAGE),
        ("unknown command", ["bogus"], EXIT_USAGE),
        ("missing argument", ["load", "-p"], EXIT_USAGE),
        ("bad size", ["load", "-p", "TMP/kernel.img", "--dry-run", "--crashkernel", "nonsense"], EXIT_USAGE),
        ("bad input", ["load", "-p", NOFILE, "--machine", NOFILE], EXIT_BAD_INPUT),
    ],
    "s390-machine": [
        ("unknown option", ["show", NOFILE, "--bogus"], EXIT_USAGE),
        ("unknown command", ["bogus"], EXIT_USAGE),
        ("missing argument", ["create"], EXIT_USAGE),
        ("bad value", ["create", "TMP/m", "--cpus", "abc"], EXIT_USAGE),
        ("bad size", ["create", "TMP/m", "--memory", "12Q"], EXIT_USAGE),
        ("bad input", ["show", NOFILE], EXIT_BAD_INPUT),
    ],
}
# the console scripts start a process per case: the slow tier of the source tree (make check), and
# every case of the installed wheel (make smoke)
MODES = ["in-process", pytest.param("console-script", marks=pytest.mark.slow)]


def script(name: str) -> str:
    """The installed console script: beside this interpreter (a venv) or on PATH."""
    path = os.path.join(sysconfig.get_path("scripts"), name)
    if not os.path.exists(path):
        path = shutil.which(name) or path
    if not os.path.exists(path):
        pytest.fail(f"console script {name} is not installed (pip install .)")
    return path


def invoke(mode: str, cli: str, argv: list[str], capfd) -> tuple[int, str, str]:
    if mode == "console-script":
        proc = subprocess.run([script(cli), *argv], capture_output=True, text=True, cwd="/",
                              stdin=subprocess.DEVNULL, timeout=120)
        return proc.returncode, proc.stdout, proc.stderr
    from dumpkit.clikit import run
    app = importlib.import_module(CLIS[cli]).app
    capfd.readouterr()
    code = run(app, cli, argv)
    out, err = capfd.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, want: int) -> None:
    assert "Traceback" not in err and "Error" not in err.split(":", 1)[0], err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"stderr has {len(lines)} lines:\n{err}"
    assert ": error: " in lines[0], lines[0]
    assert code == want, f"exit {code}, want {want}: {err}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cli", sorted(CLIS))
def test_help_and_version(cli, mode, capfd):
    for argv in (["-h"], ["--help"]):
        code, out, err = invoke(mode, cli, argv, capfd)
        assert code == 0 and "Usage" in out and "Traceback" not in err, (argv, code, err)
    code, out, err = invoke(mode, cli, ["--version"], capfd)
    assert code == 0, err
    first, second = out.strip().splitlines()
    assert first.startswith(f"{cli} (s390-dumptools) ") and "native extension: " in second


@pytest.mark.parametrize("cli", sorted(CLIS))
def test_every_subcommand_has_help(cli, capfd):
    import typer.main
    group = typer.main.get_command(importlib.import_module(CLIS[cli]).app)
    assert group.commands, cli
    for name in group.commands:
        code, out, err = invoke("in-process", cli, [name, "-h"], capfd)
        assert code == 0 and "Usage" in out, (name, code, err)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cli,case,argv,want",
                         [(cli, case, argv, want) for cli, rows in ERRORS.items() for case, argv, want in rows],
                         ids=[f"{cli}-{case}" for cli, rows in ERRORS.items() for case, _, _ in rows])
def test_errors_are_one_line(cli, case, argv, want, mode, capfd, tmp_path):
    minimal_kernel(str(tmp_path / "kernel.img"))
    argv = [a.replace("TMP", str(tmp_path)) for a in argv]
    code, out, err = invoke(mode, cli, argv, capfd)
    assert_one_line_error(code, err, want)
    assert not os.path.exists(tmp_path / "m") and not os.path.exists(tmp_path / "dev.img"), case


@pytest.mark.slow
@pytest.mark.parametrize("cli", sorted(CLIS))
def test_bare_command_shows_help(cli, capfd):
    code, out, err = invoke("console-script", cli, [], capfd)
    assert code == EXIT_USAGE and "Usage" in out + err and "Traceback" not in err


def minimal_kernel(path: str) -> str:
    """The smallest image kexec-s390 accepts as an s390x kernel: an IPL PSW at 0 and an empty
    parameter area (the real Debian kernel is exercised by the rest of the suite)."""
    image = bytearray(0x20000)
    struct.pack_into(">II", image, 0, 0x00080000, 0x80010000)
    with open(path, "wb") as fh:
        fh.write(image)
    return path


@pytest.mark.slow
def test_chain_create_load_ipl_extract_info_convert(tmp_path, capfd):
    """One run of the whole chain through the installed console scripts."""
    t = str(tmp_path)

    def ok(cli: str, *argv: str) -> str:
        code, out, err = invoke("console-script", cli, list(argv), capfd)
        assert code == 0 and "Traceback" not in err, f"{cli} {' '.join(argv)}: exit {code}\n{err}"
        return out

    kernel = minimal_kernel(f"{t}/kernel.img")
    with open(f"{t}/initrd.img", "wb") as fh:
        fh.write(gzip.compress(b"s390-dumptools smoke initrd"))
    ok("s390-machine", "create", f"{t}/m", "--memory", "128M", "--cpus", "2", "--crashkernel", "32M")
    ok("kexec-s390", "load", "-p", kernel, "--initrd", f"{t}/initrd.img", "--machine", f"{t}/m")
    assert "every checksum valid" in ok("kexec-s390", "status", "--machine", f"{t}/m")
    ok("sadump", "build", "--device", f"{t}/dasd.img", "--type", "eckd", "--size", "512M")
    ok("sadump", "ipl", "--device", f"{t}/dasd.img", "--machine", f"{t}/m", "--kdump", "off", "--no-map")
    ok("sadump", "extract", "--device", f"{t}/dasd.img", "-o", f"{t}/dump.elf")       # as zgetdump: ELF
    with open(f"{t}/dump.elf", "rb") as fh:
        assert fh.read(4) == b"\x7fELF"
    import json
    info = json.loads(ok("vmcore", "info", f"{t}/dump.elf", "--json"))
    ok("vmcore", "convert", f"{t}/dump.elf", "-o", f"{t}/dump.kdump", "-f", "kdump")
    kdump = json.loads(ok("vmcore", "info", f"{t}/dump.kdump", "--json"))
    assert (info["format"], kdump["format"]) == ("elf", "kdump")
    for d in (info, kdump):
        assert d["memory_size"] == 128 << 20 and d["cpus"] == 2 and d["complete"] is True
    assert ok("vmcore", "read", f"{t}/dump.elf", "0x10000", "0x100") == \
        ok("vmcore", "read", f"{t}/dasd.img", "0x10000", "0x100")


def test_installed_where_expected():
    """Under .ci/run's smoke step the packages come from the fresh environment, not a checkout."""
    import vmcore
    here = os.path.dirname(os.path.dirname(os.path.abspath(vmcore.__file__)))
    if os.environ.get("S390_SMOKE") == "1":
        assert here == sysconfig.get_path("purelib") or here == sysconfig.get_path("platlib"), here
        assert os.getcwd() == "/"
    else:
        assert os.path.isdir(here)
