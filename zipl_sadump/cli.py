"""`sadump`: stand-alone dump devices -- build them as zipl -d / -M do, show them, extract the dump.

Commands are thin: each parses its options, calls one library function of
zipl_sadump.device / fulldump / extract (the dump on a device read by
meminfo_abi.s390_dump_reader) and prints.  Other modules add
commands to `app` (e.g. `sadump ipl`).
"""

from __future__ import annotations

import os
from typing import Optional

import typer
from rich.table import Table

from dumpkit.errors import BadInputError, DumpToolError, UsageError
from meminfo_abi.tod import tod_text
from dumpkit.clikit import emit_json, main_for, new_app, progress_bar, stdout
from dumpkit.fileio import check_output, output_kind
from dumpkit.units import human, parse_size
from zipl_sadump.device import (
    MV_TOOL_VERSIONS, DeviceInfo, build_device, build_multi_volume, fits, mvdump_table_block, parse_device_list,
    read_devices,
)
from meminfo_abi.s390_dump_reader import open_device_dump as open_dump
from zipl_sadump.extract import extract_dump, held_dump

EXTRACT_FORMATS = ("elf", "s390", "s390_ext")

app = new_app(help="Stand-alone dump devices: build (zipl -d / -M), show, extract the dump.")


@app.command()
def build(
    device: Optional[str] = typer.Option(None, "--device", "-d", help="single-volume dump device image"),
    multi_volume: Optional[str] = typer.Option(None, "--multi-volume", "-M",
                                               help="FILE1,FILE2,...: ECKD volumes of a multi-volume dump"),
    type_: str = typer.Option("eckd", "--type", "-t", help="eckd, fba or tape (single volume)"),
    size: Optional[str] = typer.Option(None, "--size", help="create the image(s) with this size (default: reuse)"),
    mem_limit: Optional[str] = typer.Option(None, "--mem-limit", help="dump at most this much memory (zipl SIZE)"),
    no_compress: bool = typer.Option(False, "--no-compress", help="ECKD: never write compressed segments"),
    force: bool = typer.Option(False, "--force", help="--device: replace a dump not yet extracted, or an existing "
                                                        "file that is no dump device; -M: zipl -M --force (do not "
                                                        "check/write the volume signature)"),
    tool_version: Optional[int] = typer.Option(None, "--tool-version",
                                               help="-M: XMULT64 dump tool version, 2 (zipl >= 2.37, the default) "
                                                    "or 1 (older zipl; the layout zgetdump < 2.37 reads)"),
    kdump_kernel: Optional[str] = typer.Option(None, "--kdump-kernel", help="ECKD: also store this kdump kernel"),
    kdump_initrd: Optional[str] = typer.Option(None, "--kdump-initrd", help="initrd for --kdump-kernel"),
    kdump_append: str = typer.Option("", "--kdump-append", help="command line for --kdump-kernel"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Install a dump tool on a device image, laid out as zipl leaves a real device."""
    if kdump_kernel is None and (kdump_initrd is not None or kdump_append):
        raise UsageError("--kdump-initrd and --kdump-append go with --kdump-kernel")
    if kdump_kernel is not None and device is None:
        raise UsageError("--kdump-kernel needs a single-volume --device")
    if (device is None) == (multi_volume is None):
        raise UsageError("give exactly one of --device FILE or --multi-volume FILE1,FILE2,...")
    if tool_version is not None and multi_volume is None:
        raise UsageError("--tool-version applies to a multi-volume dump (--multi-volume)")
    if tool_version is not None and tool_version not in MV_TOOL_VERSIONS:
        raise UsageError(f"--tool-version must be one of {', '.join(map(str, MV_TOOL_VERSIONS))}")
    size_b = parse_size(size, "device size") if size is not None else None
    limit = parse_size(mem_limit, "memory limit") if mem_limit is not None else None
    if device is not None:
        if not force:
            _refuse_overwrite(device, size_b is not None)
        if kdump_kernel is not None and type_.lower() != "eckd":
            raise UsageError("--kdump-kernel is supported on ECKD devices (zipl's DASD stand-alone kdump)")
        if kdump_kernel is not None:       # check the kernel before anything is written
            from meminfo_abi.kernel_image import read_kernel_image
            read_kernel_image(kdump_kernel)
        devs = [build_device(device, type_.lower(), size_b, mem_limit=limit, no_compress=no_compress)]
        if kdump_kernel is not None:
            from zipl_sadump.kdumpdev import add_kdump_kernel
            comps = add_kdump_kernel(device, kdump_kernel, kdump_initrd, kdump_append)
            if not as_json:
                stdout.print(f"kdump kernel stored: {human(comps.kernel_size)} kernel, "
                             f"{human(comps.initrd_size)} initrd, command line {comps.cmdline!r}")
    else:
        if no_compress:
            raise UsageError("--no-compress only applies to a single ECKD device (multi-volume never compresses)")
        devs = build_multi_volume(parse_device_list(multi_volume), size_b, force=force, mem_limit=limit,
                                  **({} if tool_version is None else {"tool_version": tool_version}))
    _show(devs, None, as_json)


def _refuse_overwrite(device: str, new_size: bool) -> None:
    """sadump build without --force: a device holding a dump (extracted or not: the device cannot
    tell) keeps it, and a file that is no dump device is not replaced by a new image."""
    kind = output_kind(device)
    if kind == "new":
        return
    dump = held_dump(device)
    if dump is not None:
        state = "complete" if dump["complete"] else "incomplete"
        raise UsageError(f"{device} holds a {state} dump of {human(dump['mem_size'])} taken {dump['tod_text']} "
                         "that may not be extracted yet: sadump extract it first, or give --force to wipe it")
    if new_size and kind == "file":
        try:
            read_devices([device])
        except DumpToolError:
            raise UsageError(f"{device} already exists and is not a dump device; give --force to replace it") \
                from None


@app.command()
def show(
    device: str = typer.Option(..., "--device", "-d", help="dump device image, or FILE1,FILE2,... (multi-volume)"),
    for_machine: Optional[str] = typer.Option(None, "--for-machine", help="machine directory: does it fit?"),
    as_json: bool = typer.Option(False, "--json", help="print as JSON"),
) -> None:
    """The dump tool, its parameters, the dump partition and the dump on it."""
    devs = read_devices(parse_device_list(device))
    mem = None
    if for_machine is not None:
        from s390_machine.machine import Machine
        with Machine.open(for_machine, "read") as m:
            mem = m.state.memory_size
    _show(devs, mem, as_json, with_dump=True)


@app.command()
def extract(
    device: str = typer.Option(..., "--device", "-d", help="dump device image, or FILE1,FILE2,... (multi-volume)"),
    output: str = typer.Option(..., "--output", "-o", help="dump file to write (mode 0600)"),
    fmt: str = typer.Option("elf", "--format", "-f",
                            help="elf (what zgetdump DEVICE > FILE writes; crash, drgn and gdb open it), "
                                 "s390 (the flat s390 dump, zgetdump -f s390), s390_ext (the dump area's own "
                                 "stream: header, segments, end marker)"),
    force: bool = typer.Option(False, "--force", help="replace an existing output file"),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete",
                                          help="extract a dump that was cut short anyway: it still reads as "
                                               "incomplete (ELF e_flags, no s390 end marker)"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                            help="progress bar (default: when stderr is a terminal)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Copy the dump off the device as zgetdump does: ELF by default, -f s390 or s390_ext on request."""
    if fmt not in EXTRACT_FORMATS:
        raise UsageError(f"-f {fmt}: choose one of {', '.join(EXTRACT_FORMATS)}")
    paths = parse_device_list(device)
    if os.path.isdir(output):
        raise BadInputError(f"output {output} is a directory")
    check_output(output, force=force, inputs=paths)
    devs = read_devices(paths)
    if fmt != "s390_ext":
        from vmcore.formats import open_dump as open_any_dump
        from vmcore.formats import write_dump
        with open_any_dump(",".join(paths)) as d:
            with progress_bar(max(d.present_bytes, 1), f"extracting as {fmt}", progress) as advance:
                write_dump(d, output, fmt, progress=advance, allow_incomplete=allow_incomplete)
            res = {"path": output, "format": fmt, "size": os.path.getsize(output), "mem_size": d.size,
                   "cpus": len(d.cpus), "source": device, "complete": d.attrs.complete,
                   "reason": d.attrs.incomplete_reason}
        if as_json:
            emit_json(res)
            return
        stdout.print(f"{output}: {fmt}, {human(res['size'])} ({res['size']} bytes), memory {human(res['mem_size'])}, "
                     f"{res['cpus']} CPUs, from {device}"
                     + ("" if res["complete"] else f", INCOMPLETE: {res['reason']}"))
        return
    with open_dump(devs) as d:
        if d.layout == "flat":
            total = d.mem_size
        else:
            total = sum(seg.next_offset - seg.header_offset for _, seg in d.segments)
    with progress_bar(max(total, 1), "extracting", progress) as advance:
        res = extract_dump(devs, output, progress=advance, allow_incomplete=allow_incomplete)
    if as_json:
        emit_json(res)
        return
    stdout.print(f"{res.path}: {human(res.size)} ({res.size} bytes), {res.segments} segments, "
                 f"memory {human(res.mem_size)}, from {res.source}"
                 + ("" if res.complete else f", INCOMPLETE (no end marker): {res.reason}"))


@app.command()
def ipl(
    device: str = typer.Option(..., "--device", "-d", help="dump device image, or FILE1,FILE2,... (multi-volume)"),
    machine: str = typer.Option(..., "--machine", help="the machine to IPL the dumper on"),
    kdump: str = typer.Option("auto", "--kdump", help="auto: start kdump when meminfo and every checksum hold; off"),
    no_compress: bool = typer.Option(False, "--no-compress", help="no DFLTCC: write uncompressed segments"),
    cpu: Optional[int] = typer.Option(None, "--cpu", help="the IPL CPU (default: the machine's)"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                            help="progress bar (default: when stderr is a terminal)"),
    show_map: bool = typer.Option(True, "--map/--no-map", help="end with a picture of what was dumped"),
    no_wait: bool = typer.Option(False, "--no-wait", help="fail (exit 5) instead of waiting while another command uses the machine or a device"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """IPL the stand-alone dumper: store status, check meminfo and every checksum, then start
    kdump (intact) or write the full dump (otherwise), then re-IPL or stop in a disabled wait."""
    from s390_machine.machine import Machine
    from zipl_sadump.ipl import ipl as do_ipl
    paths = parse_device_list(device)
    with Machine.open(machine, "read", wait=not no_wait) as m:
        total = m.state.memory_size
    with progress_bar(total, "dumping", progress if not as_json else False) as advance:
        res = do_ipl(paths, machine, kdump=kdump, compress=not no_compress, progress=advance, ipl_cpu=cpu,
                     wait=not no_wait)
    if as_json:
        emit_json(res.to_json())
    else:
        for line in res.stored:
            stdout.print(f"store status: {line}")
        t = Table(title="stage 1: meminfo and kdump checks")
        for col in ("check", "result", "detail", "wait code"):
            t.add_column(col)
        for c in res.checks.checks:
            t.add_row(c.name, "[green]ok[/]" if c.ok else "[red]FAILED[/]", c.detail,
                      "" if c.wait_code is None else f"0x{c.wait_code:04x}")
        stdout.print(t)
        for note in res.notes:
            stdout.print(f"stage 2: {note}")
        if res.decision == "kdump from device":
            stdout.print(f"[green]decision: kdump from the dump device[/] - the kdump in memory failed "
                         f"({res.reason}); the device's kdump kernel was started")
        elif res.decision == "kdump":
            stdout.print(f"[green]decision: kdump[/] - {res.reason}; swapped [0, crashkernel size) with the "
                         "crashkernel memory and started the kdump kernel at 0x10010")
        else:
            d = res.dump
            state = "[green]complete[/]" if d.complete else f"[red]INCOMPLETE[/] ({d.reason})"
            stdout.print(f"[yellow]decision: full dump[/] - {res.reason}")
            stdout.print(f"full dump {state}: {human(d.bytes_dumped)} of memory in {d.segments} segments, "
                         f"{human(d.bytes_written)} written{', zlib' if d.compressed else ''}"
                         + ("" if d.complete else f"; the device needs {human(d.needed)}"))
            r = res.reipl
            stdout.print(f"after the dump: {r.action} - {r.detail}"
                         + (f" (wait code 0x{r.wait_code:04x})" if r.wait_code is not None else ""))
            if show_map and d.complete:
                _print_map(paths)
    if res.dump is not None and not res.dump.complete:
        raise typer.Exit(4)


def _print_map(paths: list[str]) -> None:
    """The picture `vmcore map` draws, of the dump just written (read back from the device).
    A CLI may use any package; the dumper itself (zipl_sadump.ipl) never imports vmcore."""
    from dumpkit.errors import DumpToolError
    from vmcore import memmap
    from vmcore.formats import open_dump as open_any
    try:
        with open_any(paths[0] if len(paths) == 1 else paths) as dump:
            model = memmap.build_map(dump, max(8, stdout.width - 22) * 8)
    except DumpToolError as exc:        # the picture is a courtesy; the verdict is printed above
        stdout.print(f"(no memory map: {exc})")
        return
    stdout.print(memmap.render_text(model, stdout.width, stdout.encoding))


def _show(devs: list[DeviceInfo], mem_size: int | None, as_json: bool, with_dump: bool = False) -> None:
    dump = None
    if with_dump:
        with open_dump(devs) as d:
            dump = d.summary()
    fit = fits(devs, mem_size) if mem_size is not None else None
    if as_json:
        out = {"devices": [d.to_json() for d in devs]}
        if dump is not None:
            out["dump"] = dump
        if fit is not None:
            out["fit"] = fit.to_json()
        emit_json(out)
        return
    d0 = devs[0]
    t = Table(title=f"dump device {', '.join(d.path for d in devs)}", show_header=False)
    t.add_row("dump tool", f"{d0.description} ({d0.tool} version {d0.tool_version})")
    t.add_row("device type", d0.type.upper() if d0.type != "tape" else "tape (AWSTAPE image)")
    geo = f", {d0.num_heads} heads, {d0.bpt} blocks per track" if d0.num_heads else ""
    t.add_row("block size", f"{d0.block_size}{geo}")
    t.add_row("dump size limit", "none" if d0.mem_limit is None else human(d0.mem_limit))
    if d0.type == "eckd" and not d0.multi_volume:
        t.add_row("compression", "off (--no-compress)" if d0.no_compress else "zlib when DFLTCC is available")
    if d0.multi_volume:
        t.add_row("force specified", "yes" if d0.force else "no")
        t.add_row("parameter table", f"block {mvdump_table_block(d0.tool_version)}, {len(d0.mv_table.volumes)} "
                  f"volumes, time stamp {tod_text(d0.mv_table.tod)}")
    stdout.print(t)

    v = Table(title="dump area" + ("s" if len(devs) > 1 else ""))
    cols = ["vol", "device", "image", "blocks", "offset", "size"] + (["signature"] if d0.multi_volume else [])
    for col in cols:
        v.add_column(col, overflow="fold")
    for i, d in enumerate(devs):
        blocks = f"{d.blk_start}-{d.blk_end}" if d.type != "tape" else "-"
        row = [str(i), "" if d.devno is None else f"0.0.{d.devno:04x}", d.path, blocks, f"0x{d.dump_offset:x}",
               human(d.dump_size)]
        if d0.multi_volume:
            row.append("valid" if d.signature else "[red]invalid[/]")
        v.add_row(*row)
    stdout.print(v)

    if dump is not None:
        s = Table(title="dump on the device", show_header=False)
        if not dump["present"]:
            s.add_row("status", f"none ({dump['reason']})")
        else:
            state = "[green]complete[/]" if dump["complete"] else f"[red]incomplete[/] - {dump['reason']}"
            s.add_row("status", state)
            s.add_row("format", f"{dump['layout']} (magic {dump['magic']}, version {dump['version']}"
                                f"{', zlib' if dump['zlib'] else ''})")
            s.add_row("dump created", dump["tod_text"])
            s.add_row("dump ended", dump["end_tod_text"] or "-")
            s.add_row("memory", f"{human(dump['mem_size'])} (real {human(dump['mem_size_real'])})")
            s.add_row("CPUs", f"{dump['cpu_cnt']} dumped, {dump['real_cpu_cnt']} real; prefixes "
                              + ", ".join(f"0x{p:x}" for p in dump["lc_vec"]))
            if dump["layout"] == "ext":
                s.add_row("segments", f"{dump['segments']} ({human(dump['data_size'])} on disk)")
        stdout.print(s)

    if fit is not None:
        verdict = "[green]fits[/]" if fit.fits else "[red]does not fit[/]"
        stdout.print(f"machine memory {human(mem_size)} (dumped: {human(fit.mem_size)}): {verdict} - worst case "
                     f"{human(fit.needed)} needed, {human(fit.available)} available"
                     + (f" ({fit.reason})" if fit.reason else ""))


main = main_for(app, "sadump")

if __name__ == "__main__":
    main()
