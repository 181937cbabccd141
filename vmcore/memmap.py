"""A picture of physical memory: what a dump holds, where the crashkernel and the swap are, and
where the ABI anchors (lowcore, meminfo, VMCOREINFO) sit.  Drawn for a terminal with rich, and
as an SVG for a bug report; both from the same cell list."""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from meminfo_abi.locate import read_meminfo
from meminfo_abi.lowcore import LC_OS_INFO, LC_VMCORE_INFO, LOWCORE_SIZE
from dumpkit.errors import DumpToolError
from vmcore.model import KIND_ABSENT, Dump

# category -> (glyph, rich style, svg colour, legend): what a cell holds
CATEGORIES = {
    "data": ("█", "green", "#2e8b57", "present, holds data"),
    "zero": ("░", "bright_black", "#d0d0d0", "present, all zero"),
    "excluded": ("▒", "yellow", "#e6c229", "excluded by the dump level (filtered out)"),
    "absent": ("·", "red", "#c0392b", "absent from the dump (missing)"),
    "crashkernel": ("▓", "magenta", "#8e44ad", "crashkernel memory left out (as kdump dumps do)"),
    "gap": (" ", "", "#ffffff", "no memory"),
}
# overlay -> (rich background, svg outline colour, legend): where a present cell lies; the cell
# keeps its own glyph (data or zero stays visible under the overlay)
OVERLAYS = {
    "crashkernel": ("on dark_magenta", "#8e44ad", "in the crashkernel (its data is in the dump)"),
    "swapped": ("on dark_cyan", "#2980b9", "swapped with the crashkernel (read through the swap)"),
}
MARKERS = {"lowcore": "L", "meminfo": "M", "vmcoreinfo": "V"}
# what a terminal that cannot show a glyph (ASCII-only, Latin-1, ...) gets instead
ASCII_GLYPHS = {"█": "#", "░": ".", "▒": ":", "·": "-", "▓": "%", "▚": "/"}


def _glyph(glyph: str, encoding: str | None) -> str:
    if encoding is None:
        return glyph
    try:
        glyph.encode(encoding)
        return glyph
    except (UnicodeEncodeError, LookupError):
        return ASCII_GLYPHS.get(glyph, "?")


@dataclass
class MapModel:
    size: int
    cell_size: int
    cells: list[str]                 # category per cell
    marks: dict[int, str]            # cell index -> marker letters
    anchors: list[tuple[str, int, int]]   # (name, address, length)
    regions: list[tuple[str, int, int]]   # (category, start, end) of the special regions
    overlays: list[str | None] = None     # overlay per cell (crashkernel, swapped) or None

    def __post_init__(self) -> None:
        if self.overlays is None:
            self.overlays = [None] * len(self.cells)

    def to_json(self) -> dict:
        return {"size": self.size, "cell_size": self.cell_size, "cells": self.cells, "overlays": self.overlays,
                "marks": {str(k): v for k, v in self.marks.items()},
                "anchors": [{"name": n, "address": a, "length": l} for n, a, l in self.anchors],
                "regions": [{"kind": k, "start": s, "end": e} for k, s, e in self.regions]}


def _special_regions(dump: Dump) -> list[tuple[str, int, int]]:
    regs = []
    extra = dump.attrs.extra
    ck = extra.get("crashkernel_excluded")
    if ck:
        regs.append(("crashkernel", ck[0], ck[1]))
        regs.append(("swapped", 0, ck[1] - ck[0]))
    else:
        mi = read_meminfo(dump)
        if mi is not None and mi.crashkernel_addr and mi.crashkernel_size:
            base, end = mi.crashkernel_addr, mi.crashkernel_addr + mi.crashkernel_size
            regs.append(("crashkernel", base, end))
            held = any(c.kind != KIND_ABSENT and c.start < end and base < c.end for c in dump.chunks)
            if not held:        # a kdump dump: old [0, size) was read through the swap
                regs.append(("swapped", 0, mi.crashkernel_size))
    return regs


def _anchors(dump: Dump) -> list[tuple[str, int, int]]:
    out = [("lowcore", 0, LOWCORE_SIZE)]
    for name, slot, length in (("meminfo", LC_OS_INFO, 4096), ("vmcoreinfo", LC_VMCORE_INFO, 24)):
        try:
            ptr = int.from_bytes(dump.read(slot, 8), "big")
        except DumpToolError:
            continue
        if 0 < ptr < dump.size:
            out.append((name, ptr, length))
    return out


def build_map(dump: Dump, cells: int) -> MapModel:
    regions = _special_regions(dump)
    size = max([dump.size, 1] + [e for _k, _s, e in regions])
    cells = max(1, min(cells, size // 4096 or 1))
    cell = -(-size // cells)
    cell = -(-cell // 4096) * 4096
    n = -(-size // cell)
    cats: list[str] = []
    overlays: list[str | None] = []
    chunks = dump.chunks
    ci = 0
    for i in range(n):
        start, end = i * cell, min(size, (i + 1) * cell)
        in_ck = any(k == "crashkernel" and s < end and start < e for k, s, e in regions)
        in_swap = any(k == "swapped" and s < end and start < e for k, s, e in regions)
        while ci < len(chunks) and chunks[ci].end <= start:
            ci += 1
        covering = [c for c in chunks[ci:] if c.start < end] if ci < len(chunks) else []
        kinds = {c.kind for c in covering}
        if not covering:
            cat = "gap" if not dump.chunks or start >= dump.size else "absent"
        elif kinds == {KIND_ABSENT}:
            cat = "excluded" if all(dump.is_excluded(max(c.start, start)) for c in covering) else "absent"
        elif any(True for _ in dump.data_ranges(start, end)):
            cat = "data"
        else:
            cat = "zero"               # zero pages and zero chunks are present: zero, never "excluded"
        over = None
        if in_ck:
            if cat in ("gap", "absent"):
                cat = "crashkernel"    # left out of the dump, as kdump dumps do
            elif cat in ("data", "zero"):
                over = "crashkernel"   # a full dump holds it
        if over is None and in_swap and cat in ("data", "zero"):
            over = "swapped"
        cats.append(cat)
        overlays.append(over)
    marks: dict[int, str] = {}
    anchors = _anchors(dump)
    for name, addr, _length in anchors:
        idx = min(addr // cell, n - 1)
        marks[idx] = marks.get(idx, "") + MARKERS[name]
    return MapModel(size, cell, cats, marks, anchors, regions, overlays)


def render_text(model: MapModel, width: int, encoding: str | None = None):
    """A rich Text: rows of cells with their start address, then the legend; glyphs `encoding`
    (the terminal's) cannot show are drawn in ASCII."""
    from rich.text import Text
    per_row = max(8, width - 22)
    t = Text()
    for row in range(0, len(model.cells), per_row):
        t.append(f"{row * model.cell_size:016x}  ", style="dim")
        for i in range(row, min(row + per_row, len(model.cells))):
            glyph, style, _c, _l = CATEGORIES[model.cells[i]]
            over = model.overlays[i]
            if i in model.marks:
                t.append(model.marks[i][0], style="bold white on blue")
            else:
                t.append(_glyph(glyph, encoding), style=f"{style} {OVERLAYS[over][0]}".strip() if over else style)
        t.append("\n")
    t.append(f"one cell = {_human(model.cell_size)}; ", style="dim")
    used = sorted(set(model.cells), key=list(CATEGORIES).index)
    for cat in used:
        glyph, style, _c, legend = CATEGORIES[cat]
        t.append(_glyph(glyph, encoding), style=style)
        t.append(f" {legend}  ")
    for over in sorted({o for o in model.overlays if o}, key=list(OVERLAYS).index):
        t.append(" ", style=OVERLAYS[over][0])
        t.append(f" {OVERLAYS[over][2]}  ")
    t.append("\n")
    for name, addr, length in model.anchors:
        t.append(MARKERS[name], style="bold white on blue")
        t.append(f" {name} at 0x{addr:x}  ")
    return t


def render_svg(model: MapModel, title: str, columns: int = 128) -> str:
    px, pitch, label_w, top = 9, 14, 150, 40
    rows = -(-len(model.cells) // columns)
    legend_top = top + rows * pitch + 20
    used = sorted(set(model.cells), key=list(CATEGORIES).index)
    used_over = sorted({o for o in model.overlays if o}, key=list(OVERLAYS).index)
    height = legend_top + 18 * (len(used) + len(used_over) + len(model.anchors)) + 20
    width = label_w + columns * (px + 1) + 20
    # cells are px wide (1 px gap); rows are `pitch` apart so the address labels do not touch
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="13" font-weight="bold">{escape(title)}</text>']
    for r in range(rows):
        y = top + r * pitch
        out.append(f'<text x="10" y="{y + px}">{r * columns * model.cell_size:016x}</text>')
        for c in range(columns):
            i = r * columns + c
            if i >= len(model.cells):
                break
            colour = CATEGORIES[model.cells[i]][2]
            x = label_w + c * (px + 1)
            out.append(f'<rect x="{x}" y="{y}" width="{px}" height="{px}" fill="{colour}"/>')
            over = model.overlays[i]
            if over:                   # the overlay as a band: the cell's own colour stays visible
                out.append(f'<rect x="{x}" y="{y + px - 3}" width="{px}" height="3" fill="{OVERLAYS[over][1]}"/>')
            if i in model.marks:
                out.append(f'<rect x="{x}" y="{y}" width="{px}" height="{px}" fill="none" stroke="black" '
                           f'stroke-width="2"><title>{escape(model.marks[i])}</title></rect>')
    y = legend_top
    out.append(f'<text x="10" y="{y - 6}">one cell = {escape(_human(model.cell_size))}</text>')
    for cat in used:
        out.append(f'<rect x="10" y="{y}" width="10" height="10" fill="{CATEGORIES[cat][2]}" stroke="#888"/>')
        out.append(f'<text x="26" y="{y + 9}">{escape(CATEGORIES[cat][3])}</text>')
        y += 18
    for over in used_over:
        out.append(f'<rect x="10" y="{y + 7}" width="10" height="3" fill="{OVERLAYS[over][1]}"/>')
        out.append(f'<text x="26" y="{y + 9}">{escape(OVERLAYS[over][2])}</text>')
        y += 18
    for name, addr, _l in model.anchors:
        out.append(f'<rect x="10" y="{y}" width="10" height="10" fill="none" stroke="black" stroke-width="2"/>')
        out.append(f'<text x="26" y="{y + 9}">{escape(name)} at 0x{addr:x}</text>')
        y += 18
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _human(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"
