"""`vmcore verify`: is a dump complete, is every byte readable, does it hold the pages it should.

Three questions, answered on the dump model whatever the format:

1. completeness -- what the reader found (s390: end marker and TOD order, stop marker,
   the volume set; ELF/kdump: segments cut short) and the absent ranges;
2. readability -- every range that may hold data is read once (corrupt compressed units,
   bad tape records and I/O errors are found here and named by physical address);
3. page digests -- against a manifest: sha256 of every non-zero page, written by
   `write_manifest` from one dump and checked against another (the same memory
   converted to another format must match page for page).

Manifest file: one JSON line padded to MANIFEST_HEAD bytes (format, version, page size,
memory size, page count, the sha256 of the body), then the body: one 40-byte record per
non-zero page in ascending order -- the page address (u64 big-endian) and the page's
sha256.  A page's digest covers the bytes the dump holds of it (all 4096 for aligned
dumps), exactly as vmcore.model.page_digests computes it; all-zero pages are left out,
so zero pages, holes and zero chunks compare equal whatever the format does with them.

Result codes: 0 verified, 4 incomplete (complete otherwise, no mismatch), 3 unreadable
data or a page mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from dumpkit.errors import (
    EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_OK, BadInputError, DumpIOError, DumpToolError,
)
from native import nonzero_ranges
from dumpkit.fileio import atomic_file, open_input_file
from dumpkit.ranges import range_text
from vmcore.model import KIND_ABSENT, KIND_RAM, PAGE_SIZE, Dump

MANIFEST_FORMAT = "s390-dumptools page manifest"
MANIFEST_VERSION = 1
MANIFEST_HEAD = 1024                    # the JSON line, space padded, ends with "\n"
RECORD = struct.Struct(">Q32s")         # page address, sha256
READ_BLOCK = 4 << 20
RECORDS_PER_READ = 1 << 14
SHOW = 10                               # differing pages named in the report

Progress = Callable[[int], None] | None


# ---------------------------------------------------------------------------------------------
# walking the dump's data
# ---------------------------------------------------------------------------------------------

@dataclass
class ReadError:
    start: int
    end: int
    error: str

    def to_json(self) -> dict:
        return {"range": [self.start, self.end], "error": self.error}


def _blocks(dump: Dump, errors: list[ReadError], progress: Progress) -> Iterator[tuple[int, bytes]]:
    """(address, bytes) of every range that may hold data, page aligned inside its chunk, in
    ascending order; a block that cannot be read is recorded in `errors` and skipped."""
    ps = dump.attrs.page_size or PAGE_SIZE
    for c in dump.chunks:
        if c.kind != KIND_RAM:
            if progress:
                progress(c.size if c.kind != KIND_ABSENT else 0)
            continue
        done = c.start
        for s, e in c.source.data_ranges(0, c.size):
            lo = max(c.start, (c.start + s) // ps * ps)
            hi = min(c.end, -(-(c.start + e) // ps) * ps)
            lo = max(lo, done)
            pos = lo
            while pos < hi:
                n = min(hi, (pos // READ_BLOCK + 1) * READ_BLOCK) - pos
                try:
                    data = c.source.read(pos - c.start, n)
                except DumpToolError as exc:
                    errors.append(ReadError(pos, pos + n, str(exc)))
                    data = None
                if data is not None:
                    yield pos, data
                pos += n
            if progress and hi > done:
                progress(hi - done)
            done = max(done, hi)
        if progress and c.end > done:
            progress(c.end - done)


def iter_page_digests(dump: Dump, errors: list[ReadError] | None = None,
                      progress: Progress = None) -> Iterator[tuple[int, bytes]]:
    """(page address, sha256 digest) of every non-zero page, ascending (page_digests' values,
    streamed)."""
    ps = dump.attrs.page_size or PAGE_SIZE
    errs = [] if errors is None else errors
    page = None
    h = None
    for addr, data in _blocks(dump, errs, progress):
        mv = memoryview(data)
        for s, e in nonzero_ranges(mv, ps):
            for off in range(s, e, ps):
                p = (addr + off) // ps * ps
                if p != page:
                    if h is not None:
                        yield page, h.digest()
                    page, h = p, hashlib.sha256()
                h.update(mv[off:min(e, off + ps)])
    if h is not None:
        yield page, h.digest()


# ---------------------------------------------------------------------------------------------
# manifests
# ---------------------------------------------------------------------------------------------

@dataclass
class Manifest:
    path: str
    page_size: int
    memory_size: int
    pages: int
    body_sha256: str
    source: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"path": self.path, "page_size": self.page_size, "memory_size": self.memory_size,
                "pages": self.pages, "body_sha256": self.body_sha256, "source": self.source}


def write_manifest(dump: Dump, path: str | os.PathLike, errors: list[ReadError] | None = None,
                   progress: Progress = None) -> Manifest:
    """Write the page manifest of `dump` (atomically); unreadable ranges go to `errors` and
    make the manifest incomplete, which is refused."""
    path = os.fspath(path)
    errs: list[ReadError] = [] if errors is None else errors
    body = hashlib.sha256()
    count = 0
    try:
        with atomic_file(path) as fh:
            fh.write(b" " * MANIFEST_HEAD)
            buf = bytearray()
            for page, digest in iter_page_digests(dump, errs, progress):
                rec = RECORD.pack(page, digest)
                buf += rec
                count += 1
                if len(buf) >= RECORD.size * RECORDS_PER_READ:
                    body.update(buf)
                    fh.write(buf)
                    buf.clear()
            body.update(buf)
            fh.write(buf)
            if errs:
                raise BadInputError(f"cannot write a manifest of a dump with unreadable data: {errs[0].error}")
            a = dump.attrs
            head = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "page_size": a.page_size or PAGE_SIZE,
                    "memory_size": dump.size, "pages": count, "digest": "sha256",
                    "record": "u64 big-endian page address + 32-byte sha256, ascending",
                    "body_sha256": body.hexdigest(),
                    "source": {"format": a.format, "origin": a.origin, "complete": a.complete}}
            line = json.dumps(head, separators=(",", ":")).encode()
            if len(line) >= MANIFEST_HEAD:
                head["source"] = {"format": a.format}
                line = json.dumps(head, separators=(",", ":")).encode()
            fh.seek(0)
            fh.write(line.ljust(MANIFEST_HEAD - 1) + b"\n")
    except DumpToolError:
        raise
    except OSError as exc:
        raise DumpIOError(f"cannot write {path}: {exc.strerror or exc}") from None
    return Manifest(path, head["page_size"], dump.size, count, head["body_sha256"], head["source"])


def _open_manifest(path: str) -> tuple[BinaryIO, Manifest]:
    fh = open_input_file(path, noun="manifest")
    try:
        head = fh.read(MANIFEST_HEAD)
        try:
            meta = json.loads(head.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise BadInputError(f"{path} is not a page manifest (no JSON head line)") from None
        if not isinstance(meta, dict) or meta.get("format") != MANIFEST_FORMAT:
            raise BadInputError(f"{path} is not a page manifest")
        if meta.get("version") != MANIFEST_VERSION:
            raise BadInputError(f"{path}: manifest version {meta.get('version')!r} is not supported")
        try:
            m = Manifest(path, int(meta["page_size"]), int(meta["memory_size"]), int(meta["pages"]),
                         str(meta["body_sha256"]), dict(meta.get("source") or {}))
        except (KeyError, TypeError, ValueError):
            raise BadInputError(f"{path}: manifest head misses a field") from None
        size = os.fstat(fh.fileno()).st_size
        if m.pages < 0 or size != MANIFEST_HEAD + m.pages * RECORD.size:
            raise BadInputError(f"{path}: manifest body has {size - MANIFEST_HEAD} bytes, the head promises "
                                f"{m.pages} records of {RECORD.size}")
        h = hashlib.sha256()
        while True:
            block = fh.read(RECORD.size * RECORDS_PER_READ)
            if not block:
                break
            h.update(block)
        if h.hexdigest() != m.body_sha256:
            raise BadInputError(f"{path}: manifest body sha256 {h.hexdigest()} differs from its head "
                                f"({m.body_sha256}): the manifest is damaged")
        fh.seek(MANIFEST_HEAD)
        return fh, m
    except BaseException:
        fh.close()
        raise


def _records(fh: BinaryIO, path: str) -> Iterator[tuple[int, bytes]]:
    prev = -1
    while True:
        block = fh.read(RECORD.size * RECORDS_PER_READ)
        if not block:
            return
        for page, digest in RECORD.iter_unpack(block):
            if page <= prev:
                raise BadInputError(f"{path}: manifest records are not in ascending order at 0x{page:x}")
            prev = page
            yield page, digest


def read_manifest(path: str | os.PathLike) -> tuple[Manifest, dict[int, str]]:
    """The manifest's head and its pages (address -> sha256 hex); for tests and small dumps."""
    fh, m = _open_manifest(os.fspath(path))
    with fh:
        return m, {p: d.hex() for p, d in _records(fh, m.path)}


@dataclass
class ManifestCheck:
    manifest: Manifest
    matching: int = 0
    differing: int = 0
    missing: int = 0              # in the manifest, zero (or not there) in the dump
    unreadable: int = 0           # in the manifest, in an absent or unreadable range of the dump
    extra: int = 0                # non-zero in the dump, not in the manifest
    first: list[dict] = field(default_factory=list)
    memory_size_differs: bool = False

    @property
    def ok(self) -> bool:
        return not (self.differing or self.missing or self.unreadable or self.extra)

    def note(self, page: int, what: str, want: bytes | None, got: bytes | None) -> None:
        if len(self.first) < SHOW:
            self.first.append({"page": page, "problem": what, "manifest": want.hex() if want else None,
                               "dump": got.hex() if got else None})

    def summary(self) -> str:
        if self.ok:
            return f"all {self.matching} non-zero pages match the manifest"
        parts = []
        for n, what in ((self.differing, "differ"), (self.missing, "are zero or missing in the dump"),
                        (self.unreadable, "are in absent or unreadable ranges"),
                        (self.extra, "are non-zero in the dump but not in the manifest")):
            if n:
                parts.append(f"{n} {what}")
        pages = ", ".join(f"0x{f['page']:x} ({f['problem']})" for f in self.first[:3])
        return f"{'; '.join(parts)} ({self.matching} match); first: {pages}"

    def to_json(self) -> dict:
        return {"manifest": self.manifest.to_json(), "ok": self.ok, "matching": self.matching,
                "differing": self.differing, "missing": self.missing, "unreadable": self.unreadable,
                "extra": self.extra, "first": self.first, "memory_size_differs": self.memory_size_differs}


def check_manifest(dump: Dump, path: str | os.PathLike, errors: list[ReadError] | None = None,
                   progress: Progress = None) -> ManifestCheck:
    """Compare every non-zero page of `dump` with the manifest (both streamed, merged in order)."""
    errs: list[ReadError] = [] if errors is None else errors
    fh, m = _open_manifest(os.fspath(path))
    ps = dump.attrs.page_size or PAGE_SIZE
    if m.page_size != ps:
        fh.close()
        raise BadInputError(f"the manifest has {m.page_size}-byte pages, the dump {ps}-byte pages")
    res = ManifestCheck(m, memory_size_differs=m.memory_size != dump.size)

    def lost(page: int, want: bytes) -> None:
        c = dump.chunk_at(page)
        if (c is not None and c.kind == KIND_ABSENT) or any(e.start <= page < e.end for e in errs):
            res.unreadable += 1
            res.note(page, "absent or unreadable in the dump", want, None)
        else:
            res.missing += 1
            res.note(page, "zero or missing in the dump", want, None)

    with fh:
        want_iter = _records(fh, m.path)
        want = next(want_iter, None)
        for page, got in iter_page_digests(dump, errs, progress):
            while want is not None and want[0] < page:
                lost(*want)
                want = next(want_iter, None)
            if want is not None and want[0] == page:
                if want[1] == got:
                    res.matching += 1
                else:
                    res.differing += 1
                    res.note(page, "differs", want[1], got)
                want = next(want_iter, None)
            else:
                res.extra += 1
                res.note(page, "not in the manifest", None, got)
        while want is not None:
            lost(*want)
            want = next(want_iter, None)
    return res


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------

@dataclass
class VerifyReport:
    complete: bool
    reason: str | None
    checks: list[dict]
    absent: list[tuple[int, int]]
    bytes_checked: int = 0
    errors: list[ReadError] = field(default_factory=list)
    manifest_check: ManifestCheck | None = None
    manifest_written: Manifest | None = None

    @property
    def status(self) -> str:
        if self.errors:
            return "unreadable"
        if any(c.get("check") == "notes" and c.get("ok") is False for c in self.checks):
            return "notes damaged"
        if self.manifest_check is not None and not self.manifest_check.ok:
            return "mismatch"
        if not self.complete:
            return "incomplete"
        return "verified"

    @property
    def exit_code(self) -> int:
        return {"verified": EXIT_OK, "incomplete": EXIT_INCOMPLETE}.get(self.status, EXIT_BAD_INPUT)

    def to_json(self) -> dict:
        return {"status": self.status, "exit_code": self.exit_code, "complete": self.complete, "reason": self.reason,
                "checks": self.checks, "absent": [list(r) for r in self.absent], "bytes_checked": self.bytes_checked,
                "errors": [e.to_json() for e in self.errors],
                "manifest": None if self.manifest_check is None else self.manifest_check.to_json(),
                "manifest_written": None if self.manifest_written is None else self.manifest_written.to_json()}


def _generic_checks(dump: Dump) -> list[dict]:
    a = dump.attrs
    checks = [dict(c) for c in a.extra.get("checks", []) if isinstance(c, dict)]
    absent = dump.missing_ranges()
    if absent:
        checks.append({"check": "memory present", "ok": False, "detail": f"absent: {range_text(absent)}"})
    else:
        checks.append({"check": "memory present", "ok": True,
                       "detail": f"0x{dump.present_bytes:x} bytes in {len(dump.chunks)} chunks"})
    filtered = a.filtered_text()
    if filtered:
        checks.append({"check": "filtered", "ok": True, "detail": filtered})
    checks.append({"check": "complete", "ok": a.complete, "detail": a.incomplete_reason or "complete"})
    notes_error = a.extra.get("notes_error")
    if notes_error:
        checks.append({"check": "notes", "ok": False, "detail": notes_error})
    return checks


def verify_dump(dump: Dump, manifest: str | os.PathLike | None = None,
                write_manifest_to: str | os.PathLike | None = None, progress: Progress = None) -> VerifyReport:
    """Completeness, readability of every data range, and (optionally) the pages against a
    manifest or written into one."""
    rep = VerifyReport(dump.attrs.complete, dump.attrs.incomplete_reason, _generic_checks(dump),
                       dump.missing_ranges())
    counted = [0]

    def count(n: int) -> None:
        counted[0] += n
        if progress:
            progress(n)

    if manifest is not None:
        rep.manifest_check = check_manifest(dump, manifest, rep.errors, count)
        rep.checks.append({"check": "page digests", "ok": rep.manifest_check.ok,
                           "detail": rep.manifest_check.summary()})
    elif write_manifest_to is not None:
        rep.manifest_written = write_manifest(dump, write_manifest_to, rep.errors, count)
        rep.checks.append({"check": "manifest written", "ok": True,
                           "detail": f"{rep.manifest_written.pages} pages -> {rep.manifest_written.path}"})
    else:
        for _addr, _data in _blocks(dump, rep.errors, count):
            pass
    if manifest is not None and write_manifest_to is not None:
        rep.manifest_written = write_manifest(dump, write_manifest_to, rep.errors)
    rep.bytes_checked = counted[0]
    if rep.errors:
        e = rep.errors[0]
        more = f" and {len(rep.errors) - 1} more" if len(rep.errors) > 1 else ""
        rep.checks.append({"check": "readable", "ok": False,
                           "detail": f"0x{e.start:x}-0x{e.end - 1:x}: {e.error}{more}"})
    else:
        rep.checks.append({"check": "readable", "ok": True, "detail": "every data range read"})
    return rep
