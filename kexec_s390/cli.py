"""`kexec-s390`: load a kdump kernel into crashkernel memory the s390 way."""

from __future__ import annotations

import os
from typing import List, Optional

import typer
from rich.table import Table

from kexec_s390 import ops
from meminfo_abi.kexec import segment_checksums
from dumpkit.clikit import emit_json, main_for, new_app, progress_bar, stdout
from dumpkit.units import human

app = new_app(help="Load a kdump kernel into the reserved crashkernel memory (no page tables) and "
             "secure it in the checksummed meminfo block.")


@app.command()
def load(
    kernel: str = typer.Argument(..., help="s390x kernel image (raw image / Debian vmlinuz)"),
    kdump: bool = typer.Option(False, "-p", "--kdump", "--load-panic", help="load for kdump (crash) into crashkernel memory"),
    initrd: Optional[str] = typer.Option(None, "--initrd", help="initial ramdisk"),
    command_line: List[str] = typer.Option([], "--command-line", help="kernel command line (may repeat)"),
    append: List[str] = typer.Option([], "--append", help="appended to the command line (may repeat)"),
    reuse_cmdline: bool = typer.Option(False, "--reuse-cmdline", help="start from the running kernel's command line"),
    machine: Optional[str] = typer.Option(None, "--machine", help="simulated machine directory"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the segment plan, load nothing"),
    crashkernel: Optional[str] = typer.Option(None, "--crashkernel", help="BASE:SIZE for --dry-run without --machine"),
    debug: bool = typer.Option(False, "-d", "--debug", help="print segments and entry as kexec-tools does"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress"),
    no_wait: bool = typer.Option(False, "--no-wait", help="fail (exit 5) instead of waiting while another command uses the machine"),
    as_json: bool = typer.Option(False, "--json", help="print as JSON"),
) -> None:
    """Load a kernel (and initrd) for kdump: kexec -p, the s390 way."""
    total = os.path.getsize(initrd) if initrd and os.path.isfile(initrd) else 0
    with progress_bar(total, "loading", progress if not dry_run else False) as advance:
        out = ops.load(kernel, initrd=initrd, command_line=command_line, append=append,
                       reuse_cmdline=reuse_cmdline, kdump=kdump, machine=machine, dry_run=dry_run,
                       crashkernel=crashkernel, progress=advance, wait=not no_wait)
    plan = out.plan
    rows = plan.describe(with_checksums=dry_run or as_json or debug)
    if debug:
        _debug(out, rows)
    if as_json:
        emit_json({
            "target": out.target, "kdump": plan.kdump, "entry": hex(plan.entry), "flags": hex(plan.flags),
            "crashkernel": {"base": hex(plan.crash_base), "size": hex(plan.crash_size)},
            "kernel": {"path": out.image.path, "version": out.image.version, "s390ep": out.image.has_s390ep},
            "command_line": plan.command_line,
            "initrd": {"start": hex(plan.initrd_start), "size": plan.initrd_size},
            "segments": [dict(r, mem=hex(r["mem"]), memsz=hex(r["memsz"]), bufsz=hex(r["bufsz"]),
                              **({"csum": f"0x{r['csum']:08x}"} if "csum" in r else {})) for r in rows],
            "sha256": None if out.result is None else out.result.table.sha256.hex(),
        })
        return
    t = Table(title=("segment plan (dry run)" if dry_run else f"loaded into {out.target}"))
    for col in ("#", "what", "address", "size", "from file", "CKSM"):
        t.add_column(col)
    for r in rows:
        csum = r.get("csum")
        if csum is None and out.result is not None:
            recorded = out.result.table.segments
            csum = recorded[r["index"]].csum if r["index"] < len(recorded) else \
                segment_checksums(plan.segments[r["index"]])      # the purgatory page holding the table
        t.add_row(str(r["index"]), r["what"], f"0x{r['mem']:x}", human(r["memsz"]), human(r["bufsz"]),
                  "" if csum is None else f"0x{csum:08x}")
    stdout.print(t)
    stdout.print(f"entry 0x{plan.entry:x}, flags 0x{plan.flags:x}"
                 + (f", kernel {out.image.version}" if out.image.version else ""))
    if isinstance(out.result, ops.RealLoadResult):
        stdout.print(f"purgatory: segment table at 0x{out.result.table_addr:x}, sha256 "
                     f"{out.result.table.sha256.hex()}; kexec_load(2) entry 0x{plan.entry:x}"
                     + (" (replaced the previous kdump)" if out.result.replaced else ""))
    elif out.result is not None:
        stdout.print(f"meminfo: segment table at 0x{out.result.table_addr:x}, sha256 "
                     f"{out.result.table.sha256.hex()}" + (" (replaced the previous kdump)" if out.result.replaced else ""))


def _debug(out: ops.LoadOutcome, rows: list[dict]) -> None:
    """kexec-tools' -d output: the kernel, the segments, the entry."""
    err = typer.echo
    err(f"kernel: {out.image.path} kernel_size: 0x{out.image.size:x}", err=True)
    err(f"nr_segments = {len(rows)}", err=True)
    for r in rows:
        i = r["index"]
        err(f"segment[{i}].buf   = {r['source']}", err=True)
        err(f"segment[{i}].bufsz = 0x{r['bufsz']:x}", err=True)
        err(f"segment[{i}].mem   = 0x{r['mem']:x}", err=True)
        err(f"segment[{i}].memsz = 0x{r['memsz']:x}", err=True)
    err(f"kexec_load: entry = 0x{out.plan.entry:x} flags = 0x{out.plan.flags:x}", err=True)


# A typer command's shape (machine, --no-wait, --json; one ops call; JSON or a line), as
# s390-machine recover's: alike on purpose, each CLI parses and prints for its own library.
@app.command()
def unload(
    kdump: bool = typer.Option(False, "-p", "--kdump", help="unload the kdump kernel"),
    machine: Optional[str] = typer.Option(None, "--machine", help="simulated machine directory "
                                          "(none: this s390x host, kexec_load(2))"),
    no_wait: bool = typer.Option(False, "--no-wait", help="fail (exit 5) instead of waiting while another command uses the machine"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Unload the kdump kernel: clear its meminfo entry and segment table (this host: kexec_load(2)
    with no segments)."""
    was = ops.unload(machine, wait=not no_wait, kdump=kdump or machine is not None)
    if as_json:
        emit_json({"unloaded": was})
    else:
        stdout.print("kdump unloaded" if was else "no kdump was loaded")


@app.command()
def status(
    machine: Optional[str] = typer.Option(None, "--machine", help="simulated machine directory (none: this "
                                          "s390x host: /sys/kernel/kexec_crash_loaded, kexec_crash_size, /proc/iomem)"),
    no_wait: bool = typer.Option(False, "--no-wait", help="fail (exit 5) instead of waiting while another command uses the machine"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Is kdump loaded and is every checksum valid? (read only)"""
    if machine is None:
        _real_status(as_json)
        return
    rep, interrupted = ops.status(machine, wait=not no_wait)
    if interrupted:
        typer.echo(f"warning: {machine}: {interrupted}", err=True)
    data = rep.to_json()
    data["interrupted"] = interrupted
    data["loaded"] = rep.table is not None
    data["segments"] = [] if rep.table is None else [
        {"mem": hex(s.mem), "memsz": hex(s.memsz), "bufsz": hex(s.bufsz), "csum": f"0x{s.csum:08x}",
         "kind": s.kind_name} for s in rep.table.segments]
    if as_json:
        emit_json(data)
    else:
        verdict = "[green]kdump loaded, every checksum valid[/]" if rep.kdump_intact else f"[red]{rep.reason}[/]"
        stdout.print(verdict)
        t = Table(title="checks")
        for col in ("check", "result", "detail", "wait code"):
            t.add_column(col)
        for c in rep.checks:
            t.add_row(c.name, "[green]ok[/]" if c.ok else "[red]FAILED[/]", c.detail,
                      "" if c.wait_code is None else f"0x{c.wait_code:04x}")
        stdout.print(t)
    if not rep.kdump_intact:
        raise typer.Exit(1)


def _real_status(as_json: bool) -> None:
    from kexec_s390.syscall import host_supports_kexec
    why = host_supports_kexec()
    if why:
        from dumpkit.errors import UnsupportedError
        raise UnsupportedError(f"no --machine given and {why}")
    data = ops.real_status()
    if as_json:
        emit_json(data)
    else:
        stdout.print("[green]kdump loaded[/] (the kernel checks the segments' CKSMs at the crash)"
                     if data["kdump_intact"] else f"[red]{data['reason']}[/]")
        t = Table(title="this host")
        for col in ("check", "result", "detail"):
            t.add_column(col)
        for c in data["checks"]:
            t.add_row(c["name"], "[green]ok[/]" if c["ok"] else "[red]FAILED[/]", c["detail"])
        stdout.print(t)
    if not data["kdump_intact"]:
        raise typer.Exit(1)


main = main_for(app, "kexec-s390")

if __name__ == "__main__":
    main()
