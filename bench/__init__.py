"""Benchmark suite for s390-dumptools (run with ``python -m bench``).

Each ``bench/bench_<name>.py`` module provides ``run(args) -> list[Result]``;
``bench/common.py`` has the shared timing, limit and reporting helpers.
"""
