"""CPU and memory hotplug on a running production system (the seed's argument for building
the ELF header in the kdump kernel: nothing prepared at kexec load time needs to change).

add-cpu:    a new CPU with its own lowcore in the kernel's lowcore area and lowcore_ptr[] slot
remove-cpu: the CPU is deconfigured (its lowcore_ptr[] slot cleared)
add-memory: storage grows by a multiple of 1 MiB at the top (the memory image grows, sparse)
"""

from __future__ import annotations

import os

from dumpkit.errors import BadInputError, DumpIOError
from meminfo_abi.lowcore import LC_EXT_CPU_ADDR, LC_MCESAD, LOWCORE_SIZE
from s390_machine.machine import Machine
from s390_machine.state import MEMORY_FILE, STATUS_RUNNING
from s390_machine.synth import LOWCORE_PTR, MCESA_AREAS, MCESA_STRIDE, NR_CPUS, cpu_registers

MIB = 1 << 20
MAX_MEMORY = 1 << 60                  # 1 EiB: every address of the image fits a file offset


def _running_synthetic(machine: Machine) -> None:
    if machine.state.status != STATUS_RUNNING:
        raise BadInputError(f"the machine is {machine.state.status}: hotplug needs a running system")
    if machine.state.kernel.get("origin") != "synthetic":
        raise BadInputError("hotplug is simulated for synthetic machines only (an imported kernel's "
                            "lowcore allocation is not ours to extend)")


def add_cpu(machine: Machine) -> int:
    _running_synthetic(machine)
    used = {c.address for c in machine.cpus}
    free = next((a for a in range(NR_CPUS) if a not in used), None)
    if free is None:
        raise BadInputError(f"all {NR_CPUS} CPUs are configured")
    with machine.transaction("hotplug"):
        return _add_cpu(machine, free)


def _add_cpu(machine: Machine, free: int) -> int:
    vector = any(c.vxrs is not None for c in machine.cpus)
    regs = cpu_registers(free, vector)
    mem = machine.memory
    lc = regs.prefix
    mem.fill(lc, LOWCORE_SIZE, 0)
    mem.write_u16(lc + LC_EXT_CPU_ADDR, regs.address)
    if vector:
        mem.write_u64(lc + LC_MCESAD, MCESA_AREAS + free * MCESA_STRIDE)
    mem.write_u64(LOWCORE_PTR + 8 * free, lc)
    machine.state.cpus.append(regs)
    machine.state.cpus.sort(key=lambda c: c.address)
    machine.state.cpu_states[free] = "operating"
    machine.state.record("hotplug", f"cpu {free} added (prefix 0x{lc:x})")
    machine.save_state()
    return free


def remove_cpu(machine: Machine, address: int) -> None:
    _running_synthetic(machine)
    cpu = machine.state.cpu(address)
    if len(machine.cpus) == 1:
        raise BadInputError("cannot remove the last CPU")
    if address == machine.state.ipl_cpu:
        raise BadInputError(f"cpu {address} is the IPL CPU and cannot be removed")
    with machine.transaction("hotplug"):
        machine.memory.write_u64(LOWCORE_PTR + 8 * address, 0)
        machine.state.cpus.remove(cpu)
        machine.state.cpu_states.pop(address, None)
        machine.state.record("hotplug", f"cpu {address} removed")
        machine.save_state()


def add_memory(machine: Machine, size: int) -> int:
    """Grow storage by `size` bytes; returns the new memory size.  The image is extended
    (sparse) and fsynced after the journal names its old size, then the state is committed;
    any failure truncates it back."""
    if size <= 0 or size % MIB:
        raise BadInputError(f"memory increment 0x{size:x} is not a positive multiple of 1 MiB")
    _running_synthetic(machine)
    old = machine.state.memory_size
    new = old + size
    if new > MAX_MEMORY:
        raise BadInputError(f"memory of 0x{new:x} bytes is more than the 0x{MAX_MEMORY:x} a machine can have")
    with machine.transaction("hotplug") as txn:
        txn.grow(old, new)
        fd = machine.memory.fileno()
        try:
            os.ftruncate(fd, new)
            os.fsync(fd)
        except OSError as exc:
            raise DumpIOError(f"extending {os.path.join(machine.path, MEMORY_FILE)} to {new} bytes: "
                              f"{exc.strerror}") from None
        machine.state.memory_size = new
        machine.state.record("hotplug", f"memory 0x{old:x}-0x{new - 1:x} added ({size >> 20} MiB)")
        machine.save_state()
    machine.remap()
    return new
