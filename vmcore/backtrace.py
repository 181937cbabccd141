"""Kernel backtraces from the dump alone: each CPU's saved PSW and r15, the s390 back chain,
kallsyms for the names (no vmlinux, no debug info).

The walk follows the kernel's own back-chain unwinder in spirit: a non-zero back chain leads to
the caller's frame, whose register save area holds the return address (r14); a zero back chain
ends a stack, and a struct pt_regs right above that last frame carries on into the interrupted
kernel context (interrupt, program check) or, in problem state, ends the trace at user space.
Stack switches (task -> async/IRQ -> restart ...) are back chains that leave the current stack.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from meminfo_abi.cpu import CpuRegs
from dumpkit.errors import DumpToolError
from meminfo_abi.lowcore import LC_LINUX_STACKS
from meminfo_abi.stackframe import (PSW_ADDR_MASK, PSW_MASK_PSTATE, PSW_MASK_WAIT, STACK_ALIGN,
                                    STACK_FRAME_BACK_CHAIN, STACK_FRAME_OVERHEAD, STACK_FRAME_R14, THREAD_SIZE,
                                    pt_regs)
from vmcore.kallsyms import SymbolTable
from vmcore.kvaddr import KernelSpace

MAX_FRAMES = 256
PANIC_FUNCTIONS = ("panic", "die", "oops_end", "__die", "do_exit")


@dataclass
class Frame:
    address: int
    sp: int
    stack: str              # task, irq, nodat, restart, mcck, stack (kind unknown)
    symbol: str             # function+0xoff/0xsize, or "?"
    how: str                # psw, r14 (leaf), backchain, pt_regs

    def to_json(self) -> dict:
        return {"address": self.address, "sp": self.sp, "stack": self.stack, "symbol": self.symbol,
                "how": self.how}


@dataclass
class Backtrace:
    cpu: int
    cpu_address: int
    psw_mask: int
    psw_addr: int
    frames: list[Frame] = field(default_factory=list)
    stop: str = ""          # why the walk ended
    task: dict | None = None    # a task's stack (bt --task): pid, comm, address

    def functions(self) -> list[str]:
        return [f.symbol.split("+", 1)[0] for f in self.frames]

    def to_json(self) -> dict:
        return {"cpu": self.cpu, "cpu_address": self.cpu_address, "psw_mask": self.psw_mask,
                "psw_addr": self.psw_addr, "frames": [f.to_json() for f in self.frames], "stop": self.stop,
                **({"task": self.task} if self.task is not None else {})}


def cpu_stacks(space: KernelSpace, cpu: CpuRegs) -> dict[int, str]:
    """THREAD_SIZE-aligned stack bases of this CPU from its lowcore -> stack kind."""
    try:
        lc = space.dump.read(cpu.prefix, 0x400)
    except DumpToolError:
        return {}
    vals = [(kind, struct.unpack_from(">Q", lc, off)[0]) for kind, off in LC_LINUX_STACKS]
    if len({v & (THREAD_SIZE - 1) for _k, v in vals}) != 1 or any(v == 0 for _k, v in vals):
        return {}   # not the layout this kernel uses: leave kinds unknown
    out: dict[int, str] = {}
    for kind, v in vals:
        out.setdefault(v & ~(THREAD_SIZE - 1), kind)
    return out


def walk_cpu(space: KernelSpace, syms: SymbolTable, index: int, cpu: CpuRegs) -> Backtrace:
    bt = Backtrace(index, cpu.address, cpu.psw_mask, cpu.psw_addr)
    if cpu.psw_mask & PSW_MASK_PSTATE:
        bt.stop = "the CPU was in problem state (user space): no kernel stack to walk"
        return bt
    ip = cpu.psw_addr & PSW_ADDR_MASK
    if ip == 0 and cpu.psw_mask & PSW_MASK_WAIT:
        bt.stop = "the CPU was stopped in an enabled/disabled wait with no PSW address (idle or offline)"
        return bt
    walk_stack(space, syms, bt, cpu_stacks(space, cpu), ip, cpu.gprs[15], "psw", cpu.gprs[14] & PSW_ADDR_MASK)
    return bt


def walk_task(space: KernelSpace, syms: SymbolTable, bt: Backtrace, ksp: int, stack_base: int) -> Backtrace:
    """A task that is not running: its stack from the kernel stack pointer __switch_to saved
    (s390: thread.ksp), whose frame holds the return address into the scheduler as its r14."""
    try:
        ip = space.u64(ksp + STACK_FRAME_R14) & PSW_ADDR_MASK
    except DumpToolError as exc:
        bt.stop = f"saved kernel stack pointer 0x{ksp:x} does not point to a readable frame: {exc}"
        return bt
    bt.psw_addr = ip
    walk_stack(space, syms, bt, {stack_base & ~(THREAD_SIZE - 1): "task"}, ip, ksp, "ksp", None)
    return bt


def walk_stack(space: KernelSpace, syms: SymbolTable, bt: Backtrace, stacks: dict[int, str], ip: int, sp: int,
               how: str, r14: int | None) -> None:
    """Frames from (ip, sp) along the back chain into bt; r14: a leaf function's return address
    (the CPU's live r14), None where the first frame is a saved one."""

    def kind(sp: int) -> str:
        return stacks.get(sp & ~(THREAD_SIZE - 1), "stack")

    def add(addr: int, sp: int, how: str) -> None:
        bt.frames.append(Frame(addr, sp, kind(sp), syms.describe(addr), how))

    add(ip, sp, how)
    try:
        first = space.read(sp, STACK_FRAME_OVERHEAD)
    except DumpToolError as exc:
        bt.stop = f"r15 0x{sp:x} does not point to a readable stack frame: {exc}"
        return
    # a leaf function that has not saved r14 nor made a frame: r14 names its caller
    bc0 = struct.unpack_from(">Q", first, STACK_FRAME_BACK_CHAIN)[0]
    next_ret = None
    if bc0:
        try:
            next_ret = space.u64(bc0 + STACK_FRAME_R14)
        except DumpToolError:
            pass
    if r14 is not None:
        here, there = syms.lookup(ip), syms.lookup(r14)
        if there and (here is None or here[0] is not there[0]) and r14 != next_ret and there[0].type in "Tt":
            add(r14, sp, "r14")
    while len(bt.frames) < MAX_FRAMES:
        if sp & (STACK_ALIGN - 1):
            bt.stop = f"stack pointer 0x{sp:x} is not 8-byte aligned"
            return
        try:
            bc = space.u64(sp + STACK_FRAME_BACK_CHAIN)
        except DumpToolError as exc:
            bt.stop = f"frame at 0x{sp:x} is unreadable: {exc}"
            return
        if bc:
            same_stack = bc & ~(THREAD_SIZE - 1) == sp & ~(THREAD_SIZE - 1)
            if same_stack and bc <= sp:
                bt.stop = f"back chain 0x{bc:x} of the frame at 0x{sp:x} does not go up the stack"
                return
            try:
                ret = space.u64(bc + STACK_FRAME_R14) & PSW_ADDR_MASK
            except DumpToolError as exc:
                bt.stop = f"back chain 0x{bc:x} of the frame at 0x{sp:x} leads nowhere: {exc}"
                return
            sp = bc
            add(ret, sp, "backchain")
            continue
        # end of this stack: a pt_regs follows the last frame
        regs_at = sp + STACK_FRAME_OVERHEAD
        try:
            regs = pt_regs.parse(space.read(regs_at, pt_regs.sizeof()))
        except DumpToolError as exc:
            bt.stop = f"zero back chain at 0x{sp:x} and no readable pt_regs above it: {exc}"
            return
        if regs.psw_mask & PSW_MASK_PSTATE:
            bt.stop = (f"pt_regs at 0x{regs_at:x}: entered from user space (PSW {regs.psw_mask:016x} "
                       f"{regs.psw_addr:016x})")
            return
        nsp = regs.gprs[15]
        if regs.psw_addr == 0 or nsp == 0 or nsp == sp:
            bt.stop = f"zero back chain at 0x{sp:x}: end of the stack"
            return
        sp = nsp
        add(regs.psw_addr & PSW_ADDR_MASK, sp, "pt_regs")
    bt.stop = f"stopped after {MAX_FRAMES} frames"


def backtraces(space: KernelSpace, syms: SymbolTable, cpus: list[tuple[int, CpuRegs]]) -> list[Backtrace]:
    return [walk_cpu(space, syms, i, c) for i, c in cpus]


def crash_site(bts: list[Backtrace], syms: SymbolTable) -> tuple[Backtrace, str] | None:
    """The CPU whose stack runs through panic/die, and the function that called it
    (looked up at return address - 1, so a call to a noreturn function names its caller)."""
    for bt in bts:
        names = bt.functions()
        for i, n in enumerate(names):
            if n in PANIC_FUNCTIONS and i + 1 < len(bt.frames):
                caller = bt.frames[i + 1].address
                hit = syms.lookup(caller - 1)
                where = f"{hit[0].name}+0x{hit[1] + 1:x}" if hit else f"0x{caller:x}"
                return bt, f"{where} (called {n})"
    return None
