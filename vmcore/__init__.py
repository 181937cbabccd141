"""vmcore: read, inspect and convert s390x dumps from Python (docs/API.md).

    import vmcore
    with vmcore.open("dump.elf") as dump:       # any format the `vmcore` command reads
        for cpu in dump.cpus:
            print(hex(cpu.psw_mask), hex(cpu.psw_addr))
        data = dump.read(0x10000, 4096)         # physical memory
        dump.write("dump.kdump", "kdump")       # any writer

`open` returns a `vmcore.model.Dump`: `chunks`, `cpus` (`meminfo_abi.cpu.CpuRegs`), `attrs`,
`vmcoreinfo`, `read(addr, size)`, `iter_pages()`, `absent_ranges()`, `write(path, fmt)`.
`drgn_program(dump)` gives a drgn Program whose memory comes from this reader, so drgn's
helpers run on formats drgn cannot open itself (s390 dumps, devices, volume sets).
"""
from __future__ import annotations

import os as _os
from typing import Any as _Any

__all__ = ["open", "drgn_program", "formats"]


def open(path: str | _os.PathLike | list, select: str | None = None, fmt: str | None = None,
         **opts: _Any):
    """Open a dump: a file, a device image, a machine directory, FILE1,FILE2 or a list of the
    volumes of a multi-volume set.  `select` picks the system of a kdump kernel caught by a
    stand-alone dump: "prod" (the production system, swap undone), "kdump" or "all";
    `fmt` forces the input format (e.g. "raw"); a raw image takes `cpus_from=`.
    The Dump is a context manager; close it when done."""
    from vmcore.formats import open_dump
    from vmcore.select import SELECTS, select_system
    from dumpkit.errors import UsageError
    if select is not None and select not in SELECTS:
        raise UsageError(f"-s {select}: choose one of {', '.join(SELECTS)}")
    dump = open_dump(path, fmt=fmt, **opts)
    if select is None:
        return dump
    try:
        return select_system(dump, select)
    except BaseException:
        dump.close()
        raise


def drgn_program(dump):
    """A drgn.Program over this dump's physical memory and VMCOREINFO (drgn >= 0.3, with
    set_linux_kernel_custom).  Load the kernel's debug info into it as usual."""
    import drgn
    if dump.attrs.vmcoreinfo_raw is None and not dump.fill_vmcoreinfo_from_memory():
        from dumpkit.errors import BadInputError
        raise BadInputError("the dump has no VMCOREINFO: drgn needs it to know the kernel")
    prog = drgn.Program(drgn.Platform(drgn.Architecture.S390X, drgn.PlatformFlags.IS_64_BIT))

    def read(address: int, count: int, offset: int, physical: bool) -> bytes:
        return dump.read(address, count)

    for chunk in dump.chunks:
        if chunk.kind != "absent":
            prog.add_memory_segment(chunk.start, chunk.size, read, physical=True)
    prog.set_linux_kernel_custom(dump.attrs.vmcoreinfo_raw, False)
    return prog


def __getattr__(name: str):
    if name == "formats":
        import vmcore.formats as formats
        return formats
    raise AttributeError(f"module 'vmcore' has no attribute {name!r}")
