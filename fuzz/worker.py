"""One fuzzing worker: `python -m fuzz.worker NAME [libFuzzer options] [corpus dirs]`.

Caps the address space (FUZZ_AS_MB, so that an allocation a parser sized from the input
fails with MemoryError instead of taking the host down), imports the harness inside
atheris.instrument_imports() so the suite's packages report coverage, and hands the
rest of the command line to libFuzzer (atheris' built-in one).
"""

from __future__ import annotations

import importlib
import os
import resource
import sys

INSTRUMENT = ["meminfo_abi", "native", "s390_machine", "kexec_s390", "zipl_sadump", "vmcore"]


def cap_address_space() -> None:
    mb = int(os.environ.get("FUZZ_AS_MB", "6144"))
    if mb > 0:
        limit = mb << 20
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m fuzz.worker NAME [libFuzzer options] [corpus dirs]")
    name = argv[1]
    import atheris
    with atheris.instrument_imports(include=INSTRUMENT):
        harness = importlib.import_module(f"fuzz.harnesses.{name}")
        from fuzz.common import run_one
    target = harness.target
    cap_address_space()

    def one(data: bytes) -> None:
        run_one(target, data)

    atheris.Setup([argv[0]] + argv[2:], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
