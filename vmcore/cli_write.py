"""What `vmcore save` and `vmcore convert` share: makedumpfile's output options declared once
(WriteOptions), the checks of the outputs before anything is read, the dump-level filter, the
writers with a progress bar, and the shared help texts of the vmcore commands.  The commands
themselves are in vmcore/cli.py."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect as pyinspect
import os
import typing
from typing import Optional

import typer
from rich.table import Table

from dumpkit.clikit import emit_json, progress_bar, stderr, stdout
from dumpkit.errors import BadInputError, UsageError
from dumpkit.fileio import STDOUT, check_output, is_stream_output, stream_description
from dumpkit.units import human
from vmcore import inspect
from vmcore.dmesg import format_dmesg
from vmcore.formats import write_dump

FORMAT_HELP = "output format: elf, kdump (kdump-compressed), s390 (flat s390 dump)"
ALLOW_INCOMPLETE_HELP = ("write a dump that was cut short anyway: what is missing stays missing and the "
                         "result is marked incomplete (without it: refused, exit 4)")
FORCE_HELP = "replace an existing output file (without it, an existing file is refused: exit 2)"
FLAT_HELP = ("kdump format: makedumpfile's flattened stream (makedumpfile -F; rebuild it with makedumpfile -R); "
             "always so to standard output (-o -), a FIFO or a device")
OUTPUT_HELP = ("dump file to write (atomically, mode 0600); a symlink is written through; - (standard output), "
               "a FIFO or a device take the streamable formats (kdump, flattened)")
SELECT_HELP = ("a kdump kernel caught by a stand-alone dump: prod (the production system, swap undone; "
               "the default), kdump (the kdump kernel's memory), all (everything as dumped)")


def input_paths(dump: str, *more: Optional[str]) -> list[str]:
    """The files a command reads: DUMP (or each of FILE1,FILE2,...) and any other input option."""
    paths = dump.split(",") if "," in dump and not os.path.exists(dump) else [dump]
    return paths + [m for m in more if m]


def _write_opts(out_fmt: str, output: str, flattened: bool, as_json: bool) -> dict:
    """Checks shared by save and convert; the writer options -F gives."""
    if flattened and out_fmt != "kdump":
        raise UsageError("-F (flattened) applies to -f kdump only")
    if output == STDOUT and as_json:
        raise UsageError("--json prints to standard output, which -o - takes for the dump")
    if out_fmt != "kdump" and is_stream_output(output):
        raise UsageError(f"-f {out_fmt} is written with seeks and cannot go to {stream_description(output)}; "
                         "-f kdump streams there (makedumpfile's flattened format)")
    return {"flattened": True} if flattened else {}


def summary_console(output: str):
    """Where the closing line goes: stderr when the dump itself went to standard output."""
    return stderr if output == STDOUT else stdout


def open_input(dump: str, fmt: Optional[str] = None, cpus_from: Optional[str] = None, select: Optional[str] = None):
    """Open DUMP (FILE, or FILE1,FILE2,... for a multi-volume set); -s picks the system."""
    import vmcore
    return vmcore.open(dump, select=select, fmt=fmt, **({"cpus_from": cpus_from} if cpus_from else {}))


DUMP_LEVEL_HELP = ("makedumpfile's dump level 0-31, the sum of the page classes left out: 1 zero, 2 page cache, "
                   "4 page cache incl. private, 8 user (anonymous, hugetlbfs), 16 free; offline and hwpoisoned "
                   "pages go at every level with 2-16; decided from VMCOREINFO and the dump's own struct pages "
                   "(no vmlinux)")
MEM_USAGE_HELP = ("print the pages of each class and how much each dump level would keep, write nothing "
                  "(makedumpfile --mem-usage)")
THREADS_HELP = "kdump format: compress on N threads (default: all cores)"
SPLIT_HELP = ("kdump format: write a split dump (makedumpfile --split), -o FILE1,FILE2,...: the pages divided "
              "over the files; read them together as FILE1,FILE2,... (or makedumpfile --reassemble)")


@dataclasses.dataclass
class WriteOptions:
    """The output options `save` and `convert` share, in makedumpfile's spellings (declared once in
    _WRITE_OPTIONS; `with_write_options` gives a command them as one `w`)."""
    output: Optional[str]
    flattened: bool
    force: bool
    compress: Optional[str]
    c_zlib: bool
    l_lzo: bool
    p_snappy: bool
    z_zstd: bool
    elf_out: bool
    level: int
    dump_level: Optional[int]
    mem_usage: bool
    num_threads: Optional[int]
    split: bool
    allow_incomplete: bool
    progress: Optional[bool]
    as_json: bool

    @property
    def codec(self) -> Optional[str]:
        return _codec(self.compress, self.c_zlib, self.l_lzo, self.p_snappy, self.z_zstd)


_WRITE_OPTIONS = {
    "output": (Optional[str], typer.Option(None, "-o", "--output", help=OUTPUT_HELP)),
    "flattened": (bool, typer.Option(False, "-F", "--flattened", help=FLAT_HELP)),
    "force": (bool, typer.Option(False, "--force", help=FORCE_HELP)),
    "compress": (Optional[str], typer.Option(None, "--compress",
                                             help="kdump format: zlib (default), lzo, snappy, zstd or none "
                                             "(what vmcore mount -f kdump serves)")),
    "c_zlib": (bool, typer.Option(False, "-c", help="kdump format, zlib pages (makedumpfile -c)")),
    "l_lzo": (bool, typer.Option(False, "-l", help="kdump format, lzo pages (makedumpfile -l)")),
    "p_snappy": (bool, typer.Option(False, "-p", help="kdump format, snappy pages (makedumpfile -p)")),
    "z_zstd": (bool, typer.Option(False, "-z", help="kdump format, zstd pages (makedumpfile -z)")),
    "elf_out": (bool, typer.Option(False, "-E", help="ELF output (makedumpfile -E; as -f elf)")),
    "level": (int, typer.Option(1, "--level", help="zlib level")),
    "dump_level": (Optional[int], typer.Option(None, "-d", "--dump-level", help=DUMP_LEVEL_HELP)),
    "mem_usage": (bool, typer.Option(False, "--mem-usage", help=MEM_USAGE_HELP)),
    "num_threads": (Optional[int], typer.Option(None, "--num-threads", help=THREADS_HELP)),
    "split": (bool, typer.Option(False, "--split", help=SPLIT_HELP)),
    "allow_incomplete": (bool, typer.Option(False, "--allow-incomplete", help=ALLOW_INCOMPLETE_HELP)),
    "progress": (Optional[bool], typer.Option(None, "--progress/--no-progress")),
    "as_json": (bool, typer.Option(False, "--json")),
}


def with_write_options(fn):
    """A command taking `w: WriteOptions`, shown to typer with the shared options in its signature."""
    hints = typing.get_type_hints(fn)
    own = [p.replace(annotation=hints.get(p.name, p.annotation))
           for p in pyinspect.signature(fn).parameters.values() if p.name != "w"]
    shared = [pyinspect.Parameter(name, pyinspect.Parameter.KEYWORD_ONLY, default=opt, annotation=kind)
              for name, (kind, opt) in _WRITE_OPTIONS.items()]

    @functools.wraps(fn)
    def command(**kwargs):
        w = WriteOptions(**{name: kwargs.pop(name) for name in _WRITE_OPTIONS})
        return fn(w=w, **kwargs)
    del command.__wrapped__
    command.__signature__ = pyinspect.Signature(own + shared)
    command.__annotations__ = {p.name: p.annotation for p in own + shared}
    return command


def prepare_write(w: WriteOptions, fmt: Optional[str], exclude_zero: bool, inputs: list[str]):
    """(output format, split parts or None, writer options) for a command's WriteOptions; the
    outputs checked before anything is read."""
    codec = w.codec
    out_fmt = out_format(fmt, w.elf_out, codec)
    if w.output is None:
        raise UsageError("-o/--output is needed (or --mem-usage, which writes nothing)")
    parts = _split_outputs(w.output, w.split, out_fmt, w.flattened)
    opts = _kdump_opts(out_fmt, parts[0] if parts else w.output, w.flattened, w.as_json, codec, w.level,
                       exclude_zero, w.num_threads)
    for o in parts or [w.output]:
        check_output(o, force=w.force, inputs=inputs)
    return out_fmt, parts, opts


def write_filtered(src, w: WriteOptions, out_fmt: str, parts, opts: dict, what: str):
    """Filter by -d, write with a progress bar; (the attributes of what was written, the page scan
    or None, bytes written).  A kdump file (not split) takes the exclusions as it writes, the
    page-class scan of each memory section running while the last one's pages are compressed;
    the other outputs write the filtered view once the scan is done."""
    if w.dump_level is not None and out_fmt == "kdump" and parts is None:
        from vmcore.filter import filtered_attrs, start_scan
        _check_dump_level(w.dump_level, out_fmt, opts)
        scan, steps = start_scan(src, w.dump_level)
        with progress_bar(src.present_bytes, f"{what} {out_fmt}", w.progress) as advance:
            _write_out(src, w.output, parts, out_fmt, advance, w.allow_incomplete,
                       dict(opts, exclusions=steps, excluding=w.dump_level))
        _warn_unreadable(scan)
        attrs = filtered_attrs(src, scan.excluded_ranges(), w.dump_level)
    else:
        view, scan = _filtered(src, w.dump_level, out_fmt, opts)
        with progress_bar(view.present_bytes, f"{what} {out_fmt}", w.progress) as advance:
            _write_out(view, w.output, parts, out_fmt, advance, w.allow_incomplete, opts)
        attrs = view.attrs
    written = sum(_size_of(o) or 0 for o in parts) if parts else _size_of(w.output)
    return attrs, scan, written


def _codec(compress: Optional[str], c: bool, lzo: bool, snappy: bool, zstd: bool) -> Optional[str]:
    """makedumpfile's -c/-l/-p/-z, or --compress NAME; at most one of them."""
    picked = [name for name, on in (("zlib", c), ("lzo", lzo), ("snappy", snappy), ("zstd", zstd)) if on]
    if len(picked) > 1 or picked and compress is not None and compress != picked[0]:
        raise UsageError("choose one compression: -c (zlib), -l (lzo), -p (snappy), -z (zstd) or --compress")
    return picked[0] if picked else compress


def out_format(fmt: Optional[str], elf: bool, codec: Optional[str]) -> str:
    """-f, or -E (ELF), or kdump when a makedumpfile compression option was given; else elf."""
    if elf:
        if fmt not in (None, "elf"):
            raise UsageError(f"-E (ELF) and -f {fmt} contradict each other")
        return "elf"
    return fmt or ("kdump" if codec is not None else "elf")


@contextlib.contextmanager
def spooled_stdin(dump: str, near: Optional[str]):
    """DUMP `-`: standard input (a flattened kdump stream, as makedumpfile -R reads it) copied into a
    temporary file beside the output, removed afterwards; any other DUMP passes through."""
    if dump != STDOUT:
        yield dump
        return
    import sys
    import tempfile
    if sys.stdin.isatty():
        raise UsageError("DUMP - reads the dump from standard input, which is a terminal")
    where = os.path.dirname(os.path.abspath(near)) if near and near != STDOUT and "," not in near else None
    fd, tmp = tempfile.mkstemp(prefix=".vmcore-stdin-", dir=where)
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                src = sys.stdin.buffer
                while True:
                    block = src.read(1 << 20)
                    if not block:
                        break
                    fh.write(block)
        except OSError as exc:
            from dumpkit.errors import DumpIOError
            raise DumpIOError(f"cannot keep standard input in {tmp}: {exc.strerror or exc}") from None
        if os.path.getsize(tmp) == 0:
            raise BadInputError("standard input is empty: no dump to read")
        yield tmp
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _filtered(dump, dump_level: Optional[int], out_fmt: str, opts: dict):
    """The dump as -d keeps it (the view and the scan), or the dump itself without -d."""
    if dump_level is None:
        return dump, None
    from vmcore.filter import filter_dump
    _check_dump_level(dump_level, out_fmt, opts)
    view, scan = filter_dump(dump, dump_level)
    _warn_unreadable(scan)
    return view, scan


def _check_dump_level(dump_level: int, out_fmt: str, opts: dict) -> None:
    from vmcore.filter import ALL_CLASSES, check_level
    check_level(dump_level)
    if out_fmt == "s390" and dump_level & ALL_CLASSES:
        raise UsageError("-d: a flat s390 dump cannot leave pages out; write -f kdump or -f elf")
    if out_fmt == "kdump" and dump_level == 1:
        # -d 1 alone: zero pages out of bitmap 2 (a reader takes them for zero at level 1).  With more
        # bits, makedumpfile keeps zero pages in bitmap 2 on one shared zero page, as the writer does
        # without exclude_zero: readers (makedumpfile --dump-dmesg, crash) read them as zeros
        opts["exclude_zero"] = True


def _warn_unreadable(scan) -> None:
    for line in scan.unreadable[:5]:
        stderr.print(f"warning: {line}; those pages are kept")
    if len(scan.unreadable) > 5:
        stderr.print(f"warning: {len(scan.unreadable) - 5} more blocks of struct pages not in the dump")


def _print_mem_usage(usage: dict) -> None:
    t = Table(title=f"pages of {usage['page_size']} bytes", box=None)
    for col in ("TYPE", "PAGES", "EXCLUDABLE", "DESCRIPTION"):
        t.add_column(col, justify="right" if col == "PAGES" else "left")
    for row in usage["classes"]:
        t.add_row(row["type"], str(row["pages"]), "yes" if row["excludable"] else "no", row["description"])
    stdout.print(t)
    stdout.print(f"Total pages: {usage['total_pages']}"
                 + (f" (the kernel counted {usage['kernel_free_pages']} free pages: NR_FREE_PAGES of its zones)"
                    if usage.get("kernel_free_pages") is not None else ""))
    lv = Table(title="what each dump level (-d) keeps", box=None)
    for col in ("-d", "PAGES", "BYTES", "SIZE"):
        lv.add_column(col, justify="right")
    for row in usage["levels"]:
        lv.add_row(str(row["dump_level"]), str(row["pages"]), str(row["bytes"]), human(row["bytes"]))
    stdout.print(lv)
    for line in usage["unreadable"][:5]:
        stderr.print(f"warning: {line} (kept whole)")


def _split_outputs(output: str, split: bool, out_fmt: str, flattened: bool) -> list[str] | None:
    """The files of --split (two or more, comma-separated), None without it."""
    if not split:
        return None
    if out_fmt != "kdump" or flattened:
        raise UsageError("--split writes kdump files (-f kdump or -c/-l/-p/-z), not flattened")
    paths = [p for p in output.split(",") if p]
    if len(paths) < 2:
        raise UsageError("--split needs two or more outputs: -o FILE1,FILE2[,...]")
    if len(set(paths)) != len(paths) or STDOUT in paths:
        raise UsageError("--split outputs must be distinct files")
    return paths


def _write_out(dump, output: str, parts: list[str] | None, out_fmt: str, advance, allow_incomplete: bool,
               opts: dict) -> None:
    if parts is None:
        write_dump(dump, output, out_fmt, progress=advance, allow_incomplete=allow_incomplete, **opts)
        return
    from dumpkit.errors import IncompleteDumpError
    from vmcore.formats.kdump.writer import write_split
    if not dump.attrs.complete and not allow_incomplete:
        raise IncompleteDumpError(f"the dump is incomplete ({dump.attrs.incomplete_reason}); writing it anyway "
                                  "needs --allow-incomplete (the result then says incomplete)")
    write_split(dump, parts, advance, allow_incomplete=allow_incomplete, **opts)


def _size_of(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_size if path != STDOUT and os.path.isfile(path) else None
    except OSError:
        return None


def size_text(n: Optional[int]) -> str:
    return "?" if n is None else human(n) if n >= 1024 else f"{n} bytes"


def _kdump_opts(fmt: str, output: str, flattened: bool, as_json: bool, codec: Optional[str], level: int,
                exclude_zero: bool, num_threads: Optional[int]) -> dict:
    opts = _write_opts(fmt, output, flattened, as_json)
    if fmt == "kdump":
        opts.update(compress=codec or "zlib", level=level, exclude_zero=exclude_zero)
        if num_threads is not None:
            if num_threads < 1:
                raise UsageError(f"--num-threads {num_threads}: at least 1")
            opts["threads"] = num_threads
    elif exclude_zero:
        raise UsageError("--exclude-zero applies to -f kdump only")
    elif codec not in (None, "none"):
        raise UsageError(f"compression ({codec}) applies to -f kdump only")
    return opts


def write_dmesg(dump: str, fmt: Optional[str], select: Optional[str], output: Optional[str], force: bool) -> None:
    """convert --dump-dmesg: the log as `vmcore dmesg` prints it, to a file or standard output."""
    from dumpkit.fileio import atomic_file
    if output is not None and output != STDOUT:
        check_output(output, force=force, inputs=input_paths(dump))
    with open_input(dump, fmt, select=select) as d:
        text = format_dmesg(inspect.kernel_log(d))
    if text and not text.endswith("\n"):
        text += "\n"
    if output is None or output == STDOUT:
        print(text, end="")
        return
    with atomic_file(output) as fh:
        fh.write(text.encode())


def mem_usage_out(dump, as_json: bool) -> None:
    from vmcore.filter import mem_usage
    usage = mem_usage(dump)
    if as_json:
        emit_json(usage)
    else:
        _print_mem_usage(usage)
