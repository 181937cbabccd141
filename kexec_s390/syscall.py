"""The real kexec_load(2) on an s390x Linux host, through ctypes.

struct kexec_segment { const void *buf; size_t bufsz; const void *mem; size_t memsz; }
(4 x 8 bytes on 64-bit); flags KEXEC_ON_CRASH | KEXEC_ARCH_S390; syscall 277 on s390x.
Anywhere else `load` without --machine refuses: there is no s390 storage to load into.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import re
from dataclasses import dataclass

from dumpkit.errors import BadInputError, DumpIOError, UnsupportedError
from meminfo_abi.kexec import KEXEC_ARCH_S390, KEXEC_ON_CRASH, KEXEC_SEGMENT_MAX, LoadSegment, kexec_segment  # noqa: F401

SYS_KEXEC_LOAD = {"s390x": 277}
SYS_KEXEC_FILE_LOAD = {"s390x": 381}


def marshal_segments(segments: list[LoadSegment]) -> tuple[ctypes.Array, list]:
    """The `struct kexec_segment` array the syscall takes (built from the one declaration), plus
    the buffers that must stay alive."""
    if len(segments) > KEXEC_SEGMENT_MAX:
        raise BadInputError(f"{len(segments)} segments, kexec_load takes at most {KEXEC_SEGMENT_MAX}")
    keep: list = []
    raw = bytearray()
    for s in segments:
        if s.data is not None:
            buf = ctypes.create_string_buffer(bytes(s.data[: s.bufsz]), s.bufsz)
            keep.append(buf)
            addr = ctypes.addressof(buf)
        elif s.bufsz:
            with open(s.path, "rb") as fh:
                m = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
            keep.append(m)
            cbuf = (ctypes.c_char * len(m)).from_buffer(m)
            keep.append(cbuf)
            addr = ctypes.addressof(cbuf) + s.offset
        else:
            addr = 0
        raw += kexec_segment.build(dict(buf=addr, bufsz=s.bufsz, mem=s.mem, memsz=s.memsz))
    arr = ctypes.create_string_buffer(bytes(raw), len(raw))
    return arr, keep


def parse_iomem_crashkernel(text: str) -> tuple[int, int] | None:
    """(start, size) of the 'Crash kernel' line of /proc/iomem, None if absent or empty."""
    for line in text.splitlines():
        m = re.match(r"^\s*([0-9a-fA-F]+)-([0-9a-fA-F]+)\s*:\s*Crash kernel\s*$", line)
        if m:
            start, end = int(m.group(1), 16), int(m.group(2), 16)
            if end > start:
                return start, end - start + 1
    return None


def host_supports_kexec() -> str | None:
    """None when this host can take a real s390 kexec_load, else why not."""
    if platform.system() != "Linux":
        return f"this is {platform.system()}, not Linux"
    machine = platform.machine()
    if machine not in SYS_KEXEC_LOAD:
        return f"this host is {machine}, not s390x: there is no s390 storage to load into (use --machine DIR)"
    return None


def real_crashkernel(iomem: str = "/proc/iomem") -> tuple[int, int]:
    try:
        with open(iomem) as fh:
            found = parse_iomem_crashkernel(fh.read())
    except OSError as exc:
        raise DumpIOError(f"cannot read {iomem}: {exc.strerror}") from None
    if not found:
        raise BadInputError("memory for crashkernel is not reserved (no 'Crash kernel' in /proc/iomem); "
                            "boot with crashkernel=SIZE")
    return found


def kexec_load(entry: int, segments: list[LoadSegment], flags: int) -> None:
    """kexec_load(2); no segments (and entry 0) unloads what `flags` names."""
    why = host_supports_kexec()
    if why:
        raise UnsupportedError(f"cannot call kexec_load: {why}")
    arr, keep = marshal_segments(segments)
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.syscall(ctypes.c_long(SYS_KEXEC_LOAD[platform.machine()]), ctypes.c_ulong(entry),
                      ctypes.c_ulong(len(segments)), arr if segments else None, ctypes.c_ulong(flags))
    del keep
    if rc != 0:
        err = ctypes.get_errno()
        what = "kexec_load" if segments else "kexec_load (unload)"
        hint = {errno.EPERM: " (needs root: CAP_SYS_BOOT)",
                errno.EBUSY: " (another kexec load is in progress)",
                errno.EADDRNOTAVAIL: " (a segment or the entry is outside the crashkernel memory)",
                errno.ENOSYS: " (this kernel has no CONFIG_KEXEC)"}.get(err, "")
        raise DumpIOError(f"{what} failed: {os.strerror(err)}{hint}")


def kexec_unload(kdump: bool) -> None:
    kexec_load(0, [], (KEXEC_ON_CRASH if kdump else 0) | KEXEC_ARCH_S390)


SYS_KERNEL = "/sys/kernel"
PROC_IOMEM = "/proc/iomem"


@dataclass
class CrashState:
    """What the running kernel says about kdump (sysfs and /proc/iomem)."""
    loaded: bool                       # /sys/kernel/kexec_crash_loaded
    crash_size: int | None             # /sys/kernel/kexec_crash_size (None: not there)
    crash_range: tuple[int, int] | None    # (start, size) of 'Crash kernel' in /proc/iomem


def _read_sys(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DumpIOError(f"cannot read {path}: {exc.strerror}") from None


def kexec_loaded(sys_kernel: str = SYS_KERNEL) -> bool:
    """/sys/kernel/kexec_loaded: a kernel is loaded for kexec -e."""
    text = _read_sys(os.path.join(sys_kernel, "kexec_loaded"))
    return bool(text) and text != "0"


def crash_state(sys_kernel: str = SYS_KERNEL, iomem: str = PROC_IOMEM) -> CrashState:
    loaded_text = _read_sys(os.path.join(sys_kernel, "kexec_crash_loaded"))
    if loaded_text is None:
        raise UnsupportedError(f"{sys_kernel}/kexec_crash_loaded does not exist: this kernel has no kexec "
                               f"(CONFIG_KEXEC) or sysfs is not mounted")
    size_text = _read_sys(os.path.join(sys_kernel, "kexec_crash_size"))
    try:
        loaded = int(loaded_text) != 0
        size = int(size_text) if size_text is not None else None
    except ValueError:
        raise BadInputError(f"{sys_kernel}: kexec_crash_loaded {loaded_text!r} / kexec_crash_size "
                            f"{size_text!r} are not numbers") from None
    text = _read_sys(iomem)
    return CrashState(loaded, size, parse_iomem_crashkernel(text) if text else None)
