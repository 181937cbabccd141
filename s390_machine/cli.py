"""`s390-machine`: create, import and show simulated s390x machines."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.table import Table

from s390_machine import ops
from dumpkit.clikit import emit_json, main_for, new_app, progress_bar, stdout
from s390_machine.mm import parse_populations
from s390_machine.synth import SynthOptions, data_mibs, validate
from dumpkit.units import human, parse_crashkernel, parse_memory_size

app = new_app(help="Simulated s390x machines: a raw memory image (QEMU pmemsave compatible) plus CPU state.")


@app.command()
def create(
    directory: str = typer.Argument(..., help="machine directory to create (must not exist)"),
    memory: str = typer.Option("1G", "--memory", "-m", help="memory size, multiple of 1 MiB"),
    cpus: int = typer.Option(2, "--cpus", help="number of CPUs"),
    crashkernel: Optional[str] = typer.Option(None, "--crashkernel", help="SIZE[@BASE], as on the kernel command line"),
    fill: float = typer.Option(1 / 32, "--fill", help="fraction of free memory holding recognisable data"),
    printk: str = typer.Option("ringbuffer", "--printk", help="ringbuffer (Linux 5.10+) or legacy (3.5-5.9)"),
    no_vector: bool = typer.Option(False, "--no-vector", help="CPUs without the vector facility"),
    release: str = typer.Option("6.1.0-s390dumptools", "--release", help="kernel release (OSRELEASE)"),
    reipl_clear: bool = typer.Option(False, "--reipl-clear", help="re-IPL configured with clear (meminfo FLAGS)"),
    no_reipl: bool = typer.Option(False, "--no-reipl", help="no re-IPL block at lowcore 0xE00"),
    pages: str = typer.Option("", "--pages", help="page classes of the data, in percent: free=20,cache=20,"
                              "private=5,anon=20,slab=10,offline=1 (of the data pages, the rest kernel data), "
                              "hugetlb=3 (of the data MiBs), zero=6 (in-use zero MiBs per 100 data MiBs)"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="progress bar (default: when stderr is a terminal)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Synthesize a booted production system (lowcores, VMCOREINFO, printk log, meminfo, kernel page tables, struct pages, data)."""
    ck_size, ck_base = parse_crashkernel(crashkernel) if crashkernel else (0, None)
    opts = SynthOptions(memory_size=parse_memory_size(memory, "memory size"), cpus=cpus, crashkernel_size=ck_size,
                        crashkernel_base=ck_base, fill=fill, printk=printk, vector=not no_vector,
                        release=release, reipl_clear=reipl_clear, reipl_devno=None if no_reipl else 0,
                        pages=parse_populations(pages))
    total = len(data_mibs(opts, validate(opts))) << 20      # gigabytes on a big machine: show them
    with progress_bar(total, "creating", progress) as advance:
        ops.create_machine(directory, opts, progress=advance)
    _show(directory, as_json)


@app.command("import")
def import_(
    directory: str = typer.Argument(..., help="machine directory to create"),
    memory: str = typer.Option(..., "--memory", help="raw memory image (QEMU pmemsave 0 SIZE)"),
    cpus_from: Optional[str] = typer.Option(None, "--cpus-from", help="QEMU dump-guest-memory ELF to take CPU registers from"),
    cpus: int = typer.Option(1, "--cpus", help="CPU count when no --cpus-from is given (registers zero)"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="progress bar (default: when stderr is a terminal)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Wrap an existing raw memory image (and CPU state from a QEMU ELF dump) as a machine."""
    import os
    total = os.path.getsize(memory) if os.path.isfile(memory) else 0
    with progress_bar(total, "importing", progress) as advance:
        ops.import_machine(directory, memory, cpus_from=cpus_from, cpus=cpus, progress=advance)
    _show(directory, as_json)


@app.command()
def show(
    directory: str = typer.Argument(..., help="machine directory"),
    no_wait: bool = typer.Option(False, "--no-wait", help="fail (exit 5) instead of waiting while another command uses the machine"),
    as_json: bool = typer.Option(False, "--json", help="print as JSON"),
) -> None:
    """Machine, CPUs and the meminfo validation (read only)."""
    _show(directory, as_json, wait=not no_wait)


@app.command()
def recover(
    directory: str = typer.Argument(..., help="machine directory"),
    no_wait: bool = typer.Option(False, "--no-wait", help="fail (exit 5) instead of waiting while another command uses the machine"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Roll back or complete a change that was interrupted (what any writing command does first)."""
    done = ops.recover(directory, wait=not no_wait)
    if as_json:
        emit_json({"recovered": done})
    else:
        stdout.print(done)


@app.command()
def panic(
    directory: str = typer.Argument(..., help="machine directory"),
    cpu: int = typer.Option(0, "--cpu", help="the CPU that panics"),
    message: str = typer.Option("sysrq triggered crash", "--message", help="the panic message"),
    no_wait: bool = typer.Option(False, "--no-wait", help="fail (exit 5) instead of waiting while another command uses the machine"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Panic the production kernel: with an intact kdump, store status, swap and start kdump."""
    from s390_machine.crash import panic as do_panic
    from s390_machine.machine import Machine
    with Machine.open(directory, "write", wait=not no_wait) as m:
        res = do_panic(m, cpu=cpu, message=message)
    if as_json:
        emit_json({"kdump_started": res.kdump_started, "reason": res.reason, "stored": res.stored,
                   "checks": [c.to_json() for c in res.checks.checks]})
        return
    for line in res.stored:
        stdout.print(f"store status: {line}")
    if res.kdump_started:
        stdout.print("[green]kdump started[/] at 0x10010 (meminfo and every checksum intact)")
    else:
        stdout.print(f"[red]kdump not started[/]: {res.reason}")


@app.command()
def hotplug(
    directory: str = typer.Argument(..., help="machine directory"),
    add_cpu: bool = typer.Option(False, "--add-cpu", help="configure one more CPU"),
    remove_cpu: Optional[int] = typer.Option(None, "--remove-cpu", help="deconfigure this CPU"),
    add_memory: Optional[str] = typer.Option(None, "--add-memory", help="add this much memory at the top"),
    no_wait: bool = typer.Option(False, "--no-wait", help="fail (exit 5) instead of waiting while another command uses the machine"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """CPU and memory hotplug on the running production system."""
    from s390_machine import hotplug as hp
    from s390_machine.machine import Machine
    done = {}
    if not (add_cpu or remove_cpu is not None or add_memory is not None):
        from dumpkit.errors import UsageError
        raise UsageError("say what to plug: --add-cpu, --remove-cpu N or --add-memory SIZE")
    increment = parse_memory_size(add_memory, "memory increment") if add_memory is not None else None
    with Machine.open(directory, "write", wait=not no_wait) as m:      # each change its own transaction
        if increment is not None:
            done["memory_size"] = hp.add_memory(m, increment)
        if add_cpu:
            done["added_cpu"] = hp.add_cpu(m)
        if remove_cpu is not None:
            hp.remove_cpu(m, remove_cpu)
            done["removed_cpu"] = remove_cpu
    if as_json:
        emit_json(done)
    else:
        stdout.print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in done.items()))


def _show(directory: str, as_json: bool, wait: bool = True) -> None:
    d = ops.describe(directory, wait=wait)
    if d["interrupted"]:
        print(f"warning: {directory}: {d['interrupted']}", file=sys.stderr)
    if as_json:
        emit_json(d)
        return
    t = Table(title=f"machine {d['machine']}", show_header=False)
    t.add_row("memory", f"{human(d['memory_size'])} ({human(d['memory_allocated'])} allocated on disk)")
    t.add_row("status", d["status"] + (f" ({d['interrupted']})" if d["interrupted"] else ""))
    k = d["kernel"]
    t.add_row("kernel", f"{k.get('release') or 'unknown'} ({k.get('origin', '?')})")
    if k.get("command_line") is not None:
        t.add_row("command line", k["command_line"])
    ck = d["crashkernel"]
    t.add_row("crashkernel", "none" if ck is None else
              f"0x{ck['base']:x}-0x{ck['base'] + ck['size'] - 1:x} ({human(ck['size'])})")
    vi = d["vmcoreinfo"]
    t.add_row("vmcoreinfo", "not found" if vi is None else
              f"{vi['osrelease']} via {vi['source']} at 0x{vi['address']:x} ({vi['keys']} keys)")
    mm = k.get("memory_model")
    if isinstance(mm, dict):
        t.add_row("memory model", f"vmemmap {mm['vmemmap']}, mem_section {mm['mem_section']}, "
                  f"{mm['page_table_levels']}-level page tables (ASCE {mm['asce']})")
        t.add_row("pages", ", ".join(f"{n} {v}" for n, v in mm["pages"].items() if n != "data_mibs"))
    mi = d["meminfo"]
    t.add_row("os_info block", f"{mi['block']} (0xE18 -> {mi['pointer']})")
    t.add_row("kdump", mi["kdump"])
    stdout.print(t)

    c = Table(title=f"{len(d['cpus'])} CPUs")
    for col in ("cpu", "prefix", "PSW", "state", "vector"):
        c.add_column(col)
    for cpu in d["cpus"]:
        c.add_row(str(cpu["address"]), f"0x{cpu['prefix']:08x}",
                  f"{cpu['psw_mask']:016x} {cpu['psw_addr']:016x}", cpu["state"], "yes" if cpu["vector"] else "no")
    stdout.print(c)

    m = Table(title="meminfo checks")
    for col in ("check", "result", "detail", "wait code"):
        m.add_column(col)
    for chk in mi["checks"]:
        m.add_row(chk["check"], "[green]ok[/]" if chk["ok"] else "[red]FAILED[/]", chk["detail"],
                  chk["wait_code"] or "")
    stdout.print(m)


main = main_for(app, "s390-machine")

if __name__ == "__main__":
    main()
