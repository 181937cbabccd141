"""`vmcore`: the kdump kernel's dump saver and the inspection / conversion tool for s390 dumps."""

from __future__ import annotations

import contextlib
from typing import Optional

import typer
from rich.table import Table

from dumpkit.errors import EXIT_BAD_INPUT, EXIT_INCOMPLETE, BadInputError, UsageError
from dumpkit.clikit import emit_json, main_for, new_app, progress_bar, stderr, stdout
from dumpkit.fileio import check_output
from dumpkit.units import human, parse_size
from vmcore import inspect
from vmcore.dmesg import format_dmesg
from vmcore.cli_write import (
    FORMAT_HELP, SELECT_HELP, WriteOptions, write_dmesg, input_paths, mem_usage_out, open_input, out_format,
    prepare_write, size_text, spooled_stdin, summary_console, with_write_options, write_filtered,
)

PROC_VMCORE = "/proc/vmcore"        # vmcore.kdump.PROC_VMCORE (not imported: it pulls in the simulator)

app = new_app(help="Save, inspect and convert s390x dumps: ELF, s390 (flat/extended), kdump-compressed, "
             "raw memory images, and a kdump kernel's /proc/vmcore.")

@app.command()
@with_write_options
def save(
    machine: Optional[str] = typer.Option(None, "--machine", help="machine whose kdump kernel is running "
                                          "(none: this kdump kernel's --vmcore)"),
    vmcore_path: str = typer.Option(PROC_VMCORE, "--vmcore", help="without --machine: the old kernel's memory "
                                    "as the running kdump kernel serves it"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help=FORMAT_HELP + " (default elf; kdump with -c/-l/-p/-z)"),
    exclude_zero: bool = typer.Option(False, "--exclude-zero", help="kdump format: leave zero pages out"),
    no_wait: bool = typer.Option(False, "--no-wait", help="fail (exit 5) instead of waiting while another command changes the machine"),
    w: WriteOptions = None,
) -> None:
    """What the kdump initrd runs: build the dump from /proc/vmcore and save it."""
    source = machine or vmcore_path

    @contextlib.contextmanager
    def old_memory():
        """The crashed kernel's memory: the simulated machine's kdump kernel, or this (real) kdump
        kernel's /proc/vmcore."""
        if machine is None:
            from vmcore.kdump import open_proc_vmcore
            with open_proc_vmcore(vmcore_path) as dump:
                yield dump
            return
        from s390_machine.machine import Machine
        from vmcore.kdump import kdump_dump
        with Machine.open(machine, "read", wait=not no_wait) as m:
            if m.interrupted:
                raise BadInputError(f"{machine}: {m.interrupted}; not saving from it")
            with kdump_dump(m) as dump:
                yield dump

    fmt = out_format(fmt, w.elf_out, w.codec)
    if w.mem_usage:
        with old_memory() as dump:
            mem_usage_out(dump, w.as_json)
        return
    fmt, parts, opts = prepare_write(w, fmt, exclude_zero, [source])
    output = w.output
    with old_memory() as dump:
        attrs, scan, written = write_filtered(dump, w, fmt, parts, opts, "saving")
        result = {"output": output, "format": fmt, "source": source, "memory": dump.size, "cpus": len(dump.cpus),
                  "complete": dump.attrs.complete, "incomplete_reason": dump.attrs.incomplete_reason,
                  "vmcoreinfo": dump.attrs.vmcoreinfo_source,
                  "crashkernel_excluded": dump.attrs.extra.get("crashkernel_excluded"),
                  "dump_level": w.dump_level, "excluded_pages": attrs.excluded_pages if scan else 0,
                  "zero_pages_excluded": bool(fmt == "kdump" and exclude_zero), "saved_bytes": written}
    if w.as_json:
        emit_json(result)
    else:
        summary_console(output).print(f"saved {human(result['memory'])} of old memory, {result['cpus']} CPUs, "
                               f"VMCOREINFO from {result['vmcoreinfo']} to {output} ({fmt})"
                               + (f", dump level {w.dump_level}: {result['excluded_pages']} pages left out, "
                                  f"{size_text(result['saved_bytes'])} written" if w.dump_level is not None else "")
                               + ("" if result["complete"] else f", INCOMPLETE: {result['incomplete_reason']}"))


@app.command()
def info(
    dump: str = typer.Argument(..., help="dump file or machine directory"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="force the input format (e.g. raw)"),
    cpus_from: Optional[str] = typer.Option(None, "--cpus-from", help="raw images: CPUs from a state file or QEMU ELF"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Format, memory, CPUs, completeness, VMCOREINFO summary and the meminfo checks."""
    with open_input(dump, fmt, cpus_from, select) as d:
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
    with open_input(dump, fmt, cpus_from, select) as d:
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
    with open_input(dump, fmt, select=select) as d:
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
    with open_input(dump, fmt, select=select) as d:
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
    with open_input(dump, fmt, select=select) as d:
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
    with spooled_stdin(dump, w.output) as path:
        _convert(path, w, out_fmt, fmt, cpus_from, select, exclude_zero, dump_dmesg, shown=dump)


def _convert(dump, w: WriteOptions, out_fmt, fmt, cpus_from, select, exclude_zero, dump_dmesg, shown) -> None:
    codec = w.codec
    if w.mem_usage:
        with open_input(dump, fmt, cpus_from, select) as d:
            mem_usage_out(d, w.as_json)
        return
    if dump_dmesg:
        write_dmesg(dump, fmt, select, w.output, w.force)
        return
    if out_fmt is None and not w.elf_out and codec is None:
        raise UsageError("the output format is needed: -f elf|kdump|s390 (or -E, -c, -l, -p, -z)")
    out_fmt, parts, opts = prepare_write(w, out_fmt, exclude_zero, input_paths(dump, cpus_from))
    output = w.output
    with open_input(dump, fmt, cpus_from, select) as src:
        attrs, _scan, written = write_filtered(src, w, out_fmt, parts, opts, "converting to")
        res = {"input": shown, "input_format": attrs.format, "output": output, "format": out_fmt,
               "memory": src.size, "cpus": len(src.cpus), "complete": attrs.complete,
               "incomplete_reason": attrs.incomplete_reason, "filtered": attrs.filtered_text(),
               "dump_level": attrs.dump_level, "excluded_pages": attrs.excluded_pages,
               "written_bytes": written}
    if w.as_json:
        emit_json(res)
    else:
        summary_console(output).print(f"{shown} ({res['input_format']}) -> {output} ({out_fmt}), {human(res['memory'])}, "
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
        check_output(svg, force=force, inputs=input_paths(dump), what="--svg")
    with open_input(dump, fmt, select=select) as d:
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
        check_output(write_manifest, force=force, inputs=input_paths(dump, manifest), what="manifest")
    with open_input(dump, fmt, select=select) as d:
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
                                    "(dump.kdump with -f kdump, dump.s390 with -f s390)"),
    out_fmt: str = typer.Option("elf", "--format", "-f",
                                help="the mounted file's format: elf; kdump (kdump-compressed, but pages "
                                "uncompressed: what convert -f kdump --compress none writes); or s390 "
                                "(the flat s390 dump)"),
    in_fmt: Optional[str] = typer.Option(None, "--input-format", help="force the input format (e.g. raw)"),
    select: Optional[str] = typer.Option(None, "-s", "--select", help=SELECT_HELP),
    foreground: bool = typer.Option(False, "--foreground", help="serve in this process until unmounted"),
    cache_size: str = typer.Option("64M", "--cache-size",
                                   help="inflated units (compressed dumps) kept between reads; 0: none"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """zgetdump -m: the dump as a read-only file DIR/dump.elf (or dump.kdump, dump.s390), made on demand (no copy)."""
    from vmcore.mount import mount as do_mount
    res = do_mount(lambda: open_input(dump, in_fmt, select=select), directory, out_fmt, foreground=foreground,
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
    with open_input(dump, fmt, select=select) as d:
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
    with open_input(dump, fmt, select=select) as d:
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
    with open_input(dump, fmt, select=select) as d:
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
    with open_input(dump, fmt, select=select) as d:
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
    with open_input(dump, fmt, select=select) as d:
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
