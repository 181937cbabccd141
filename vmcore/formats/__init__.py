"""Dump formats: one module per format, one registry line each (zgetdump's dfi/dfo tables).

A format module defines `READER` (an object following `Reader`) and/or
`WRITER` (following `Writer`).  `FORMAT_MODULES` lists the modules in probe
order: the first reader whose probe claims the input opens it.  Probing looks
at the content only, never at the file name.  A new format is one new module
and its name in `FORMAT_MODULES`.

Plain raw memory images have no header and are never claimed by a probe;
open them with `open_dump(path, fmt="raw")`.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Protocol

from dumpkit.errors import BadInputError, DumpIOError, DumpToolError, IncompleteDumpError, UsageError
from dumpkit.fileio import open_input_file
from vmcore.model import Dump

PROBE_BYTES = 4096

# probe order: specific headers first, the raw reader (machine directories only) last
FORMAT_MODULES: tuple[str, ...] = (
    "elf",
    "kdump",
    "s390",
    "raw",
)


class Reader(Protocol):
    name: str

    def probe(self, fh: BinaryIO, head: bytes) -> bool:
        """Claim the input or decline; must not raise.  `head` = its first PROBE_BYTES bytes."""
        ...

    def open(self, path: str | os.PathLike, **opts: Any) -> Dump: ...


class Writer(Protocol):
    name: str

    def write(self, dump: Dump, path: str | os.PathLike, progress: Callable[[int], None] | None = None,
              **opts: Any) -> Any: ...


@dataclass
class DirectoryHandle:
    """What probes get for a directory (a machine directory, a multi-volume dump set):
    `name` is its path, there is nothing to read."""

    name: str
    is_dir: bool = True

    def read(self, n: int = -1) -> bytes:
        return b""

    def seek(self, pos: int, whence: int = 0) -> int:
        return 0


def _load() -> tuple[list[Reader], dict[str, Writer]]:
    readers: list[Reader] = []
    writers: dict[str, Writer] = {}
    for name in FORMAT_MODULES:
        mod = importlib.import_module(f"{__name__}.{name}")
        if getattr(mod, "READER", None) is not None:
            readers.append(mod.READER)
        if getattr(mod, "WRITER", None) is not None:
            writers[mod.WRITER.name] = mod.WRITER
    return readers, writers


READERS, WRITERS = _load()


def reader_for(name: str) -> Reader:
    for r in READERS:
        if r.name == name:
            return r
    raise UsageError(f"unknown input format {name!r} (known: {', '.join(r.name for r in READERS)})")


def writer_for(name: str) -> Writer:
    try:
        return WRITERS[name]
    except KeyError:
        raise UsageError(f"unknown output format {name!r} (known: {', '.join(WRITERS)})") from None


def probe_format(path: str | os.PathLike) -> Reader | None:
    """The first reader that claims `path` by its content, or None."""
    path = os.fspath(path)
    if os.path.isdir(path):
        handle = DirectoryHandle(path)
        return next((r for r in READERS if _probe(r, handle, b"")), None)
    with open_input_file(path, noun="dump") as fh:
        try:
            head = fh.read(PROBE_BYTES)
        except OSError as exc:
            raise DumpIOError(f"cannot read {path}: {exc.strerror or exc}") from None
        if not head:
            raise BadInputError(f"{path} is empty")
        for r in READERS:
            fh.seek(0)
            if _probe(r, fh, head):
                return r
    return None


def _probe(reader: Reader, fh, head: bytes) -> bool:
    try:
        return bool(reader.probe(fh, head))
    except (DumpToolError, OSError, ValueError):
        return False


def _path_set(path) -> list[str] | None:
    """Several inputs that make one dump (the volumes of a multi-volume set): a list, or a
    comma-separated string that is not itself a path."""
    if isinstance(path, (list, tuple)):
        return [os.fspath(p) for p in path]
    if isinstance(path, str) and "," in path and not os.path.exists(path):
        return [p.strip() for p in path.split(",")]
    return None


def open_dump(path: str | os.PathLike | list, fmt: str | None = None, **opts: Any) -> Dump:
    """Open a dump of any known format (`fmt` forces one, e.g. "raw" for a plain memory image).
    `path` may list several files that form one dump (a multi-volume set: [p1, p2] or "p1,p2");
    the readers with a `probe_paths` claim those."""
    paths = _path_set(path)
    if paths is not None:
        if len(paths) == 1:
            path = paths[0]
        else:
            if fmt is not None:
                return reader_for(fmt).open(paths, **opts)
            for r in READERS:
                probe = getattr(r, "probe_paths", None)
                if probe is not None and probe(paths):
                    return r.open(paths, **opts)
            raise BadInputError(f"{', '.join(paths)}: no reader takes these files together (only the volumes of "
                                "a multi-volume s390 dump are read as one dump)")
    path = os.fspath(path)
    if fmt is not None:
        return reader_for(fmt).open(path, **opts)
    reader = probe_format(path)
    if reader is None:
        raise BadInputError(f"{path}: unknown dump format (tried {', '.join(r.name for r in READERS)}; "
                            "a plain raw memory image needs the format named: raw)")
    return reader.open(path, **opts)


def write_dump(dump: Dump, path: str | os.PathLike, fmt: str,
               progress: Callable[[int], None] | None = None, allow_incomplete: bool = False,
               **opts: Any) -> Any:
    """Write `dump` in format `fmt`; progress(n) is called as n more bytes of memory are done.

    An incomplete dump (cut short, ranges missing) is refused unless `allow_incomplete`; then
    every writer carries the missing ranges as missing and marks its output incomplete (ELF:
    e_flags DUMP_ELF_INCOMPLETE, kdump: the incomplete status flag, s390: no end marker).
    A filtered dump is complete: its excluded pages stay left out."""
    writer = writer_for(fmt)
    if not dump.attrs.complete and not allow_incomplete:
        raise IncompleteDumpError(f"the dump is incomplete ({dump.attrs.incomplete_reason}); writing it anyway "
                                  "needs --allow-incomplete (the result then says incomplete)")
    if fmt in ("kdump", "raw", "s390"):
        opts["allow_incomplete"] = allow_incomplete
    return writer.write(dump, path, progress, **opts)
