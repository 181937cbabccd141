"""What the inspection commands compute, on the dump model whatever the format (drgn style:
memory below, meaning above).  The CLI only prints these results."""

from __future__ import annotations

from meminfo_abi.cpu import CpuRegs
from meminfo_abi.errors import BadInputError, DumpToolError
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
