"""Issue 7, CI slice of `make fuzz`: every harness runs for a few seconds under atheris.

`python -m fuzz --seconds FUZZ_SLICE_SECONDS` (default 90) in a fresh work directory: seeds
built from the suite's outputs, then every harness (a parser that reads untrusted bytes) with
its promises checked per input - only DumpToolError escapes, bounded time, bounded memory.
Zero failures, and every harness that exists must have run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow      # make check

SECONDS = float(os.environ.get("FUZZ_SLICE_SECONDS", "90"))


def test_fuzz_slice(tmp_path):
    try:
        import atheris  # noqa: F401
    except ImportError as exc:   # the slice must not pass vacuously
        pytest.fail(f"atheris is not installed (pip install atheris): {exc}")
    summary_path = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, "-m", "fuzz", "--seconds", str(SECONDS), "--work", str(tmp_path / "work"),
                           "--json", str(summary_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=SECONDS + 90)
    print(proc.stdout)
    assert summary_path.exists(), proc.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    ran = {n: h for n, h in summary["harnesses"].items() if not h["skipped"]}
    assert len(ran) >= 13, sorted(ran)
    failures = [f for h in ran.values() for f in h["failures"]]
    assert not failures, "\n".join(f"{f['harness']} [{f['kind']}]: {f['summary']} ({f['artifact']})"
                                   for f in failures)
    idle = [n for n, h in ran.items() if h["executions"] < 50]
    assert not idle, f"harnesses that hardly ran: {idle}\n{proc.stdout}"
    # a writer that cannot build seeds leaves its harness fuzzing without them: that is a bug
    broken_seeds = [f"{n}: {note}" for n, h in ran.items() for note in h["notes"] if note.startswith("seeds:")]
    assert not broken_seeds, "\n".join(broken_seeds)
    for n, h in ran.items():
        for note in h["notes"]:
            print(f"note: {n}: {note}")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert summary["seconds"] <= SECONDS + 30
