"""`vmcore`: the kdump kernel's dump saver and the inspection / conversion tool for s390 dumps."""

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

from dumpkit.errors import EXIT_BAD_INPUT, EXIT_INCOMPLETE, BadInputError, UsageError
from dumpkit.clikit import emit_json, main_for, new_app, progress_bar, stderr, stdout
from dumpkit.fileio import STDOUT, check_output, is_stream_output, stream_description
from dumpkit.units import human, parse_size
from vmcore import inspect
from vmcore.dmesg import format_dmesg
from vmcore.formats import write_dump

app = new_app(help="Save, inspect and convert s390x dumps: ELF, s390 (flat/extended), kdump-compressed, "
             "raw memory images, and a kdump kernel's /proc/vmcore.")

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


def _inputs(dump: str, *more: Optional[str]) -> list[str]:
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


def _summary(output: str):
    """Where the closing line goes: stderr when the dump itself went to standard output."""
    return stderr if output == STDOUT else stdout


def _open(dump: str, fmt: Optional[str] = None, cpus_from: Optional[str] = None, select: Optional[str] = None):
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
                                             help="kdump format: zlib (default), lzo, snappy, zstd or none")),
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


def _prepare_write(w: WriteOptions, fmt: Optional[str], exclude_zero: bool, inputs: list[str]):
    """(output format, split parts or None, writer options) for a command's WriteOptions; the
    outputs checked before anything is read."""
    codec = w.codec
    out_fmt = _out_format(fmt, w.elf_out, codec)
    if w.output is None:
        raise UsageError("-o/--output is needed (or --mem-usage, which writes nothing)")
    parts = _split_outputs(w.output, w.split, out_fmt, w.flattened)
    opts = _kdump_opts(out_fmt, parts[0] if parts else w.output, w.flattened, w.as_json, codec, w.level,
                       exclude_zero, w.num_threads)
    for o in parts or [w.output]:
        check_output(o, force=w.force, inputs=inputs)
    return out_fmt, parts, opts


def _write_filtered(src, w: WriteOptions, out_fmt: str, parts, opts: dict, what: str):
    """Filter by -d, write with a progress bar; (the view written, the page scan or None, bytes written)."""
    view, scan = _filtered(src, w.dump_level, out_fmt, opts)
    with progress_bar(view.present_bytes, f"{what} {out_fmt}", w.progress) as advance:
        _write_out(view, w.output, parts, out_fmt, advance, w.allow_incomplete, opts)
    written = sum(_size_of(o) or 0 for o in parts) if parts else _size_of(w.output)
    return view, scan, written


def _codec(compress: Optional[str], c: bool, lzo: bool, snappy: bool, zstd: bool) -> Optional[str]:
    """makedumpfile's -c/-l/-p/-z, or --compress NAME; at most one of them."""
    picked = [name for name, on in (("zlib", c), ("lzo", lzo), ("snappy", snappy), ("zstd", zstd)) if on]
    if len(picked) > 1 or picked and compress is not None and compress != picked[0]:
        raise UsageError("choose one compression: -c (zlib), -l (lzo), -p (snappy), -z (zstd) or --compress")
    return picked[0] if picked else compress


def _out_format(fmt: Optional[str], elf: bool, codec: Optional[str]) -> str:
    """-f, or -E (ELF), or kdump when a makedumpfile compression option was given; else elf."""
    if elf:
        if fmt not in (None, "elf"):
            raise UsageError(f"-E (ELF) and -f {fmt} contradict each other")
        return "elf"
    return fmt or ("kdump" if codec is not None else "elf")


@contextlib.contextmanager
def _spooled_stdin(dump: str, near: Optional[str]):
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
    from vmcore.filter import ALL_CLASSES, check_level, filter_dump
    check_level(dump_level)
    if out_fmt == "s390" and dump_level & ALL_CLASSES:
        raise UsageError("-d: a flat s390 dump cannot leave pages out; write -f kdump or -f elf")
    if out_fmt == "kdump" and dump_level == 1:
        # -d 1 alone: zero pages out of bitmap 2 (a reader takes them for zero at level 1).  With more
        # bits, makedumpfile keeps zero pages in bitmap 2 on one shared zero page, as the writer does
        # without exclude_zero: readers (makedumpfile --dump-dmesg, crash) read them as zeros
        opts["exclude_zero"] = True
    view, scan = filter_dump(dump, dump_level)
    for line in scan.unreadable[:5]:
        stderr.print(f"warning: {line}; those pages are kept")
    if len(scan.unreadable) > 5:
        stderr.print(f"warning: {len(scan.unreadable) - 5} more blocks of struct pages not in the dump")
    return view, scan


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


@app.command()
@with_write_options
def save(
    machine: str = typer.Option(..., "--machine", help="machine whose kdump kernel is running"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help=FORMAT_HELP + " (default elf; kdump with -c/-l/-p/-z)"),
    exclude_zero: bool = typer.Option(False, "--exclude-zero", help="kdump format: leave zero pages out"),
    no_wait: bool = typer.Option(False, "--no-wait", help="fail (exit 5) instead of waiting while another command changes the machine"),
    w: WriteOptions = None,
) -> None:
    """What the kdump initrd runs: build the dump from /proc/vmcore and save it."""
    from s390_machine.machine import Machine
    from vmcore.kdump import kdump_dump
    fmt = _out_format(fmt, w.elf_out, w.codec)
    if w.mem_usage:
        with Machine.open(machine, "read", wait=not no_wait) as m, kdump_dump(m) as dump:
            _mem_usage_out(dump, w.as_json)
        return
    fmt, parts, opts = _prepare_write(w, fmt, exclude_zero, [machine])
    output = w.output
    with Machine.open(machine, "read", wait=not no_wait) as m:
        if m.interrupted:
            raise BadInputError(f"{machine}: {m.interrupted}; not saving from it")
        dump = kdump_dump(m)
        with dump:
            view, scan, written = _write_filtered(dump, w, fmt, parts, opts, "saving")
        result = {"output": output, "format": fmt, "memory": dump.size, "cpus": len(dump.cpus),
                  "complete": dump.attrs.complete, "incomplete_reason": dump.attrs.incomplete_reason,
                  "vmcoreinfo": dump.attrs.vmcoreinfo_source,
                  "crashkernel_excluded": dump.attrs.extra.get("crashkernel_excluded"),
                  "dump_level": w.dump_level, "excluded_pages": view.attrs.excluded_pages if scan else 0,
                  "saved_bytes": written}
    if w.as_json:
        emit_json(result)
    else:
        _summary(output).print(f"saved {human(result['memory'])} of old memory, {result['cpus']} CPUs, "
                               f"VMCOREINFO from {result['vmcoreinfo']} to {output} ({fmt})"
                               + (f", dump level {w.dump_level}: {result['excluded_pages']} pages left out, "
                                  f"{_size_text(result['saved_bytes'])} written" if w.dump_level is not None else "")
                               + ("" if result["complete"] else f", INCOMPLETE: {result['incomplete_reason']}"))


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


def _size_text(n: Optional[int]) -> str:
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


def _dump_dmesg(dump: str, fmt: Optional[str], select: Optional[str], output: Optional[str], force: bool) -> None:
    """convert --dump-dmesg: the log as `vmcore dmesg` prints it, to a file or standard output."""
    from dumpkit.fileio import atomic_file
    if output is not None and output != STDOUT:
        check_output(output, force=force, inputs=_inputs(dump))
    with _open(dump, fmt, select=select) as d:
        text = format_dmesg(inspect.kernel_log(d))
    if text and not text.endswith("\n"):
        text += "\n"
    if output is None or output == STDOUT:
        print(text, end="")
        return
    with atomic_file(output) as fh:
        fh.write(text.encode())


def _mem_usage_out(dump, as_json: bool) -> None:
    from vmcore.filter import mem_usage
    usage = mem_usage(dump)
    if as_json:
        emit_json(usage)
    else:
        _print_mem_usage(usage)


@app.command()
def info(
    dump: str = typer.Argument(..., help="dump file or machine directory"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="force the input format (e.g. raw)"),
    cpus_from: Optional[str] = typer.Option(None, "--cpus-from", help="raw images: CPUs from a state file or QEMU ELF"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Format, memory, CPUs, completeness, VMCOREINFO summary and the meminfo checks."""
    with _open(dump, fmt, cpus_from, select) as d:
        data = inspect.dump_info(d)
    if as_json:
        emit_json(data)
    else:
        t = Table(title=f"dump {dump}", show_header=False)
        t.add_row("format", f"{data['format']} {data['format_version'] or ''}".strip())
        t.add_row("time", data["time"] or "unknown")
        t.add_row("memory", f"{human(data['memory_size'])} ({human(data['memory_present'])} in the dump, "
                            f"{len(data['chunks'])} chunks)")
        t.add_row("CPUs", str(data["cpus"]) + _cpu_counts(data["extra"]))
        caught = data["extra"].get("kdump_caught")
        if caught:
            sel = data["extra"].get("system")
            t.add_row("system", f"[yellow]a kdump kernel was caught by the stand-alone dump[/] (OLDMEM "
                                f"0x{caught['oldmem_base']:x}, {human(caught['oldmem_size'])}); showing "
                                f"{sel}: {caught['systems'][sel]} (-s prod|kdump|all)")
        t.add_row("complete", "[green]yes[/]" if data["complete"] else f"[red]no[/]: {data['incomplete_reason']}")
        if data["filtered"]:
            t.add_row("filtered", data["filtered"])
        if data["notes_error"]:
            t.add_row("notes", f"[red]DAMAGED[/]: {data['notes_error']}")
        vi = data["vmcoreinfo"]
        t.add_row("VMCOREINFO", "none" if vi is None else
                  f"{vi['osrelease']}, page size {vi['page_size']}, KERNELOFFSET {vi['kerneloffset']} "
                  f"(from {data['vmcoreinfo_source']})")
        if data["crashed_in"]:
            t.add_row("crashed in", f"{data['crashed_in']['where']} on CPU {data['crashed_in']['cpu']}")
        mi = data["meminfo"]
        if "block" in mi:           # three separate truths: the os_info block, the crashkernel, kdump
            t.add_row("os_info block", mi["block"])
            t.add_row("crashkernel", mi["crashkernel_state"])
            t.add_row("kdump", mi["kdump"])
        else:
            t.add_row("os_info block", f"unreadable - {mi['reason']}")
        stdout.print(t)
    if data["notes_error"]:
        raise typer.Exit(EXIT_BAD_INPUT)
    if not data["complete"]:
        raise typer.Exit(EXIT_INCOMPLETE)


@app.command()
def regs(
    dump: str = typer.Argument(...),
    cpu: Optional[int] = typer.Option(None, "--cpu", help="only this CPU (index in the dump)"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f"),
    cpus_from: Optional[str] = typer.Option(None, "--cpus-from"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """CPU registers: PSW, GPRs, access and control registers, FPRs/VXRs, timers, prefix."""
    with _open(dump, fmt, cpus_from, select) as d:
        items = inspect.cpu_registers(d, cpu)
    if as_json:
        emit_json([dict(r.to_json(), index=i) for i, r in items])
        return
    for i, r in items:
        stdout.print(f"[bold]CPU {i}[/] (address {r.address}, prefix 0x{r.prefix:08x})")
        stdout.print(f" PSW  {r.psw_mask:016x} {r.psw_addr:016x}")
        for name, vals, w in (("GPRS", r.gprs, 16), ("ACRS", r.acrs, 8), ("CRS", r.crs, 16), ("FPRS", r.fprs, 16)):
            for row in range(0, 16, 4):
                stdout.print(f" {name if row == 0 else '':4} " + " ".join(f"{v:0{w}x}" for v in vals[row:row + 4]))
        stdout.print(f" FPC  {r.fpc:08x}  timer {r.cpu_timer:016x}  clock comparator {r.clock_comparator:016x}"
                     f"  todpreg {r.todpreg:08x}")
        if r.vxrs is not None:
            for v in range(16, 32, 2):
                stdout.print(f" V{v:<3} {r.vxrs[v * 16:v * 16 + 16].hex()}  V{v + 1:<3} {r.vxrs[v * 16 + 16:v * 16 + 32].hex()}")


@app.command()
def dmesg(
    dump: str = typer.Argument(...),
    partial: bool = typer.Option(False, "--partial", help="only what came after the last dmesg -c"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The kernel log, from VMCOREINFO alone (no vmlinux), like makedumpfile --dump-dmesg."""
    with _open(dump, fmt, select=select) as d:
        records = inspect.kernel_log(d, partial=partial)
    if as_json:
        emit_json([{"seq": r.seq, "ts_nsec": r.ts_nsec, "level": r.level, "facility": r.facility,
                    "caller_id": r.caller_id, "text": r.text} for r in records])
    else:
        text = format_dmesg(records)
        if text:
            print(text, end="" if text.endswith("\n") else "\n")


# The read-only commands take the same four parameters (DUMP, -f, -s, --json), alike on purpose: each is
# a thin typer command over one library call, and typer reads each command's own signature.
@app.command()
def vmcoreinfo(
    dump: str = typer.Argument(...),
    fmt: Optional[str] = typer.Option(None, "--format", "-f"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The VMCOREINFO text (from the note, or found through lowcore 0xE18/0xE0C)."""
    with _open(dump, fmt, select=select) as d:
        vi = d.attrs.vmcoreinfo
        if vi is None:
            raise BadInputError("the dump has no VMCOREINFO (not in a note, not through lowcore 0xE18/0xE0C)")
        if as_json:
            emit_json({"source": d.attrs.vmcoreinfo_source, "entries": dict(vi.entries)})
        else:
            print(vi.text(), end="")


@app.command()
def read(
    dump: str = typer.Argument(...),
    addr: str = typer.Argument(..., help="address, or SYMBOL[+OFF] (a kernel virtual address)"),
    length: str = typer.Argument("0x100", help="bytes to show"),
    virt: Optional[bool] = typer.Option(None, "--virt/--phys", help="ADDRESS is kernel virtual (default: "
                                        "physical for a number, virtual for a symbol)"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Hex dump of physical memory, or of kernel virtual memory (--virt, or a symbol)."""
    n = parse_size(length, "length")
    if n > 1 << 24:
        raise BadInputError(f"length {n} is more than 16 MiB: use convert to extract ranges that large")
    number = parse_size(addr, "address") if addr[:1].isdigit() else None
    with _open(dump, fmt, select=select) as d:
        space = inspect.kernel_space(d) if virt or number is None else None
        a = number if number is not None else inspect.parse_location(space, addr)[0]
        is_virt = virt if virt is not None else number is None
        data = space.read(a, n) if is_virt else d.read(a, n)
    if as_json:
        emit_json({"address": a, "virtual": is_virt, "length": n, "data": data.hex()})
    else:
        print(inspect.hexdump(data, a))


@app.command()
@with_write_options
def convert(
    dump: str = typer.Argument(...),
    out_fmt: Optional[str] = typer.Option(None, "-f", "--to", help=FORMAT_HELP + " (needed, unless -E or -c/-l/-p/-z "
                                          "say it)"),
    fmt: Optional[str] = typer.Option(None, "--from", help="force the input format (e.g. raw)"),
    cpus_from: Optional[str] = typer.Option(None, "--cpus-from"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    exclude_zero: bool = typer.Option(False, "--exclude-zero",
                                      help="kdump format: leave zero pages out (else each has a descriptor, "
                                           "24 bytes a page: ~100 GiB for 16 TiB)"),
    dump_dmesg: bool = typer.Option(False, "--dump-dmesg", help="write the kernel log instead of a dump, to -o or "
                                    "standard output (makedumpfile --dump-dmesg; as `vmcore dmesg`)"),
    w: WriteOptions = None,
) -> None:
    """Any reader followed by any writer (-d: filtered as makedumpfile's dump level).  DUMP `-` reads
    a flattened kdump stream from standard input (makedumpfile -R)."""
    with _spooled_stdin(dump, w.output) as path:
        _convert(path, w, out_fmt, fmt, cpus_from, select, exclude_zero, dump_dmesg, shown=dump)


def _convert(dump, w: WriteOptions, out_fmt, fmt, cpus_from, select, exclude_zero, dump_dmesg, shown) -> None:
    codec = w.codec
    if w.mem_usage:
        with _open(dump, fmt, cpus_from, select) as d:
            _mem_usage_out(d, w.as_json)
        return
    if dump_dmesg:
        _dump_dmesg(dump, fmt, select, w.output, w.force)
        return
    if out_fmt is None and not w.elf_out and codec is None:
        raise UsageError("the output format is needed: -f elf|kdump|s390 (or -E, -c, -l, -p, -z)")
    out_fmt, parts, opts = _prepare_write(w, out_fmt, exclude_zero, _inputs(dump, cpus_from))
    output = w.output
    with _open(dump, fmt, cpus_from, select) as src:
        d, _scan, written = _write_filtered(src, w, out_fmt, parts, opts, "converting to")
        res = {"input": shown, "input_format": d.attrs.format, "output": output, "format": out_fmt,
               "memory": d.size, "cpus": len(d.cpus), "complete": d.attrs.complete,
               "incomplete_reason": d.attrs.incomplete_reason, "filtered": d.attrs.filtered_text(),
               "dump_level": d.attrs.dump_level, "excluded_pages": d.attrs.excluded_pages,
               "written_bytes": written}
    if w.as_json:
        emit_json(res)
    else:
        _summary(output).print(f"{shown} ({res['input_format']}) -> {output} ({out_fmt}), {human(res['memory'])}, "
                               f"{res['cpus']} CPUs"
                               + (f", filtered: {res['filtered']}" if res["filtered"] else "")
                               + ("" if res["complete"] else f", written INCOMPLETE: {res['incomplete_reason']}"))


@app.command("map")
def map_(
    dump: str = typer.Argument(...),
    svg: Optional[str] = typer.Option(None, "--svg", help="also write the picture as an SVG file"),
    force: bool = typer.Option(False, "--force", help="replace an existing --svg file"),
    rows: int = typer.Option(16, "--rows", help="terminal rows of cells"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Physical memory as a picture: present, zero, excluded, absent, crashkernel, swapped, anchors."""
    from dumpkit.fileio import atomic_write_text
    from vmcore import memmap
    width = stdout.width
    if svg:
        check_output(svg, force=force, inputs=_inputs(dump), what="--svg")
    with _open(dump, fmt, select=select) as d:
        model = memmap.build_map(d, max(8, width - 22) * rows)
    if svg:
        atomic_write_text(svg, memmap.render_svg(model, f"physical memory of {dump}"))
    if as_json:
        emit_json(model.to_json())
    else:
        stdout.print(memmap.render_text(model, width, stdout.encoding))


@app.command()
def verify(
    dump: str = typer.Argument(..., help="dump file, device image, or FILE1,FILE2,... (multi-volume)"),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="check every non-zero page against this manifest"),
    write_manifest: Optional[str] = typer.Option(None, "--write-manifest",
                                                 help="write the page manifest (sha256 per non-zero page) here"),
    force: bool = typer.Option(False, "--force", help="replace an existing --write-manifest file"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="force the input format"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Completeness (end marker, TOD order, stop marker, volume set), every data range readable,
    page digests against a manifest.  Exit 0 verified, 4 incomplete, 3 unreadable or mismatch."""
    from vmcore.verify import verify_dump
    if write_manifest:
        check_output(write_manifest, force=force, inputs=_inputs(dump, manifest), what="manifest")
    with _open(dump, fmt, select=select) as d:
        with progress_bar(d.present_bytes, "verifying", progress) as advance:
            rep = verify_dump(d, manifest=manifest, write_manifest_to=write_manifest, progress=advance)
        fmt_name = d.attrs.format
    if as_json:
        emit_json(dict(rep.to_json(), input=dump, format=fmt_name))
    else:
        t = Table(title=f"verify {dump} ({fmt_name})")
        t.add_column("check")
        t.add_column("result")
        t.add_column("detail")
        for c in rep.checks:
            ok = c.get("ok")
            t.add_row(c["check"], "ok" if ok else ("[red]FAILED[/]" if ok is False else "-"), str(c.get("detail", "")))
        stdout.print(t)
        colour = {"verified": "green", "incomplete": "yellow"}.get(rep.status, "red")
        filtered = d.attrs.filtered_text() if rep.status == "verified" else None
        why = rep.reason if rep.status == "incomplete" else d.attrs.extra.get("notes_error") \
            if rep.status == "notes damaged" else None
        stdout.print(f"[{colour}]{rep.status}[/]" + (f": {why}" if why else "")
                     + (f" (filtered: {filtered})" if filtered else ""))
    if rep.exit_code:
        raise typer.Exit(rep.exit_code)


@app.command()
def mount(
    dump: str = typer.Argument(..., help="dump file, device image, or FILE1,FILE2,... (multi-volume)"),
    directory: str = typer.Argument(..., help="an empty directory: the dump appears there as dump.elf "
                                    "(dump.s390 with -f s390)"),
    out_fmt: str = typer.Option("elf", "--format", "-f",
                                help="the mounted file's format: elf, or s390 (the flat s390 dump)"),
    in_fmt: Optional[str] = typer.Option(None, "--input-format", help="force the input format (e.g. raw)"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    foreground: bool = typer.Option(False, "--foreground", help="serve in this process until unmounted"),
    cache_size: str = typer.Option("64M", "--cache-size",
                                   help="inflated units (compressed dumps) kept between reads; 0: none"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """zgetdump -m: the dump as a read-only file DIR/dump.elf (or dump.s390), made on demand (no copy)."""
    from vmcore.mount import mount as do_mount
    res = do_mount(lambda: _open(dump, in_fmt, select=select), directory, out_fmt, foreground=foreground,
                   cache_size=parse_size(cache_size, "cache size"))
    if as_json:
        emit_json(res)
    elif not foreground:
        stdout.print(f"{dump} mounted: {res['file']} (vmcore umount {res['mountpoint']})")


@app.command()
def umount(
    directory: str = typer.Argument(..., help="the mount point of a vmcore mount"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """End a vmcore mount."""
    from vmcore.mount import umount as do_umount
    res = do_umount(directory)
    if as_json:
        emit_json(res)
    else:
        stdout.print(f"{res['mountpoint']} unmounted")


# -- kernel virtual addresses, symbols, backtraces (issue 19) ------------------------------------
@app.command()
def vtop(
    dump: str = typer.Argument(...),
    addr: str = typer.Argument(..., help="kernel virtual address, or SYMBOL[+OFF]"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Kernel virtual -> physical through the kernel's page tables, every table level shown."""
    with _open(dump, fmt, select=select) as d:
        space = inspect.kernel_space(d)
        tr = space.walk(inspect.parse_location(space, addr)[0])
    if as_json:
        emit_json(tr.to_json())
        return
    print(f"VIRTUAL           PHYSICAL\n{tr.virt:<16x}  {tr.phys:x}\n")
    print(f"ASCE  {tr.asce:016x}")
    for lv in tr.levels:
        print(f"{lv.name.upper():<13} table {lv.table:x} index {lv.index:<4} entry @{lv.entry_addr:x}: {lv.entry:016x}")
    lin = ("not covered" if tr.linear is None else
           f"0x{tr.linear:x} ({'agrees' if tr.linear == tr.phys else 'DIFFERS'})")
    print(f"PAGE {human(tr.page_size)}{', protected' if tr.protected else ''}; identity/image mapping: {lin}")


@app.command()
def sym(
    dump: str = typer.Argument(...),
    what: Optional[str] = typer.Argument(None, help="NAME or ADDRESS"),
    list_all: bool = typer.Option(False, "--list", help="every symbol, like /proc/kallsyms"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Symbols from the dump's own kallsyms: NAME -> address, ADDRESS -> name+0xoff/0xsize."""
    if (what is None) == (not list_all):
        raise UsageError("give NAME or ADDRESS, or --list")
    with _open(dump, fmt, select=select) as d:
        space = inspect.kernel_space(d)
        syms = inspect.kernel_symbols(space)
    if list_all:
        if as_json:
            emit_json([s.to_json() for s in syms.symbols])
        else:
            print("\n".join(f"{s.address:016x} {s.type} {s.name}" for s in syms.symbols))
        return
    if what[:1].isdigit():
        a = parse_size(what, "address")
        hit = syms.lookup(a)
        if hit is None:
            raise BadInputError(f"0x{a:x} is in no symbol of the dump's kallsyms")
        res = dict(hit[0].to_json(), query=a, offset=hit[1], text=syms.describe(a))
    else:
        s = syms.by_name(what)
        if s is not None:
            res = dict(s.to_json(), text=f"{s.address:016x} {s.type} {s.name}")
        elif space.symbol(what) is not None:
            a = space.symbol(what)
            res = {"name": what, "type": "?", "address": a, "size": None, "text": f"{a:016x} ? {what} (VMCOREINFO)"}
        else:
            raise BadInputError(f"no symbol {what!r} in the dump's kallsyms or VMCOREINFO")
    if as_json:
        emit_json(res)
    else:
        print(res["text"])


@app.command()
def bt(
    dump: str = typer.Argument(...),
    cpu: Optional[int] = typer.Option(None, "--cpu", help="only this CPU (index in the dump)"),
    all_cpus: bool = typer.Option(False, "--all", help="every CPU (the default: the crashed CPU, else all)"),
    task: Optional[int] = typer.Option(None, "--task", help="the task with this PID (needs the kernel's BTF; "
                                       "without it one line, exit 3)"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Kernel backtrace of each CPU from its PSW and r15 along the stack back chain, named by kallsyms;
    --task PID: a task's stack (a sleeping task's from its saved kernel stack pointer)."""
    from vmcore.backtrace import crash_site
    if sum((cpu is not None, all_cpus, task is not None)) > 1:
        raise UsageError("--cpu, --all and --task exclude each other")
    if task is not None:
        _bt_task(dump, task, fmt, select, as_json)
        return
    with _open(dump, fmt, select=select) as d:
        bts, syms = inspect.kernel_backtraces(d, cpu)
    if cpu is None and not all_cpus:
        hit = crash_site(bts, syms)
        bts = [hit[0]] if hit else bts
    if as_json:
        emit_json({"symbols": syms.source, "cpus": [b.to_json() for b in bts]})
        return
    for b in bts:
        print(f"CPU {b.cpu} (address {b.cpu_address}) PSW {b.psw_mask:016x} {b.psw_addr:016x}\nCall Trace:")
        _print_frames(b.frames)
        print(f" ({b.stop})" + ("" if syms.symbols else f"\n (no symbols: {syms.source})"))


def _print_frames(frames, first: str = "task") -> None:
    kind = first
    for f in frames:
        if f.stack != kind:
            print(f" <{f.stack} stack>")
            kind = f.stack
        print(f" [<{f.address:016x}>] {f.symbol}")


def _cpu_counts(extra: dict) -> str:
    """s390 dumps: CPUs in lc_vec vs all CPUs that stored status."""
    real = extra.get("real_cpu_cnt")
    cnt = extra.get("cpu_cnt")
    if isinstance(real, int) and isinstance(cnt, int) and real != cnt:
        return f" ({cnt} in the dump header's lowcore list, {real} stored status)"
    return ""


# -- tasks from the kernel's BTF (issue 19) ------------------------------------------------------------
@app.command()
def ps(
    dump: str = typer.Argument(...),
    fmt: Optional[str] = typer.Option(None, "--format", "-f"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The kernel's tasks, like crash's ps: PID, PPID, CPU, task address, state (RU, IN, UN, ID, ZO, ...),
    command; '>' marks a task running on a CPU.  Needs the kernel's BTF (CONFIG_DEBUG_INFO_BTF):
    without it one line, exit 3."""
    from vmcore.tasks import task_list
    with _open(dump, fmt, select=select) as d:
        tl = task_list(d)
    if as_json:
        emit_json(tl.to_json())
        return
    print("   PID    PPID  CPU       TASK        ST  COMM")
    for t in tl.tasks:
        comm = f"[{t.comm}]" if t.kernel_thread or t.pid == 0 else t.comm
        cpu = "-" if t.cpu is None else str(t.cpu)
        ppid = "-" if t.ppid is None else str(t.ppid)
        print(f"{'>' if t.active else ' '}{t.pid:>6} {ppid:>7} {cpu:>4}  {t.address:016x}  {t.state}  {comm}")
    for n in tl.notes:
        stderr.print(f"note: {n}", highlight=False, markup=False)


def _bt_task(dump: str, pid: int, fmt: Optional[str], select: Optional[str], as_json: bool) -> None:
    from vmcore.tasks import task_backtrace
    with _open(dump, fmt, select=select) as d:
        b, t, syms = task_backtrace(d, pid)
    if as_json:
        emit_json({"symbols": syms.source, "cpus": [b.to_json()]})
        return
    print(f"PID {t.pid} TASK {t.address:016x} COMMAND \"{t.comm}\" STATE {t.state} "
          f"({b.task['source']})\nCall Trace:")
    _print_frames(b.frames)
    print(f" ({b.stop})")


main = main_for(app, "vmcore")

if __name__ == "__main__":
    main()
