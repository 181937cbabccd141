"""What every format module shares: its writer's registry entry, and how its reader reports
what stopped it."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable

from construct import ConstructError

from dumpkit.errors import BadInputError, DumpIOError, DumpToolError

# what a malformed layout raises while it is parsed: the reader says "malformed", exit 3
MALFORMED = (ConstructError, ValueError, OverflowError, struct.error, UnicodeError, IndexError, MemoryError)


@dataclass(frozen=True)
class FormatWriter:
    """The WRITER of a format module: its name (-f NAME), a line for the help, and the function
    write_fn(dump, path, progress, **opts) that writes it."""

    name: str
    description: str
    write_fn: Callable[..., Any]

    def write(self, dump, path, progress: Callable[[int], None] | None = None, **opts: Any) -> Any:
        return self.write_fn(dump, path, progress, **opts)


def reader_error(exc: BaseException, path: str, what: str) -> BaseException:
    """The error to raise for `exc`, which stopped the reader of `path` (a `what`): ours as it is,
    the OS's refusal as DumpIOError (exit 5), a malformed layout as BadInputError (exit 3);
    anything else (KeyboardInterrupt, a bug) unchanged."""
    if isinstance(exc, DumpToolError):
        return exc
    if isinstance(exc, OSError):
        return DumpIOError(f"cannot read {path}: {exc.strerror or exc}")
    if isinstance(exc, MALFORMED):
        return BadInputError(f"{path}: malformed {what}: {exc}")
    return exc
