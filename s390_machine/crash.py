"""What happens to a machine at a crash: store status, the purgatory check and swap, kdump start.

Shared by the production kernel's panic (`s390-machine panic`, the z/Architecture Principles of Operation (store status) and the July 2011 kdump-for-s390 series)
and by the stand-alone dumper (`sadump ipl`), which performs the same swap when it
finds kdump intact.  Nothing here knows about dump files: the kdump kernel (vmcore/)
takes the machine in the state this leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from meminfo_abi.cpu import CpuRegs
from dumpkit.errors import BadInputError
from meminfo_abi.locate import find_vmcoreinfo, read_meminfo
from meminfo_abi.lowcore import LC_MCESAD, LC_OS_INFO, LC_SAVE_AREA, LOWCORE_SIZE, MCESA_ORIGIN_MASK
from meminfo_abi.meminfo import (
    MEMINFO_KEXEC_SEGMENTS, OS_INFO_VMCOREINFO, SEGMENT_KIND_PURGATORY, MeminfoReport, check_meminfo,
)
from meminfo_abi.parmarea import IMAGE_ENTRY_KDUMP, PARM_OLDMEM_BASE, PARM_OLDMEM_SIZE
from meminfo_abi.vmcoreinfo import parse_vmcoreinfo
from s390_machine.machine import Machine
from s390_machine.state import STATUS_DISABLED_WAIT, STATUS_KDUMP, STATUS_PANICKED, STATUS_RUNNING

PURGATORY_WINDOW = (0x2000, 0x10000)      # crash base + this: purgatory's, never swapped
KDUMP_PSW_MASK = 0x0000000180000000       # EA + BA, 64-bit addressing
SWAP_CHUNK = 4 << 20
PAGE_SIZE = 4096


# -- store status -----------------------------------------------------------------------------

def store_status(machine: Machine, cpu: CpuRegs, address: int) -> None:
    """SIGP STORE STATUS AT ADDRESS: the 512-byte architected save area at `address`."""
    machine.memory.write(address, cpu.to_save_area())


def store_additional_status(machine: Machine, cpu: CpuRegs) -> bool:
    """SIGP STORE ADDITIONAL STATUS: vector registers into the CPU's machine-check extended
    save area, when its lowcore names one (0x11B0) and the CPU has the vector facility."""
    if cpu.vxrs is None or not cpu.prefix:
        return False
    mcesad = machine.memory.read_u64(cpu.prefix + LC_MCESAD)
    origin = mcesad & MCESA_ORIGIN_MASK
    if not origin or origin + 512 > machine.memory.size:
        return False
    machine.memory.write(origin, cpu.vxrs)
    return True


def store_status_all(machine: Machine, ipl_cpu: int, ipl_at_absolute: bool) -> list[str]:
    """Every CPU's status: the IPL/boot CPU's into absolute 0x1200 (when `ipl_at_absolute`, as an
    IPL with store status or __do_machine_kdump's copy does) and its own prefix area; every other
    CPU's into its prefix area; vector registers wherever a lowcore names a save area."""
    done = []
    for cpu in machine.cpus:
        if cpu.prefix:
            store_status(machine, cpu, cpu.prefix + LC_SAVE_AREA)
        vx = store_additional_status(machine, cpu)
        if cpu.address == ipl_cpu and ipl_at_absolute:
            store_status(machine, cpu, LC_SAVE_AREA)
        machine.state.cpu_states[cpu.address] = "stopped"
        done.append(f"cpu {cpu.address}: status at 0x{cpu.prefix + LC_SAVE_AREA:x}"
                    + (" and absolute 0x1200" if cpu.address == ipl_cpu and ipl_at_absolute else "")
                    + (", vector registers" if vx else ""))
    return done


# -- the swap ---------------------------------------------------------------------------------

def swap_plan(regions: list[tuple[int, int]], base: int, size: int) -> list[tuple[str, int, int, int]]:
    """Purgatory's swap (kexec-tools' purgatory/arch/s390) as a list of chunk operations ("copy"|"swap", low, high,
    length): the kdump segments trade places with old low memory, the rest of [0, size) is copied
    up into the crashkernel area, and the absolute lowcore [0, 0x2000) is copied to the crash
    base; [base+0x2000, base+0x10000) stays purgatory's.

    A copy reads low memory no swap changes, so copies can be redone; each swap chunk is
    journaled (its low half's old bytes) before it is made, so a swap cut short is completed
    exactly (finish_swap) and no chunk is ever swapped twice."""
    ops: list[tuple[str, int, int, int]] = []

    def add(kind: str, low: int, high: int, length: int) -> None:
        for off in range(0, max(length, 0), SWAP_CHUNK):
            ops.append((kind, low + off, high + off, min(SWAP_CHUNK, length - off)))

    last = base + PURGATORY_WINDOW[1]
    for start, length in sorted(regions):
        if length == 0:
            continue
        s = max(start, base + PURGATORY_WINDOW[1])
        n = length - (s - start)
        if n <= 0:
            continue
        add("copy", last - base, last, s - last)
        add("swap", s - base, s, n)
        last = s + n
    add("copy", last - base, last, base + size - last)
    add("copy", 0, base, LOWCORE_SIZE)
    return ops


def _run_swap(mem, ops, start: int, txn) -> None:
    for kind, low, high, n in ops[start:]:
        if kind == "copy":
            mem.write(high, mem.read(low, n))
            continue
        x = mem.read(low, n)
        if txn is not None:
            mem.flush()                 # what came before is durable before the next chunk's record
            txn.chunk(low, x)
        y = mem.read(high, n)
        mem.write(low, y)
        mem.write(high, x)


def swap_crashkernel(machine: Machine, regions: list[tuple[int, int]], base: int, size: int) -> None:
    """The swap of swap_plan, journaled chunk by chunk when the machine is in a transaction
    whose swap began (start_kdump)."""
    txn = machine.txn if machine.txn is not None and machine.txn.forward else None
    _run_swap(machine.memory, swap_plan(regions, base, size), 0, txn)


def finish_swap(machine: Machine, txn, info) -> None:
    """Complete a swap a killed writer left (its journal's SWAP and last CHNK record), then commit
    the state it recorded.  The chunk in flight is resolved page by page: a low page still equal
    to the journaled old bytes was not written yet (its partner still holds the new bytes)."""
    from s390_machine.state import MachineState
    from s390_machine.txn import last_chunk
    d = info.swap
    base, size = int(d["base"]), int(d["size"])
    regions = [(int(r[0]), int(r[1])) for r in d["regions"]]
    state = MachineState.from_json(d["state"])
    if state.memory_size != machine.state.memory_size or state.transaction != info.txn_id:
        raise BadInputError(f"{info.path}: the swap record's machine state does not belong to this machine")
    ops = swap_plan(regions, base, size)
    mem = machine.memory
    start = 0
    chunk = last_chunk(info, txn.fd)
    if chunk is not None:
        low, x = chunk
        idx = next((i for i, op in enumerate(ops) if op[0] == "swap" and op[1] == low and op[3] == len(x)), None)
        if idx is None:
            raise BadInputError(f"{info.path}: swap chunk 0x{low:x} is not part of the swap it records")
        high = ops[idx][2]
        cur_low, cur_high = mem.read(low, len(x)), mem.read(high, len(x))
        y = bytearray(cur_low)
        for p in range(0, len(x), PAGE_SIZE):
            if cur_low[p:p + PAGE_SIZE] == x[p:p + PAGE_SIZE]:
                y[p:p + PAGE_SIZE] = cur_high[p:p + PAGE_SIZE]
        mem.write(low, y)
        mem.write(high, x)
        start = idx + 1
    _run_swap(mem, ops, start, txn)
    ob, osz = (int(v) for v in d["oldmem"])
    mem.write_u64(PARM_OLDMEM_BASE, ob)
    mem.write_u64(PARM_OLDMEM_SIZE, osz)
    mem.flush()
    machine.state = state
    from dumpkit.fileio import atomic_write_text
    from s390_machine.state import STATE_FILE, dump_state
    import os
    atomic_write_text(os.path.join(machine.path, STATE_FILE), dump_state(state))
    txn.finish()


def start_kdump(machine: Machine, report: MeminfoReport, event: tuple[str, str] | None = None) -> None:
    """purgatory(1): swap, OLDMEM in the parameter area, jump to the kdump entry 0x10010.
    Inside a transaction, the state after the swap (with `event` recorded) is journaled
    first: from then on an interruption is completed, never rolled back, and the state
    is committed here."""
    mi, table = report.meminfo, report.table
    assert mi is not None and table is not None and report.kdump_intact
    base, size = mi.crashkernel_addr, mi.crashkernel_size
    regions = [(s.mem, s.memsz) for s in table.segments if s.kind != SEGMENT_KIND_PURGATORY]
    st = machine.state
    st.status = STATUS_KDUMP
    st.psw_on_stop = {"mask": f"0x{KDUMP_PSW_MASK:016x}", "addr": f"0x{table.entry or IMAGE_ENTRY_KDUMP:x}",
                      "what": "kdump kernel started"}
    if event is not None:
        st.record(*event)
    txn = machine.txn
    if txn is not None:
        txn.begin_swap({"base": base, "size": size, "regions": [list(r) for r in regions],
                        "oldmem": [base, size], "state": dict(st.to_json(), transaction=txn.id)})
    swap_crashkernel(machine, regions, base, size)
    # the kdump kernel now sits at 0x10000; its parameter area names the old crashkernel
    mem = machine.memory
    if mem.read_u64(PARM_OLDMEM_BASE) != base or mem.read_u64(PARM_OLDMEM_SIZE) != size:
        mem.write_u64(PARM_OLDMEM_BASE, base)
        mem.write_u64(PARM_OLDMEM_SIZE, size)
    if txn is not None:
        machine.save_state()


# -- the production kernel's panic --------------------------------------------------------------

@dataclass
class PanicResult:
    kdump_started: bool
    reason: str
    checks: MeminfoReport
    stored: list[str]


def crash_save_vmcoreinfo(machine: Machine, when: datetime) -> bool:
    """Append CRASHTIME to the VMCOREINFO note (as the kernel does at crash time) and keep the
    meminfo VMCOREINFO entry's checksum true.  Only where the note's buffer is ours to grow."""
    found = find_vmcoreinfo(machine.memory)
    if found is None or machine.state.kernel.get("origin") != "synthetic":
        return False
    info = parse_vmcoreinfo(found.raw)
    info.set("CRASHTIME", str(int(when.timestamp())))
    from s390_machine.synth import vmcoreinfo_entry, write_meminfo, write_vmcoreinfo
    text_addr, text_len = write_vmcoreinfo(machine.memory, info)
    mi = read_meminfo(machine.memory)
    if mi is not None and not mi.entries[OS_INFO_VMCOREINFO].empty:
        mi.set_data_entry(OS_INFO_VMCOREINFO, text_addr, vmcoreinfo_entry(machine.memory, text_addr, text_len))
        write_meminfo(machine.memory, mi, machine.memory.read_u64(LC_OS_INFO))
    return True


def log_panic(machine: Machine, cpu: int, message: str) -> bool:
    """printk the panic lines (synthetic kernels: their log buffer is rebuilt with them)."""
    k = machine.state.kernel
    log = k.get("printk_log")
    if k.get("origin") != "synthetic" or not isinstance(log, list):
        return False
    from s390_machine.synth import write_printk
    ts = (log[-1]["ts_nsec"] if log else 0) + 37_000_000_000
    kdump = "loaded" if check_meminfo(machine.memory, verify_segments=False).table else "not loaded"
    for i, (level, text) in enumerate([
            (0, "sysrq: Trigger a crash"),
            (0, f"Kernel panic - not syncing: {message}"),
            (4, f"CPU: {cpu} PID: 1 Comm: sh Not tainted {k.get('release', '')} #1"),
            (4, f"Hardware name: s390-dumptools simulated machine, Kdump: {kdump}")]):
        log.append(dict(ts_nsec=ts + i * 1000, level=level, facility=0, text=text,
                        caller_id=0x80000000 | cpu))
    write_printk(machine.memory, k.get("printk", "ringbuffer"), log)
    return True


def panic(machine: Machine, cpu: int = 0, message: str = "sysrq triggered crash") -> PanicResult:
    """The production kernel panics on `cpu` with kdump loaded (or not)."""
    st = machine.state
    if st.status != STATUS_RUNNING:
        raise BadInputError(f"the machine is {st.status}, not running: it cannot panic")
    panicking = st.cpu(cpu)
    with machine.transaction("panic"):
        return _panic(machine, panicking, cpu, message)


def _panic(machine: Machine, panicking: CpuRegs, cpu: int, message: str) -> PanicResult:
    st = machine.state
    now = datetime.now(timezone.utc)
    log_panic(machine, cpu, message)
    # the kernel appends CRASHTIME only on its way into a loaded kdump kernel (__crash_kexec)
    mi = read_meminfo(machine.memory)
    if mi is not None and not mi.entries[MEMINFO_KEXEC_SEGMENTS].empty:
        crash_save_vmcoreinfo(machine, now)
    # machine_kexec: purgatory(0) - the checksum test only
    report = check_meminfo(machine.memory)
    st.record("panic", f"Kernel panic - not syncing: {message} (cpu {cpu})")
    if not report.kdump_intact:
        stored = store_status_all(machine, ipl_cpu=cpu, ipl_at_absolute=False)
        st.status = STATUS_PANICKED
        st.psw_on_stop = {"mask": "0x0002000180000000", "addr": "0x0", "what": "disabled wait after panic"}
        st.record("kdump not started", report.reason)
        machine.save_state()
        return PanicResult(False, report.reason, report, stored)
    # __machine_kdump: others by SIGP store status into their lowcores, the panicking CPU stores
    # its own and, after the prefix reset, copies it to absolute 0x1200
    stored = store_status_all(machine, ipl_cpu=panicking.address, ipl_at_absolute=True)
    st.ipl_cpu = panicking.address
    report = check_meminfo(machine.memory)          # purgatory(1) verifies again
    if not report.kdump_intact:
        st.status = STATUS_DISABLED_WAIT
        st.record("purgatory", f"verification failed: {report.reason}")
        machine.save_state()
        return PanicResult(False, report.reason, report, stored)
    start_kdump(machine, report, ("kdump", f"swapped [0, 0x{report.meminfo.crashkernel_size:x}) with the "
                                           f"crashkernel at 0x{report.meminfo.crashkernel_addr:x}, started kdump "
                                           f"at 0x{report.table.entry:x}"))
    return PanicResult(True, "kdump intact", report, stored)
