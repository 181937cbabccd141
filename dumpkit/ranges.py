"""Range algebra: half-open (start, end) runs of addresses, pfns or file offsets.

The one copy of what the readers, writers and reports do with runs: merge them, take some
away, keep what two lists share, clip to a window, and name them in one line of text.
Lists are sorted and non-overlapping where a function says so; nothing here reads a file.
"""

from __future__ import annotations

from typing import Iterable, Iterator

Range = tuple[int, int]


def merge(runs: Iterable[Range]) -> list[Range]:
    """The runs sorted, with overlapping and touching ones merged."""
    out: list[list[int]] = []
    for a, b in sorted(runs):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def merge_touching(runs: Iterable[Range]) -> Iterator[Range]:
    """The ascending runs given, streamed, with each run that starts where the one before it
    ends merged into it."""
    pending = None
    for s, e in runs:
        if pending and pending[1] == s:
            pending = (pending[0], e)
            continue
        if pending:
            yield pending
        pending = (s, e)
    if pending:
        yield pending


def add_run(runs: list[Range], s: int, e: int) -> None:
    """Append [s, e) to ascending runs, merged into the last one when it reaches s."""
    if runs and runs[-1][1] >= s:
        runs[-1] = (runs[-1][0], max(runs[-1][1], e))
    else:
        runs.append((s, e))


def subtract(runs: list[Range], holes: list[Range]) -> list[Range]:
    """Sorted, non-overlapping `runs` minus sorted `holes`."""
    out = []
    j = 0
    for a, b in runs:
        while j < len(holes) and holes[j][1] <= a:
            j += 1
        k, pos = j, a
        while k < len(holes) and holes[k][0] < b:
            if holes[k][0] > pos:
                out.append((pos, holes[k][0]))
            pos = max(pos, holes[k][1])
            k += 1
        if pos < b:
            out.append((pos, b))
    return out


def intersect(runs: list[Range], others: list[Range]) -> list[Range]:
    """What sorted, non-overlapping `runs` and `others` both cover."""
    return subtract(runs, subtract(runs, others))


def clip(runs: Iterable[Range], lo: int, hi: int) -> list[Range]:
    """The parts of the runs inside [lo, hi)."""
    return [(max(a, lo), min(b, hi)) for a, b in runs if min(b, hi) > max(a, lo)]


def range_text(ranges: list[Range], limit: int = 3, noun: str = "") -> str:
    """'0x1000-0x1fff, 0x5000-0x5fff and 4 more' (inclusive ends, at most `limit` named); with a
    noun, 'physical range 0x...' or 'physical ranges 0x..., ...'."""
    text = ", ".join(f"0x{s:x}-0x{e - 1:x}" for s, e in ranges[:limit])
    if len(ranges) > limit:
        text += f" and {len(ranges) - limit} more"
    if noun:
        text = f"{noun} {'range' if len(ranges) == 1 else 'ranges'} {text}"
    return text
