"""One s390x CPU's architected register state, shared by the machine, the dumper and the dump model.

Conversions: to/from the 512-byte store-status save area (lowcore 0x1200), to/from
the 512-byte vector save area, and to/from the machine state file's JSON form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from dumpkit.errors import BadInputError, DumpToolError
from meminfo_abi.lowcore import (
    LC_EXT_CPU_ADDR, LC_MCESAD, LC_SAVE_AREA, LOWCORE_SIZE, MCESA_ORIGIN_MASK, SAVE_AREA_SIZE, VX_SAVE_AREA_SIZE, SaveArea,
)

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1


def _zeros(n: int) -> list[int]:
    return [0] * n


@dataclass
class CpuRegs:
    address: int = 0                    # CPU address (SIGP address)
    prefix: int = 0                     # prefix register
    psw_mask: int = 0
    psw_addr: int = 0
    gprs: list[int] = field(default_factory=lambda: _zeros(16))
    acrs: list[int] = field(default_factory=lambda: _zeros(16))
    crs: list[int] = field(default_factory=lambda: _zeros(16))
    fprs: list[int] = field(default_factory=lambda: _zeros(16))
    fpc: int = 0
    cpu_timer: int = 0
    clock_comparator: int = 0
    todpreg: int = 0
    last_break: int = 0
    vxrs: bytes | None = None           # 32 x 16 bytes, or None without the vector facility

    # -- store status -----------------------------------------------------------
    def to_save_area(self) -> bytes:
        return SaveArea.build(
            dict(
                floating_pt_save_area=self.fprs,
                gpregs_save_area=self.gprs,
                psw_save_area=dict(mask=self.psw_mask, addr=self.psw_addr),
                prefixreg_save_area=self.prefix,
                fpt_creg_save_area=self.fpc,
                tod_progreg_save_area=self.todpreg,
                cpu_timer_save_area=self.cpu_timer,
                clock_comp_save_area=self.clock_comparator,
                last_break_save_area=self.last_break,
                access_regs_save_area=self.acrs,
                cregs_save_area=self.crs,
            )
        )

    @classmethod
    def from_save_area(cls, data: bytes, address: int = 0, vxrs: bytes | None = None) -> "CpuRegs":
        if len(data) < SaveArea.sizeof():
            raise BadInputError(f"store-status save area has {len(data)} bytes, needs {SaveArea.sizeof()}")
        sa = SaveArea.parse(data)
        return cls(
            address=address,
            prefix=sa.prefixreg_save_area,
            psw_mask=sa.psw_save_area.mask,
            psw_addr=sa.psw_save_area.addr,
            gprs=list(sa.gpregs_save_area),
            acrs=list(sa.access_regs_save_area),
            crs=list(sa.cregs_save_area),
            fprs=list(sa.floating_pt_save_area),
            fpc=sa.fpt_creg_save_area,
            cpu_timer=sa.cpu_timer_save_area,
            clock_comparator=sa.clock_comp_save_area,
            todpreg=sa.tod_progreg_save_area,
            last_break=sa.last_break_save_area,
            vxrs=vxrs,
        )

    # -- vector registers ----------------------------------------------------------
    def vxrs_low(self) -> bytes:
        """Rightmost 8 bytes of V0-V15 (NT_S390_VXRS_LOW); the leftmost halves are the FPRs."""
        assert self.vxrs is not None
        return b"".join(self.vxrs[i * 16 + 8 : i * 16 + 16] for i in range(16))

    def vxrs_high(self) -> bytes:
        """V16-V31 whole (NT_S390_VXRS_HIGH)."""
        assert self.vxrs is not None
        return bytes(self.vxrs[256:512])

    @staticmethod
    def vxrs_from_parts(fprs: list[int], low: bytes, high: bytes) -> bytes:
        out = bytearray()
        for i in range(16):
            out += fprs[i].to_bytes(8, "big") + low[i * 8 : i * 8 + 8]
        return bytes(out + high)

    # -- state file form ----------------------------------------------------------
    def to_json(self) -> dict:
        h64 = lambda v: f"0x{v:016x}"  # noqa: E731
        h32 = lambda v: f"0x{v:08x}"  # noqa: E731
        return {
            "address": self.address,
            "prefix": h32(self.prefix),
            "psw": {"mask": h64(self.psw_mask), "addr": h64(self.psw_addr)},
            "gprs": [h64(v) for v in self.gprs],
            "acrs": [h32(v) for v in self.acrs],
            "crs": [h64(v) for v in self.crs],
            "fprs": [h64(v) for v in self.fprs],
            "fpc": h32(self.fpc),
            "cpu_timer": h64(self.cpu_timer),
            "clock_comparator": h64(self.clock_comparator),
            "todpreg": h32(self.todpreg),
            "last_break": h64(self.last_break),
            "vxrs": None if self.vxrs is None else [self.vxrs[i : i + 16].hex() for i in range(0, 512, 16)],
        }

    @classmethod
    def from_json(cls, d: dict) -> "CpuRegs":
        try:
            def num(v, bits):
                n = int(v, 0) if isinstance(v, str) else int(v)
                if not 0 <= n < (1 << bits):
                    raise ValueError(f"{v!r} does not fit {bits} bits")
                return n

            def arr(key, bits):
                vals = [num(v, bits) for v in d[key]]
                if len(vals) != 16:
                    raise ValueError(f"{key} needs 16 values, has {len(vals)}")
                return vals

            vx = d.get("vxrs")
            vxrs = None
            if vx is not None:
                vxrs = b"".join(bytes.fromhex(v) for v in vx)
                if len(vxrs) != VX_SAVE_AREA_SIZE:
                    raise ValueError("vxrs needs 32 registers of 16 bytes")
            return cls(
                address=num(d["address"], 16),
                prefix=num(d["prefix"], 32),
                psw_mask=num(d["psw"]["mask"], 64),
                psw_addr=num(d["psw"]["addr"], 64),
                gprs=arr("gprs", 64),
                acrs=arr("acrs", 32),
                crs=arr("crs", 64),
                fprs=arr("fprs", 64),
                fpc=num(d["fpc"], 32),
                cpu_timer=num(d["cpu_timer"], 64),
                clock_comparator=num(d["clock_comparator"], 64),
                todpreg=num(d["todpreg"], 32),
                last_break=num(d.get("last_break", 0), 64),
                vxrs=vxrs,
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise BadInputError(f"bad CPU register state in machine state file: {exc}") from None


def cpu_from_lowcore(mem, lowcore: int, *, address: int | None = None, vector: bool = True) -> CpuRegs:
    """The registers store status put into the save area (0x1200) of the lowcore at absolute
    `lowcore` of `mem` (anything with size and read(addr, n)): a CPU's prefix page, or 0 for
    the absolute lowcore, where the IPL CPU's status is stored.  The CPU address is lowcore
    0x84 unless `address` is given.  With `vector`, the vector registers come from the area
    that 0x11B0 (MCESAD) of the CPU's own prefix page names, when it lies inside `mem`."""
    if lowcore < 0 or lowcore + LOWCORE_SIZE > mem.size:
        raise BadInputError(f"prefix page 0x{lowcore:x} is outside the dumped memory (0x{mem.size:x} bytes)")
    lc = mem.read(lowcore, LC_SAVE_AREA + SAVE_AREA_SIZE)
    if address is None:
        address = int.from_bytes(lc[LC_EXT_CPU_ADDR:LC_EXT_CPU_ADDR + 2], "big")
    regs = CpuRegs.from_save_area(lc[LC_SAVE_AREA:LC_SAVE_AREA + SAVE_AREA_SIZE], address=address)
    if not vector:
        return regs
    home = regs.prefix if lowcore == 0 else lowcore      # the absolute lowcore holds no CPU's MCESAD
    if not home:
        return regs
    if home == lowcore:
        mcesad = int.from_bytes(lc[LC_MCESAD:LC_MCESAD + 8], "big")
    elif home and home + LOWCORE_SIZE <= mem.size:
        mcesad = int.from_bytes(mem.read(home + LC_MCESAD, 8), "big")
    else:
        return regs
    origin = mcesad & MCESA_ORIGIN_MASK
    if origin and origin + VX_SAVE_AREA_SIZE <= mem.size:
        try:
            regs.vxrs = mem.read(origin, VX_SAVE_AREA_SIZE)
        except DumpToolError:
            regs.vxrs = None
    return regs


def cpus_from_prefixes(mem, prefixes: Sequence[int], notes: list[str]) -> list[CpuRegs]:
    """Every CPU whose lowcore is listed (a dump header's lc_vec, or the prefixes a kdump kernel
    caught by a stand-alone dump left): what cannot be read is named in `notes`."""
    cpus = []
    for i, p in enumerate(prefixes):
        try:
            regs = cpu_from_lowcore(mem, p)
        except DumpToolError as exc:
            notes.append(f"CPU {i} (prefix 0x{p:x}): no registers: {exc}")
            continue
        if regs.prefix != p:
            notes.append(f"CPU {i}: save area says prefix 0x{regs.prefix:x}, lc_vec says 0x{p:x}")
        cpus.append(regs)
    return cpus
