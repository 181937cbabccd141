"""`sadump ipl`: the stand-alone dumper IPLed against a machine, and its two-stage decision.

  1. store status: the IPL CPU's registers into absolute 0x1200 (the IPL with store status)
     and its prefix page, every other CPU's into its own prefix page (SIGP stop and store
     status), vector registers into the save areas the lowcores name;
  2. stage 1: meminfo through lowcore 0xE18 - pointer, alignment, magic, checksum, version,
     crashkernel - then the kexec segment table, every segment's CKSM and the SHA-256;
  3. intact -> swap [0, crashkernel size) with the crashkernel as purgatory does, OLDMEM into
     the parameter area, start the kdump kernel at 0x10010 (the machine is left for vmcore);
     otherwise -> the full dump to the device in the s390 dump format, then the re-IPL
     decision the real dumpers make (lowcore 0xE00/0xE08, meminfo FLAGS REIPL_CLEAR).
The dumper never imports vmcore: it hands over a machine, not objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from meminfo_abi.checksum import csum_partial
from dumpkit.errors import BadInputError, DumpToolError
from meminfo_abi.locate import read_meminfo
from meminfo_abi.lowcore import LC_IPIB, LC_IPIB_CHECKSUM
from meminfo_abi.meminfo import OS_INFO_FLAG_REIPL_CLEAR, OS_INFO_FLAGS_ENTRY, MeminfoReport, check_meminfo
from meminfo_abi.reipl import (
    DIAG308_LOAD_CLEAR, DIAG308_LOAD_NORMAL, DIAG308_LOAD_NORMAL_DUMP, DIAG308_NAMES, IPL_PB_HDR_SIZE,
    IPL_PBT_CCW, PBT_NAMES, IplPb0Common, IplPbHdr,
)
from meminfo_abi.tod import tod_now
from s390_machine.crash import start_kdump, store_status_all
from s390_machine.machine import Machine
from s390_machine.txn import lock_file
from s390_machine.state import STATUS_DISABLED_WAIT, STATUS_DUMPED, STATUS_RUNNING
from zipl_sadump.device import read_device
from zipl_sadump.fulldump import FullDumpResult, write_full_dump
from zipl_sadump.kdumpdev import kdump_from_device, read_device_kdump

CPU_ID = 0xFF00000390600000         # STIDP of the dumping CPU (version FF: a virtual machine)
MAX_IPIB = 8192


@dataclass
class Reipl:
    action: str                        # "re-IPL" or "disabled wait"
    detail: str
    diag308: int | None = None
    wait_code: int | None = None

    def to_json(self) -> dict:
        return {"action": self.action, "detail": self.detail,
                "diag308": None if self.diag308 is None else DIAG308_NAMES.get(self.diag308, self.diag308),
                "wait_code": None if self.wait_code is None else f"0x{self.wait_code:04x}"}


@dataclass
class IplResult:
    decision: str                      # "kdump" | "kdump from device" | "full dump"
    reason: str
    checks: MeminfoReport
    stored: list[str]
    dump: FullDumpResult | None = None
    reipl: Reipl | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"decision": self.decision, "reason": self.reason, "stored": self.stored,
                "checks": [c.to_json() for c in self.checks.checks],
                "dump": None if self.dump is None else self.dump.to_json(),
                "reipl": None if self.reipl is None else self.reipl.to_json(), "notes": self.notes}


def reipl_decision(machine: Machine, dump_rc: int) -> Reipl:
    """What the stand-alone dumper does once the dump is written (stage2dump dump_exit)."""
    mem = machine.memory
    ipib = mem.read_u64(LC_IPIB)
    stored = mem.read_u32(LC_IPIB_CHECKSUM)
    if ipib == 0:
        return Reipl("disabled wait", "no re-IPL block at lowcore 0xE00", wait_code=dump_rc)
    if ipib + IPL_PB_HDR_SIZE > mem.size:
        return Reipl("disabled wait", f"re-IPL block 0x{ipib:x} is outside memory", wait_code=dump_rc)
    hdr = IplPbHdr.parse(mem.read(ipib, IPL_PB_HDR_SIZE))
    if not IPL_PB_HDR_SIZE <= hdr.len <= MAX_IPIB or ipib + hdr.len > mem.size:
        return Reipl("disabled wait", f"re-IPL block length {hdr.len} is not plausible", wait_code=dump_rc)
    got = csum_partial(mem.read(ipib, hdr.len))
    if got != stored:
        return Reipl("disabled wait", f"re-IPL block checksum: lowcore 0xE08 holds 0x{stored:08x}, the block "
                     f"sums to 0x{got:08x}", wait_code=dump_rc)
    pbt = IplPb0Common.parse(mem.read(ipib + IPL_PB_HDR_SIZE, 8)).pbt if hdr.len >= IPL_PB_HDR_SIZE + 8 else None
    kind = PBT_NAMES.get(pbt, f"type {pbt}")
    clear = False
    mi = read_meminfo(mem)
    if mi is not None:
        e = mi.entries[OS_INFO_FLAGS_ENTRY]
        if e.addr and e.size >= 8 and e.addr + e.size <= mem.size and csum_partial(mem.read(e.addr, e.size)) == e.csum:
            clear = bool(int.from_bytes(mem.read(e.addr, 8), "big") & OS_INFO_FLAG_REIPL_CLEAR)
    if clear:
        sub, why = DIAG308_LOAD_CLEAR, "meminfo FLAGS has REIPL_CLEAR"
    elif pbt == IPL_PBT_CCW:
        sub, why = DIAG308_LOAD_NORMAL_DUMP, "CCW re-IPL device"
    else:
        sub, why = DIAG308_LOAD_NORMAL, f"{kind} re-IPL device"
    return Reipl("re-IPL", f"diag 308 SET with the {kind} block at 0x{ipib:x}, then {DIAG308_NAMES[sub]} ({why})",
                 diag308=sub)


def ipl(devices: list[str], machine_dir: str, *, kdump: str = "auto", compress: bool = True,
        progress=None, ipl_cpu: int | None = None, wait: bool = True) -> IplResult:
    """The whole IPL is one transaction on the machine (store status, the swap or the device's
    kdump, the state with the re-IPL record), with the dump devices locked for the run."""
    if kdump not in ("auto", "off"):
        raise BadInputError(f"--kdump {kdump!r}: use auto or off")
    locks = []
    try:
        for d in devices:
            fd = lock_file(d, exclusive=True, wait=wait)
            if fd is not None:
                locks.append(fd)
        infos = [read_device(d) for d in devices]       # a device that is not a dump device: refused here
        with Machine.open(machine_dir, "write", wait=wait) as m:
            st = m.state
            if st.status not in (STATUS_RUNNING, "panicked", STATUS_DISABLED_WAIT):
                raise BadInputError(f"the machine is {st.status}: IPL the dumper on a running or stopped system")
            with m.transaction("sadump-ipl"):
                return _ipl(m, devices, infos, kdump, compress, progress, ipl_cpu)
    finally:
        for fd in locks:
            os.close(fd)


def _ipl(m: Machine, devices, infos, kdump, compress, progress, ipl_cpu) -> IplResult:
    st = m.state
    if ipl_cpu is not None:
        st.cpu(ipl_cpu)
        st.ipl_cpu = ipl_cpu
    start_tod = tod_now()
    stored = store_status_all(m, ipl_cpu=st.ipl_cpu, ipl_at_absolute=True)
    report = check_meminfo(m.memory)
    st.record("sadump ipl", f"dump device {', '.join(devices)}; " + "; ".join(stored))
    if kdump == "auto" and report.kdump_intact:
        reason = "meminfo and every kexec segment checksum intact"
        start_kdump(m, report, ("sadump", f"kdump intact: swapped and started kdump at 0x{report.table.entry:x}"))
        return IplResult("kdump", reason, report, stored)
    if kdump == "off":
        reason = "--kdump off"
    else:
        f = report.first_failure
        reason = report.reason if f is None else \
            f"{f.name}: {f.detail}" + (f" (wait code 0x{f.wait_code:04x})" if f.wait_code else "")
        # stage 2: the in-memory kdump is damaged or absent; a kdump kernel on the device?
        notes = [f"kdump in memory: {reason}"]
        comps = None
        if len(devices) == 1:
            try:
                comps = read_device_kdump(devices[0])
            except BadInputError as exc:
                notes.append(f"kdump on the device: {exc}")
        if comps is None and len(notes) == 1:
            notes.append("kdump on the device: none stored")
        elif comps is not None and not report.header_valid:
            notes.append("kdump on the device: not usable, meminfo gives no crashkernel "
                         f"({reason})")
        elif comps is not None:
            try:
                what = kdump_from_device(m, report.meminfo, comps)
            except BadInputError as exc:
                notes.append(f"kdump on the device: {exc}")
            else:
                notes.append(f"kdump on the device: {what}")
                st.record("sadump", f"kdump from the dump device: {what}")
                m.save_state()
                return IplResult("kdump from device", reason, report, stored, notes=notes)
    lc_vec = [c.prefix for c in st.cpus if c.prefix >= 0x10000 and c.prefix % 0x2000 == 0]
    try:
        result = write_full_dump(infos, m.memory, lc_vec, real_cpu_cnt=len(st.cpus), tod=start_tod,
                                 cpu_id=CPU_ID, compress=compress, progress=progress)
    except DumpToolError:
        st.status = STATUS_DISABLED_WAIT
        st.record("sadump", "full dump failed")
        m.save_state()
        raise
    rc = 0 if result.complete else (result.wait_code or 0x4600)
    reipl = reipl_decision(m, rc)
    st.status = STATUS_DUMPED if result.complete else STATUS_DISABLED_WAIT
    st.psw_on_stop = ({"what": reipl.detail, "diag308": reipl.to_json()["diag308"]} if reipl.action == "re-IPL"
                      else {"mask": "0x0002000080000000", "addr": f"0x{reipl.wait_code or 0:x}",
                            "what": f"disabled wait: {reipl.detail}"})
    st.record("sadump", f"full dump ({reason}): {'complete' if result.complete else 'INCOMPLETE'}, "
                        f"{result.bytes_dumped} bytes of memory; {reipl.action}: {reipl.detail}")
    m.save_state()
    return IplResult("full dump", reason, report, stored, result, reipl,
                     notes=notes if kdump != "off" else [])
