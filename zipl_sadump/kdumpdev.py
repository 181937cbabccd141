"""A kdump kernel on the dump device, and kdump started from it (zipl's DASD stand-alone kdump
path, s390-tools' zipl stand-alone kdump (zipl/boot/kdump*.c)): copy [0, crashkernel size) to the crashkernel base, load the kernel and
initrd to their normal low addresses, OLDMEM base/size into the parameter area, start 0x10010."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from meminfo_abi.checksum import csum_partial
from dumpkit.errors import BadInputError, DumpToolError
from meminfo_abi.kdumpdev import (
    KDUMP_DEV_CMDLINE_MAX, KDUMP_DEV_MAGIC, KDUMP_DEV_TABLE_SIZE, KDUMP_DEV_VERSION, KdumpDeviceTable,
)
from meminfo_abi.lowcore import LC_OS_INFO
from meminfo_abi.meminfo import MemInfo
from meminfo_abi.parmarea import (
    COMMAND_LINE_OFFS, IMAGE_ENTRY, IMAGE_ENTRY_KDUMP, IMAGE_READ_OFFSET, INITRD_START_OFFS, OLDMEM_SIZE_OFFS,
    PARMAREA, PARMAREA_FIXED_SIZE, ParmArea,
)
from meminfo_abi.kernel_image import parse_kernel_image, read_kernel_image
from dumpkit.fileio import atomic_file, sparse_copy, os_open_input
from s390_machine.machine import Machine
from s390_machine.state import STATUS_KDUMP
from zipl_sadump.device import read_device

PAGE = 4096
MIB = 1 << 20
COPY_CHUNK = 4 << 20


def _align(v: int, a: int = PAGE) -> int:
    return (v + a - 1) // a * a


@dataclass
class DeviceKdump:
    path: str
    kernel_offset: int
    kernel_size: int
    initrd_offset: int
    initrd_size: int
    kernel_sha256: bytes
    initrd_sha256: bytes
    cmdline: str

    def to_json(self) -> dict:
        return {"kernel_size": self.kernel_size, "initrd_size": self.initrd_size, "cmdline": self.cmdline,
                "kernel_sha256": self.kernel_sha256.hex(), "initrd_sha256": self.initrd_sha256.hex()}


def add_kdump_kernel(device: str, kernel: str, initrd: str | None = None, append: str = "") -> DeviceKdump:
    """Store a kdump kernel (+ initrd, command line) on an ECKD dump device image, atomically."""
    info = read_device(device)
    if info.type != "eckd" or info.multi_volume:
        raise BadInputError("a kdump kernel can be stored on a single-volume ECKD dump device only "
                            f"({device} is {'multi-volume ' if info.multi_volume else ''}{info.type})")
    image = read_kernel_image(kernel)                 # the same checks kexec-s390 makes
    if initrd is not None and (not os.path.isfile(initrd)):
        raise BadInputError(f"initrd {initrd} does not exist or is not a file")
    cmd = append.encode()
    if len(cmd) >= min(KDUMP_DEV_CMDLINE_MAX, image.command_line_limit):
        raise BadInputError(f"kdump command line of {len(cmd)} bytes is too long")
    part_end = (info.blk_end + 1) * info.block_size    # behind the dump partition (inclusive blk_end)
    kernel_off = _align(part_end)
    with os.fdopen(os_open_input(kernel, noun="kernel image"), "rb") as fh:
        kbytes = fh.read()
    initrd_off = _align(kernel_off + len(kbytes))
    isize = os.path.getsize(initrd) if initrd else 0
    table_off = _align(initrd_off + isize)
    ih = hashlib.sha256()
    with atomic_file(device, "wb") as fh:
        sparse_copy(device, fh)
        fh.truncate(part_end)                          # drop an older kdump section
        fh.seek(kernel_off)
        fh.write(kbytes)
        if initrd:
            fh.seek(initrd_off)
            with os.fdopen(os_open_input(initrd, noun="initrd"), "rb") as src:
                for chunk in iter(lambda: src.read(COPY_CHUNK), b""):
                    ih.update(chunk)
                    fh.write(chunk)
        fields = dict(
            version=KDUMP_DEV_VERSION, flags=0, kernel_offset=kernel_off, kernel_size=len(kbytes),
            initrd_offset=initrd_off if initrd else 0, initrd_size=isize,
            kernel_sha256=hashlib.sha256(kbytes).digest(), initrd_sha256=ih.digest() if initrd else bytes(32),
            cmdline_len=len(cmd), reserved=0, cmdline=cmd.ljust(KDUMP_DEV_CMDLINE_MAX, b"\0"), table_csum=0)
        unsummed = KdumpDeviceTable.build(fields)
        table = KdumpDeviceTable.build(dict(fields, table_csum=csum_partial(unsummed[:KDUMP_DEV_TABLE_SIZE - 4])))
        fh.seek(table_off)
        fh.write(table)
    found = read_device_kdump(device)
    if found is None:
        raise BadInputError(f"{device}: the kdump component table did not read back")
    return found


def read_device_kdump(device: str) -> DeviceKdump | None:
    """The kdump components on a device image, or None; a damaged table raises BadInputError."""
    try:
        size = os.path.getsize(device)
    except OSError as exc:
        raise BadInputError(f"cannot read {device}: {exc.strerror}") from None
    if size < KDUMP_DEV_TABLE_SIZE:
        return None
    with os.fdopen(os_open_input(device, noun="device image"), "rb") as fh:
        fh.seek(size - KDUMP_DEV_TABLE_SIZE)
        raw = fh.read(KDUMP_DEV_TABLE_SIZE)
    if raw[:8] != KDUMP_DEV_MAGIC:
        return None
    t = KdumpDeviceTable.parse(raw)
    if csum_partial(raw[:-4]) != t.table_csum:
        raise BadInputError(f"{device}: the kdump component table's checksum does not match")
    if t.version != KDUMP_DEV_VERSION:
        raise BadInputError(f"{device}: kdump component table version {t.version} is not supported")
    for what, off, n in (("kernel", t.kernel_offset, t.kernel_size), ("initrd", t.initrd_offset, t.initrd_size)):
        if n and (off % PAGE or off + n > size - KDUMP_DEV_TABLE_SIZE):
            raise BadInputError(f"{device}: the kdump {what} at 0x{off:x}+0x{n:x} lies outside the image")
    if t.cmdline_len > KDUMP_DEV_CMDLINE_MAX:
        raise BadInputError(f"{device}: kdump command line length {t.cmdline_len} is impossible")
    return DeviceKdump(device, t.kernel_offset, t.kernel_size, t.initrd_offset, t.initrd_size,
                       bytes(t.kernel_sha256), bytes(t.initrd_sha256),
                       bytes(t.cmdline[:t.cmdline_len]).decode("ascii", "replace"))


def _read(path: str, off: int, n: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(off)
        data = fh.read(n)
    if len(data) != n:
        raise BadInputError(f"{path}: {n} bytes at 0x{off:x} are not there")
    return data


def kdump_from_device(machine: Machine, mi: MemInfo, comps: DeviceKdump) -> str:
    """Start the device's kdump kernel on `machine` (the crashed system in storage).
    Checks everything before the first write; raises BadInputError to fall back to a full dump."""
    base, size = mi.crashkernel_addr, mi.crashkernel_size
    mem = machine.memory
    kbytes = _read(comps.path, comps.kernel_offset, comps.kernel_size)
    if hashlib.sha256(kbytes).digest() != comps.kernel_sha256:
        raise BadInputError("the kdump kernel on the device does not match its SHA-256")
    if comps.initrd_size:
        h = hashlib.sha256()
        with open(comps.path, "rb") as fh:
            fh.seek(comps.initrd_offset)
            left = comps.initrd_size
            while left:
                chunk = fh.read(min(COPY_CHUNK, left))
                if not chunk:
                    raise BadInputError("the kdump initrd on the device is truncated")
                h.update(chunk)
                left -= len(chunk)
        if h.digest() != comps.initrd_sha256:
            raise BadInputError("the kdump initrd on the device does not match its SHA-256")
    image = parse_kernel_image(kbytes, f"{comps.path} kdump kernel")
    origin = _align(max(0x800000, image.size), MIB)
    end = origin + _align(comps.initrd_size) if comps.initrd_size else IMAGE_ENTRY + _align(len(image.data))
    if end > size:
        raise BadInputError(f"the device's kdump kernel and initrd need 0x{end:x} bytes of low memory, the "
                            f"crashkernel holds only 0x{size:x}")
    if base < size or base + size > mem.size:
        raise BadInputError(f"crashkernel 0x{base:x}+0x{size:x} cannot take a copy of [0, 0x{size:x})")
    # 1. copy (not swap) [0, size) to the crashkernel memory
    for off in range(0, size, COPY_CHUNK):
        n = min(COPY_CHUNK, size - off)
        if any(True for _ in mem.data_ranges(off, off + n)) or any(True for _ in mem.data_ranges(base + off, base + off + n)):
            mem.write(base + off, mem.read(off, n))
    # 2. meminfo about to be overwritten by the kernel load: point 0xE18 into the copy
    ptr = mem.read_u64(LC_OS_INFO)
    if ptr and ptr < size:
        mem.write_u64(LC_OS_INFO, ptr + base)
    # 3. the kernel at 0x10000 (file offset 0x10000 on), the initrd at its origin, parameter area
    buf = bytearray(image.data)
    parm = PARMAREA - IMAGE_ENTRY                   # struct parmarea in the image (file offset 0x400)
    area = ParmArea.parse(bytes(buf[parm:parm + PARMAREA_FIXED_SIZE]))
    built = ParmArea.build(dict(area, initrd_start=origin if comps.initrd_size else 0,
                                initrd_size=comps.initrd_size, oldmem_base=base, oldmem_size=size))
    lo, hi = INITRD_START_OFFS, OLDMEM_SIZE_OFFS + 8   # only these four fields change
    buf[lo:hi] = built[lo - parm:hi - parm]
    if comps.cmdline:
        limit = image.command_line_limit
        buf[COMMAND_LINE_OFFS:COMMAND_LINE_OFFS + limit] = bytes(limit)
        cmd = comps.cmdline.encode()
        buf[COMMAND_LINE_OFFS:COMMAND_LINE_OFFS + len(cmd)] = cmd
    mem.fill(IMAGE_READ_OFFSET, end - IMAGE_READ_OFFSET, 0)
    mem.write(IMAGE_READ_OFFSET, bytes(buf))
    if comps.initrd_size:
        fd = os.open(comps.path, os.O_RDONLY)
        try:
            mem.copy_from_file(fd, comps.initrd_offset, origin, comps.initrd_size)
        except (EOFError, DumpToolError) as exc:
            raise BadInputError(f"cannot load the kdump initrd: {exc}") from None
        finally:
            os.close(fd)
    machine.state.status = STATUS_KDUMP
    machine.state.psw_on_stop = {"mask": "0x0000000180000000", "addr": f"0x{IMAGE_ENTRY_KDUMP:x}",
                                 "what": "kdump kernel from the dump device started"}
    return (f"copied [0, 0x{size:x}) to 0x{base:x}, loaded the device's kernel"
            + (f" and initrd (at 0x{origin:x})" if comps.initrd_size else "") + ", OLDMEM set, started 0x10010")
