"""docs/API.md's examples run as written (issue 20), on dumps of a simulated machine."""
from __future__ import annotations

import os
import re

import pytest

from tests.conftest import ROOT, peer_drgn, run_cli

EXAMPLES = re.findall(r"```python\n(.*?)```", open(os.path.join(ROOT, "docs", "API.md")).read(), re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """vmcore.elf (the kdump kernel's save) and dump.s390 (a stand-alone dump, extracted)."""
    d = tmp_path_factory.mktemp("api")
    m, dev = str(d / "m"), str(d / "dasd.img")
    run_cli("s390_machine.cli", "create", m, "--memory", "128M", "--cpus", "2", "--crashkernel", "32M", check=True)
    run_cli("zipl_sadump.cli", "build", "--device", dev, "--size", "256M", check=True)
    run_cli("zipl_sadump.cli", "ipl", "--device", dev, "--machine", m, "--kdump", "off", "--no-map", check=True)
    run_cli("zipl_sadump.cli", "extract", "--device", dev, "-f", "s390", "-o", str(d / "dump.s390"), check=True)
    run_cli("vmcore.cli", "convert", str(d / "dump.s390"), "-o", str(d / "vmcore.elf"), "-f", "elf", check=True)
    return d


def test_the_examples_are_there():
    assert len(EXAMPLES) >= 4 and all("vmcore.open(" in e for e in EXAMPLES)


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs(index, workdir, monkeypatch, capsys):
    code = EXAMPLES[index]
    if "drgn" in code:
        peer_drgn()
    monkeypatch.chdir(workdir)
    exec(compile(code, f"docs/API.md example {index}", "exec"), {"__name__": "__example__"})
    out = capsys.readouterr().out
    if "PSW" in code:
        assert len(re.findall(r"^CPU \d+: PSW [0-9a-f]{16} [0-9a-f]{16}  r15 [0-9a-f]{16}$", out, re.M)) == 2, out
    if "kernel_log" in code:
        assert "crashkernel=32M" in out, out
    if "converted.kdump" in code:
        assert out.startswith("6.1.0-s390dumptools 2 CPUs") and (workdir / "converted.kdump").exists()


def test_open_refuses_a_bad_select(workdir):
    import vmcore
    from dumpkit.errors import UsageError
    with pytest.raises(UsageError, match="-s nonsense: choose one of"):
        vmcore.open(str(workdir / "dump.s390"), select="nonsense")
    with pytest.raises(UsageError, match="holds one system"):
        vmcore.open(str(workdir / "dump.s390"), select="prod")
    with vmcore.open(str(workdir / "dump.s390")) as d:
        assert d.size == 128 << 20 and d.vmcoreinfo["OSRELEASE"] == "6.1.0-s390dumptools"


def test_help_vmcore_names_the_api():
    import pydoc

    import vmcore
    text = pydoc.render_doc(vmcore)
    assert "vmcore.open" in text and "drgn_program" in text and "docs/API.md" in text
