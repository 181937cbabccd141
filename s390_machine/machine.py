"""The simulated s390x system: absolute storage (memory.img) + state (machine.json).

Every tool acts on a Machine the way firmware, a dumper or a kernel acts on a
real one: through absolute storage, per-CPU prefixed (real) storage, and the
CPUs' registers.  Changes to the state are written atomically; changes to
storage go straight into the image (callers validate before they write).
"""

from __future__ import annotations

import os

from meminfo_abi.cpu import CpuRegs
from meminfo_abi.errors import BadInputError
from meminfo_abi.lowcore import LC_OS_INFO, LC_VMCORE_INFO, LOWCORE_SIZE
from meminfo_abi.meminfo import MeminfoReport, check_meminfo
from s390_machine.fileio import atomic_write_text
from s390_machine.memory import PhysicalMemory, real_to_absolute
from s390_machine.state import MEMORY_FILE, STATE_FILE, MachineState, dump_state, load_state


class Machine:
    def __init__(self, path: str, state: MachineState, memory: PhysicalMemory):
        self.path = path
        self.state = state
        self.memory = memory
        self.recovered: str | None = None     # what Machine.open did to an interrupted kexec load

    @classmethod
    def open(cls, path: str | os.PathLike, writable: bool = False) -> "Machine":
        path = os.fspath(path)
        state = load_state(path)
        mem_path = os.path.join(path, MEMORY_FILE)
        if not os.path.exists(mem_path):
            raise BadInputError(f"{path} is not a machine directory (no {MEMORY_FILE})")
        from s390_machine.kexec import recover_interrupted_load
        recovered = recover_interrupted_load(path, mem_path)
        size = os.stat(mem_path).st_size
        if size != state.memory_size:
            raise BadInputError(
                f"{mem_path} has {size} bytes but the machine has {state.memory_size} "
                f"({'truncated' if size < state.memory_size else 'oversized'} memory image)"
            )
        memory = PhysicalMemory(mem_path, writable=writable, expected_size=state.memory_size)
        machine = cls(path, state, memory)
        machine.recovered = recovered
        return machine

    def close(self) -> None:
        self.memory.close()

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- state ------------------------------------------------------------------------
    def save_state(self) -> None:
        # storage needs no msync: other processes see the mapping through the page cache
        atomic_write_text(os.path.join(self.path, STATE_FILE), dump_state(self.state))

    @property
    def cpus(self) -> list[CpuRegs]:
        return self.state.cpus

    def cpu(self, address: int) -> CpuRegs:
        return self.state.cpu(address)

    # -- storage --------------------------------------------------------------------
    def read_real(self, cpu: CpuRegs, addr: int, length: int) -> bytes:
        """Real storage as `cpu` sees it: prefixing applied, split at the prefix boundaries."""
        out = bytearray()
        bounds = sorted({LOWCORE_SIZE, cpu.prefix, cpu.prefix + LOWCORE_SIZE})
        while length > 0:
            nxt = next((b for b in bounds if b > addr), addr + length)
            n = min(length, nxt - addr)
            out += self.memory.read(real_to_absolute(addr, cpu.prefix), n)
            addr += n
            length -= n
        return bytes(out)

    def lowcore_address(self, cpu: CpuRegs) -> int:
        return cpu.prefix

    @property
    def meminfo_pointer(self) -> int:
        return self.memory.read_u64(LC_OS_INFO)

    @property
    def vmcoreinfo_note_pointer(self) -> int:
        return self.memory.read_u64(LC_VMCORE_INFO)

    def meminfo_report(self, verify_segments: bool = True) -> MeminfoReport:
        return check_meminfo(self.memory, verify_segments=verify_segments)
