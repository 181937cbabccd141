"""tests.conftest.run_cli runs the CLIs in this interpreter: what it returns must be what the
command run as a process (`python -m module`, isolated=True) returns."""
from __future__ import annotations

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize("argv", [
    ("vmcore.cli", "--version"),
    ("vmcore.cli", "info", "/nonexistent/s390-dumptools"),           # bad input: exit 3, one line
    ("zipl_sadump.cli", "show", "--device", "/nonexistent/dev", "--bogus"),   # usage: exit 2
    ("kexec_s390.cli", "bogus"),
    ("s390_machine.cli", "show", "MACHINE", "--json"),
    ("kexec_s390.cli", "status", "--machine", "MACHINE", "--json"),   # exit 1: no kdump loaded
], ids=lambda a: " ".join(a[:2]))
def test_in_process_run_is_what_the_process_gives(argv, machine_1g):
    argv = [machine_1g if a == "MACHINE" else a for a in argv]
    inside, process = run_cli(*argv), run_cli(*argv, isolated=True)
    assert (inside.returncode, inside.stdout, inside.stderr) == \
        (process.returncode, process.stdout, process.stderr)
    assert "Traceback" not in inside.stderr


def test_an_escaping_exception_is_a_traceback_and_exit_1(monkeypatch):
    """As the interpreter would: not swallowed, not turned into a pass."""
    import vmcore.cli

    def boom(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(vmcore.cli.main, "app", boom)
    proc = run_cli("vmcore.cli", "info", "x")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "RuntimeError: boom" in proc.stderr
