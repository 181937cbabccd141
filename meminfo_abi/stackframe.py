"""The s390x kernel stack: struct stack_frame and struct pt_regs (arch/s390/include/asm/
stacktrace.h, ptrace.h), as the s390x ELF ABI supplement and the kernel lay them out.

The kernel is built with -mbackchain -mpacked-stack: every frame is STACK_FRAME_OVERHEAD
(160) bytes, the register save area (r6..r15) and the back chain sit at the *top* of it.
A function saves its caller's r6-r15 (r14 = its return address) into the caller's frame,
then stores the caller's r15 as the back chain of its own new frame.  A zero back chain
ends a stack; a struct pt_regs (interrupt, program check or system call entry) follows
the last frame, at sp + STACK_FRAME_OVERHEAD.
"""

from __future__ import annotations

from construct import Array, Int64ub, Struct

STACK_FRAME_OVERHEAD = 160
# packed-stack struct stack_frame: 9 unused/ABI slots, gprs[10] = r6..r15, back_chain
stack_frame = Struct(
    "empty" / Array(9, Int64ub),
    "gprs" / Array(10, Int64ub),          # r6 .. r15
    "back_chain" / Int64ub,
)
STACK_FRAME_R14 = 9 * 8 + (14 - 6) * 8    # 0x88: saved r14, the return address into the caller
STACK_FRAME_R15 = 9 * 8 + (15 - 6) * 8    # 0x90
STACK_FRAME_BACK_CHAIN = 9 * 8 + 10 * 8   # 0x98
STACK_FRAME_SIZE = STACK_FRAME_BACK_CHAIN + 8

# struct pt_regs, its stable head: args[1], psw, gprs[16], orig_gpr2 (what follows - int_code,
# flags, cr1, last_break, ... - changes between kernel versions and is not needed here)
pt_regs = Struct(
    "args" / Array(1, Int64ub),
    "psw_mask" / Int64ub,
    "psw_addr" / Int64ub,
    "gprs" / Array(16, Int64ub),
    "orig_gpr2" / Int64ub,
)
PT_REGS_HEAD_SIZE = 8 + 16 + 16 * 8 + 8              # 0xA0
PSW_MASK_PSTATE = 0x0001_0000_0000_0000              # problem state: the regs are user mode
PSW_ADDR_MASK = 0x7FFF_FFFF_FFFF_FFFF                # 64-bit addressing: bit 0 unused

PSW_MASK_WAIT = 0x0002_0000_0000_0000                # wait state
THREAD_SIZE = 16 * 1024                              # s390x task, async, nodat, restart stacks
STACK_ALIGN = 8                                      # the ABI keeps sp 8-byte aligned

assert stack_frame.sizeof() == STACK_FRAME_SIZE == STACK_FRAME_OVERHEAD
assert pt_regs.sizeof() == PT_REGS_HEAD_SIZE

# kallsyms (kernel/kallsyms.c, scripts/kallsyms.c): the tables VMCOREINFO names
KALLSYMS_NAME_LONG = 0x80          # a name's length byte with this bit: 2-byte ULEB128 length (6.1+)
KALLSYMS_MAX_SYMS = 1 << 22        # bound on kallsyms_num_syms for an untrusted dump
KALLSYMS_TOKENS = 256
