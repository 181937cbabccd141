"""``python -m bench [--quick] [--json] [MODULE ...]``: run the benchmarks.

Every module ``bench/bench_<name>.py`` is discovered automatically; MODULE
filters select by ``<name>`` (or the full module name).  One table is printed
per module, then a summary.  Missed targets are printed as MISSED but do not
change the exit status (this is a report); the exit status is 1 only when a
benchmark module itself fails, and 2 for an unknown MODULE name.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from typing import Sequence

from bench.common import Result, make_console, make_parser, print_table, results_to_json

PACKAGE = "bench"
PREFIX = "bench_"


def discover() -> list[str]:
    """Short names (without ``bench_``) of all benchmark modules, sorted."""
    import bench

    return sorted(
        info.name[len(PREFIX):]
        for info in pkgutil.iter_modules(bench.__path__)
        if info.name.startswith(PREFIX)
    )


def select(available: list[str], wanted: Sequence[str]) -> tuple[list[str], list[str]]:
    """(selected names in suite order, unknown filter words)."""
    if not wanted:
        return list(available), []
    names = [w[len(PREFIX):] if w.startswith(PREFIX) else w for w in wanted]
    unknown = [w for w, n in zip(wanted, names) if n not in available]
    return [a for a in available if a in names], unknown


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    # Tables go to stdout; with --json stdout carries only the JSON document.
    console = make_console(stderr=args.json)
    available = discover()
    selected, unknown = select(available, args.modules)
    if unknown:
        console.print(f"[bold red]unknown benchmark module(s): {', '.join(unknown)}[/] "
                      f"(available: {', '.join(available) or 'none'})")
        return 2

    results: dict[str, list[Result]] = {}
    failed: list[str] = []
    for name in selected:
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"{PACKAGE}.{PREFIX}{name}")
            rows = list(module.run(args))
        except Exception:  # a broken benchmark must not hide the others
            failed.append(name)
            console.print(f"[bold red]ERROR[/] in bench_{name}:")
            console.print(traceback.format_exc(), markup=False, highlight=False)
            continue
        results[name] = rows
        if not args.json:
            mode = "quick" if args.quick else "full"
            print_table(f"{name} ({mode}, {time.perf_counter() - start:.1f} s)", rows,
                        console=console)

    missed = [(mod, r) for mod, rows in results.items() for r in rows if r.missed]
    checked = sum(1 for rows in results.values() for r in rows if r.ok is not None)
    if args.json:
        print(results_to_json(results))
    console.print(
        f"[bold]summary:[/] {len(results)} module(s), "
        f"{sum(len(r) for r in results.values())} row(s), "
        f"{checked - len(missed)}/{checked} target(s) met"
    )
    for mod, row in missed:
        target = f">= {row.target:g}x" if row.target is not None else ""
        ratio = f"{row.ratio:.3g}x" if row.ratio is not None else "?"
        console.print(f"[bold red]MISSED[/] {mod}: {row.name}: {ratio} of {row.limit} "
                      f"(target {target})")
    for name in failed:
        console.print(f"[bold red]FAILED[/] bench_{name} raised an exception (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
