"""Coverage-guided fuzzing of every parser that reads untrusted bytes (issue 7).

`python -m fuzz [--seconds N] [--only NAME]` runs every harness in fuzz/harnesses/
under atheris (libFuzzer), one worker process per harness, and prints per parser:
executions, distinct coverage (libFuzzer's edge counter "cov" and feature
counter "ft"), failures.  See fuzz/runner.py for the budget and docs/RELIABILITY.md
for what a failure is.

Nothing in this package may import the code under test at import time: a worker
imports its harness inside atheris.instrument_imports() so that the parsers are
instrumented for coverage.
"""
