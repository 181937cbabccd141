"""What the inspection commands compute, on the dump model whatever the format (drgn style:
memory below, meaning above).  The CLI only prints these results."""

from __future__ import annotations

from meminfo_abi.cpu import CpuRegs
from dumpkit.errors import BadInputError, DumpToolError
from meminfo_abi.meminfo import check_meminfo
from vmcore.dmesg import LogRecord, read_dmesg
from vmcore.model import KIND_ABSENT, Dump


def virt_to_phys_for(dump: Dump):
    """Kernel virtual -> physical for the symbols VMCOREINFO names.

    Before 6.10 the s390 kernel runs identity mapped (virtual == physical, KERNELOFFSET a
    physical KASLR offset).  From 6.10 on, IDENTITYBASE is where the identity map starts and
    the kernel image is mapped at KERNELOFFSET + (phys - KERNELOFFPHYS)."""
    vi = dump.attrs.vmcoreinfo
    if vi is None or vi.get("IDENTITYBASE") is None:
        return lambda v: v
    def hexval(key: str) -> int:
        text = vi.get(key) or "0"
        try:
            return int(text, 16)
        except ValueError:
            raise BadInputError(f"VMCOREINFO {key}={text!r} is not a hex number") from None
    idb, koff, kphys = hexval("IDENTITYBASE"), hexval("KERNELOFFSET"), hexval("KERNELOFFPHYS")
    size = dump.size

    def v2p(v: int) -> int:
        if idb <= v < idb + size:
            return v - idb
        return v - koff + kphys
    return v2p


def dump_info(dump: Dump) -> dict:
    a = dump.attrs
    vi = a.vmcoreinfo
    summary = None
    if vi is not None:
        summary = {"osrelease": vi.osrelease, "page_size": vi.get("PAGESIZE"),
                   "kerneloffset": vi.get("KERNELOFFSET"), "crashtime": vi.get("CRASHTIME"),
                   "build_id": vi.get("BUILD-ID"), "keys": len(vi.entries)}
    try:
        report = check_meminfo(dump).to_json()
    except DumpToolError as exc:
        report = {"header_valid": False, "reason": str(exc), "checks": []}
    chunks = [{"start": c.start, "end": c.end, "size": c.size, "kind": c.kind} for c in dump.chunks]
    return {
        "format": a.format, "format_version": a.format_version, "origin": a.origin,
        "arch": a.arch, "page_size": a.page_size,
        "time": a.timestamp.isoformat() if a.timestamp else None,
        "memory_size": dump.size,
        "memory_present": sum(c.size for c in dump.chunks if c.kind != KIND_ABSENT),
        "chunks": chunks,
        "cpus": len(dump.cpus),
        "complete": a.complete, "incomplete_reason": a.incomplete_reason,
        "dump_level": a.dump_level, "excluded_pages": a.excluded_pages,
        "filtered": a.filtered_text(),
        "notes_error": a.extra.get("notes_error"),
        "vmcoreinfo_source": a.vmcoreinfo_source, "vmcoreinfo": summary,
        "meminfo": report,
        "crashed_in": crashed_in(dump),
        "extra": a.extra,
    }


def cpu_registers(dump: Dump, cpu: int | None = None) -> list[tuple[int, CpuRegs]]:
    if not dump.cpus:
        raise BadInputError("the dump holds no CPU registers")
    items = list(enumerate(dump.cpus))
    if cpu is None:
        return items
    if not 0 <= cpu < len(items):
        raise BadInputError(f"the dump has CPUs 0..{len(items) - 1}, not {cpu}")
    return [items[cpu]]


def kernel_log(dump: Dump, partial: bool = False) -> list[LogRecord]:
    vi = dump.attrs.vmcoreinfo
    if vi is None:
        raise BadInputError("the dump has no VMCOREINFO (not in a note, not through lowcore 0xE18/0xE0C): "
                            "the kernel log cannot be found without it")
    return read_dmesg(dump.read, vi, virt_to_phys_for(dump), partial=partial)


def hexdump(data: bytes, addr: int) -> str:
    lines = []
    for off in range(0, len(data), 16):
        row = data[off:off + 16]
        hexpart = " ".join(row[i:i + 4].hex() for i in range(0, len(row), 4))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{addr + off:016x}  {hexpart:<35}  {text}")
    return "\n".join(lines)


# -- kernel virtual addresses, symbols and backtraces (issue 19) ---------------------------------
def kernel_space(dump: Dump):
    from vmcore.kvaddr import KernelSpace
    return KernelSpace(dump)


def kernel_symbols(space, required: bool = True):
    """kallsyms from the dump; without it (kernels before 6.0) an error, or an empty table
    when not required (then backtraces show bare addresses)."""
    from vmcore.kallsyms import SymbolTable, load_kallsyms
    try:
        return load_kallsyms(space.read, space.symbol, space.symbols())
    except DumpToolError as exc:
        if required:
            raise
        return SymbolTable([], f"none: {exc}")


def symbol_address(space, syms, name: str) -> int | None:
    """A name from kallsyms, else from VMCOREINFO's SYMBOL() (data symbols such as init_uts_ns
    are in kallsyms only with CONFIG_KALLSYMS_ALL)."""
    s = syms.by_name(name) if syms is not None else None
    return s.address if s is not None else space.symbol(name)


def parse_location(space, text: str) -> tuple[int, bool]:
    """ADDRESS or SYMBOL[+OFF] -> (address, is_symbol)."""
    from dumpkit.units import parse_size
    from dumpkit.errors import UsageError
    name, plus, off = text.partition("+")
    if name[:1].isdigit():
        return parse_size(text, "address"), False
    syms = kernel_symbols(space, required=False)
    base = symbol_address(space, syms, name)
    if base is None:
        raise BadInputError(f"no symbol {name!r} in the dump's kallsyms ({syms.source}) or VMCOREINFO")
    try:
        return base + (int(off, 0) if plus else 0), True
    except ValueError:
        raise UsageError(f"{text!r}: the offset after + is not a number") from None


def kernel_backtraces(dump: Dump, cpu: int | None = None):
    from vmcore.backtrace import backtraces
    space = kernel_space(dump)
    syms = kernel_symbols(space, required=False)
    return backtraces(space, syms, cpu_registers(dump, cpu)), syms


def crashed_in(dump: Dump) -> dict | None:
    """{"cpu", "where"} for the CPU whose stack runs through panic, or None (no kallsyms, no
    such stack); never fails: info must show what it can."""
    from vmcore.backtrace import crash_site
    vi = dump.attrs.vmcoreinfo
    if vi is None or vi.get("SYMBOL(kallsyms_names)") is None or not dump.cpus:
        return None
    try:
        bts, syms = kernel_backtraces(dump)
        hit = crash_site(bts, syms)
    except DumpToolError:
        return None
    return None if hit is None else {"cpu": hit[0].cpu, "where": hit[1]}
