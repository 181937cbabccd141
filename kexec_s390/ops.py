"""Library functions behind `kexec-s390`: load, unload, status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dumpkit.errors import BadInputError, UsageError
from meminfo_abi.meminfo import KexecSegmentTable, MeminfoReport
from kexec_s390 import syscall
from meminfo_abi.kernel_image import KernelImage, read_kernel_image
from kexec_s390.plan import LoadPlan, build_command_line, plan_load
from meminfo_abi.parmarea import read_command_line
from dumpkit.units import human, parse_size
from kexec_s390.purgatory import add_purgatory

if TYPE_CHECKING:
    from s390_machine.kexec import LoadResult

# The simulated machine is imported where a command acts on one (--machine); the real
# kexec_load(2) path and --dry-run need none of it.


@dataclass
class RealLoadResult:
    """What a real kdump load secured: the segment table in the purgatory page (the simulator's
    LoadResult, as far as a real host can say)."""
    table: KexecSegmentTable
    table_addr: int
    replaced: bool
    copied: int


@dataclass
class LoadOutcome:
    image: KernelImage
    plan: LoadPlan
    result: "LoadResult | RealLoadResult | None"    # None for --dry-run and a real non-kdump load
    target: str                    # machine dir, "dry run", or "kexec_load(2)"


def parse_crash_range(text: str) -> tuple[int, int]:
    """BASE:SIZE (the --dry-run form) or SIZE@BASE (the kernel's)."""
    if ":" in text:
        base, size = text.split(":", 1)
    elif "@" in text:
        size, base = text.split("@", 1)
    else:
        raise UsageError(f"crashkernel {text!r} must be BASE:SIZE or SIZE@BASE")
    return parse_size(base, "crashkernel base"), parse_size(size, "crashkernel size")


def load(kernel: str, *, initrd: str | None, command_line: list[str], append: list[str],
         reuse_cmdline: bool, kdump: bool, machine: str | None, dry_run: bool,
         crashkernel: str | None, progress=None, wait: bool = True) -> LoadOutcome:
    image = read_kernel_image(kernel)
    if machine is not None:
        from s390_machine.kexec import kexec_load
        from s390_machine.machine import Machine
        with Machine.open(machine, "read" if dry_run else "write", wait=wait) as m:
            reuse = None
            if reuse_cmdline:
                reuse = m.state.kernel.get("command_line") or read_command_line(m.memory) or ""
            line = build_command_line(image, command_line, append, reuse, kdump)
            ck = m.state.crashkernel
            if kdump and ck is None:
                raise BadInputError("no crashkernel memory is reserved on this machine "
                                    "(boot it with crashkernel=SIZE[@BASE])")
            base, size = (ck.base, ck.size) if ck else (0, 0)
            plan = plan_load(image, initrd, line, kdump=kdump, crash_base=base, crash_size=size)
            if dry_run:
                return LoadOutcome(image, plan, None, "dry run")
            result = kexec_load(m, plan.entry, plan.segments, plan.flags, progress=progress)
            return LoadOutcome(image, plan, result, machine)
    if dry_run:
        if kdump and crashkernel is None:
            raise BadInputError("--dry-run -p without --machine needs --crashkernel BASE:SIZE")
        base, size = parse_crash_range(crashkernel) if crashkernel else (0, 0)
        reuse = _proc_cmdline() if reuse_cmdline else None
        line = build_command_line(image, command_line, append, reuse, kdump)
        return LoadOutcome(image, plan_load(image, initrd, line, kdump=kdump, crash_base=base, crash_size=size),
                           None, "dry run")
    why = syscall.host_supports_kexec()
    if why:
        from dumpkit.errors import UnsupportedError
        raise UnsupportedError(f"no --machine given and {why}")
    base, size = syscall.real_crashkernel() if kdump else (0, 0)
    reuse = _proc_cmdline() if reuse_cmdline else None
    line = build_command_line(image, command_line, append, reuse, kdump)
    plan = plan_load(image, initrd, line, kdump=kdump, crash_base=base, crash_size=size)
    if not kdump:
        syscall.kexec_load(plan.entry, plan.segments, plan.flags)
        return LoadOutcome(image, plan, None, "kexec_load(2)")
    was = syscall.crash_state().loaded
    # the kernel wants the entry inside the crashkernel memory and asks it "intact?" at the crash:
    # the purgatory page (kexec_s390/purgatory.py) answers from the simulator's segment table
    entry, segments, table = add_purgatory(base, plan.entry, plan.segments)
    plan.entry, plan.segments = entry, segments
    syscall.kexec_load(plan.entry, plan.segments, plan.flags)
    copied = sum(s.bufsz for s in segments)
    if progress:
        progress(copied)
    return LoadOutcome(image, plan, RealLoadResult(table, segments[-1].mem, was, copied), "kexec_load(2)")


def _proc_cmdline() -> str:
    try:
        with open("/proc/cmdline") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def unload(machine: str | None, wait: bool = True, kdump: bool = True) -> bool:
    """Whether a kernel was loaded; this host (no machine): the kdump kernel with `kdump`, else the
    kernel loaded for kexec -e."""
    if machine is None:
        why = syscall.host_supports_kexec()
        if why:
            from dumpkit.errors import UnsupportedError
            raise UnsupportedError(f"no --machine given and {why}")
        was = syscall.crash_state().loaded if kdump else syscall.kexec_loaded()
        syscall.kexec_unload(kdump=kdump)
        return was
    from s390_machine.kexec import kexec_unload
    from s390_machine.machine import Machine
    with Machine.open(machine, "write", wait=wait) as m:
        return kexec_unload(m)


def real_status(sys_kernel: str = syscall.SYS_KERNEL, iomem: str = syscall.PROC_IOMEM) -> dict:
    """kdump on this (real) host: loaded or not, the crashkernel memory (the kernel checks the
    segments' CKSMs at the crash, through the purgatory, not before)."""
    st = syscall.crash_state(sys_kernel, iomem)
    checks = [
        {"name": "kexec_crash_loaded", "ok": st.loaded,
         "detail": f"{sys_kernel}/kexec_crash_loaded = {int(st.loaded)}"},
        {"name": "crashkernel memory", "ok": bool(st.crash_size),
         "detail": (f"{sys_kernel}/kexec_crash_size = {st.crash_size} ({human(st.crash_size)})"
                    if st.crash_size else "none reserved (boot with crashkernel=SIZE)")},
    ]
    if st.crash_range:
        start, size = st.crash_range
        checks.append({"name": "crashkernel range", "ok": True,
                       "detail": f"0x{start:x}-0x{start + size - 1:x} ({human(size)}) in {iomem}"})
    else:
        checks.append({"name": "crashkernel range", "ok": not st.crash_size,
                       "detail": f"no 'Crash kernel' line in {iomem}" + (
                           " (addresses hidden: not root?)" if st.crash_size else "")})
    intact = all(c["ok"] for c in checks)
    reason = None if intact else next(c["detail"] for c in checks if not c["ok"])
    return {"target": "this host", "loaded": st.loaded, "kdump_intact": intact, "reason": reason,
            "crashkernel": None if not st.crash_range else
            {"base": hex(st.crash_range[0]), "size": hex(st.crash_range[1])},
            "crash_size": st.crash_size, "checks": checks}


def status(machine: str, wait: bool = True) -> tuple[MeminfoReport, str | None]:
    """The meminfo report and what interrupted change the machine holds (read only)."""
    from s390_machine.machine import Machine
    with Machine.open(machine, "read", wait=wait) as m:
        return m.meminfo_report(), m.interrupted
