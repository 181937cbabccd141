"""Issue 19, the BTF part: struct layouts from the kernel's own BTF, then `vmcore ps` and
`vmcore bt --task` on a hand-built machine.

The BTF blob is written here record by record with struct.pack, as Documentation/bpf/btf.rst
lays the format out (not through meminfo_abi/btf.py), so the parser is checked against an
independent writer; hostile variants check the bounds (one line, exit 3, no traceback).
tests/realworld/test_btf.py checks the same against a real kernel where the harness has one.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from dumpkit.errors import BadInputError
from meminfo_abi.stackframe import PSW_MASK_PSTATE, STACK_FRAME_BACK_CHAIN, STACK_FRAME_OVERHEAD, STACK_FRAME_R14
from tests.test_backtrace import FUNCS, MEM, TASK_STACK, machine, put, u64
from vmcore.btf import Btf, NoBtfError, find_btf
from vmcore.kallsyms import SymbolTable
from vmcore.model import BytesSource, Dump, MemChunk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# BTF kinds as numbered in include/uapi/linux/btf.h
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = 12, 13, 14, 15, 16, 17, 18, 19


class BtfWriter:
    """A BTF blob, big-endian (s390x), written field by field."""

    def __init__(self):
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.count = 0

    def name(self, text: str) -> int:
        if not text:
            return 0
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def add(self, kind: int, name: str, size_type: int, vlen: int = 0, data: bytes = b"", kflag: bool = False,
            name_off: int | None = None) -> int:
        info = (kflag << 31) | (kind << 24) | vlen
        self.types += struct.pack(">III", self.name(name) if name_off is None else name_off, info, size_type) + data
        self.count += 1
        return self.count

    def struct(self, name: str, size: int, members: list[tuple[str, int, int]], kind: int = STRUCT,
               bitfields: dict[str, int] | None = None) -> int:
        data = b""
        for mname, mtype, byte_off in members:
            bits = (bitfields or {}).get(mname)
            off = byte_off * 8 if bits is None else (bits << 24) | (byte_off * 8)
            data += struct.pack(">III", self.name(mname), mtype, off)
        return self.add(kind, name, size, len(members), data, kflag=bool(bitfields))

    def blob(self, type_len: int | None = None, str_len: int | None = None, magic: int = 0xEB9F) -> bytes:
        tl = len(self.types) if type_len is None else type_len
        sl = len(self.strings) if str_len is None else str_len
        return struct.pack(">HBBIIIII", magic, 1, 0, 24, 0, tl, len(self.types), sl) + bytes(self.types) + \
            bytes(self.strings)


# struct task_struct as this test's kernel lays it out (byte offsets)
T_CPU, T_STATE, T_STACK, T_FLAGS, T_ON_CPU, T_TASKS, T_EXIT, T_PID, T_TGID, T_PARENT, T_COMM = (
    8, 16, 24, 32, 36, 40, 56, 60, 64, 72, 80)
T_SIGNAL, T_THREAD_NODE, T_KSP, TASK_SIZE = 96, 104, 128, 136
S_THREAD_HEAD = 8


def kernel_btf() -> BtfWriter:
    w = BtfWriter()
    i32 = w.add(INT, "int", 4, data=struct.pack(">I", (1 << 24) | 32))         # signed, 32 bits
    u32 = w.add(INT, "unsigned int", 4, data=struct.pack(">I", 32))
    u64_ = w.add(INT, "long unsigned int", 8, data=struct.pack(">I", 64))
    char = w.add(INT, "char", 1, data=struct.pack(">I", 8))
    pid_t = w.add(TYPEDEF, "pid_t", i32)
    cv_int = w.add(CONST, "", w.add(VOLATILE, "", i32))
    w.add(FWD, "task_struct", 0)                                               # a declaration first
    w.add(ENUM, "pid_type", 4, 2, struct.pack(">Ii", w.name("PIDTYPE_PID"), 0) + struct.pack(">Ii", w.name("PIDTYPE_TGID"), 1))
    w.add(ENUM64, "big", 8, 1, struct.pack(">III", w.name("BIG"), 1, 2))
    w.add(FLOAT, "double", 8)
    proto = w.add(FUNC_PROTO, "", i32, 2, struct.pack(">II", w.name("a"), i32) + struct.pack(">II", 0, u64_))
    w.add(FUNC, "schedule", proto)
    var = w.add(VAR, "runqueues", i32, data=struct.pack(">I", 1))
    w.add(DATASEC, ".data..percpu", 64, 1, struct.pack(">III", var, 0, 4))
    w.add(DECL_TAG, "tag", var, data=struct.pack(">i", -1))
    w.add(TYPE_TAG, "user", u32)
    w.add(TYPEDEF, "atomic_long_t", w.struct("", 8, [("counter", u64_, 0)]))     # a typedef'd anonymous struct
    lh, lh_ptr = w.count + 1, w.count + 2                                   # ids are given in order
    w.struct("list_head", 16, [("next", lh_ptr, 0), ("prev", lh_ptr, 8)])
    w.add(PTR, "", lh)
    comm = w.add(ARRAY, "", 0, data=struct.pack(">III", char, i32, 16))
    ti = w.struct("thread_info", 16, [("flags", u64_, 0), ("cpu", u32, 8)])
    th = w.struct("thread_struct", 16, [("fpc", u32, 0), ("ksp", u64_, 8)])
    sig = w.struct("signal_struct", 24, [("nr_threads", cv_int, 0), ("thread_head", lh, S_THREAD_HEAD)])
    sig_ptr = w.add(PTR, "", sig)
    anon = w.struct("", 8, [("signal", sig_ptr, 0)])
    bits = w.struct("", 4, [("sched_reset_on_fork", u32, 0), ("sched_remote_wakeup", u32, 0)],
                    bitfields={"sched_reset_on_fork": 1, "sched_remote_wakeup": 1})
    task, task_ptr, void_ptr = w.count + 1, w.count + 2, w.count + 3
    w.struct("task_struct", TASK_SIZE, [
        ("thread_info", ti, 0), ("__state", u32, T_STATE), ("stack", void_ptr, T_STACK), ("flags", u32, T_FLAGS),
        ("on_cpu", i32, T_ON_CPU), ("tasks", lh, T_TASKS), ("exit_state", i32, T_EXIT), ("pid", pid_t, T_PID),
        ("tgid", pid_t, T_TGID), ("real_parent", task_ptr, T_PARENT), ("comm", comm, T_COMM), ("", anon, T_SIGNAL),
        ("thread_node", lh, T_THREAD_NODE), ("thread", th, T_KSP - 8), ("", bits, 132)])
    w.add(PTR, "", task)
    w.add(PTR, "", 0)
    w.struct("rq", 16, [("curr", task_ptr, 0), ("idle", task_ptr, 8)])
    return w


def test_btf_resolves_member_offsets_through_typedefs_anonymous_members_and_nesting():
    btf = Btf(kernel_btf().blob())
    assert btf.find("task_struct") and btf.kind_name(btf.find("task_struct")) == "struct"   # not the fwd
    assert btf.field("task_struct", "pid").offset == T_PID and btf.field("task_struct", "pid").size == 4
    assert btf.field("task_struct", "thread.ksp").offset == T_KSP
    assert btf.field("task_struct", "thread_info.cpu").offset == T_CPU
    assert btf.field("task_struct", "signal").offset == T_SIGNAL              # inside an anonymous struct
    assert btf.field("task_struct", "comm").size == 16
    assert btf.field("task_struct", "tasks").size == 16
    assert btf.field("list_head", "prev").offset == 8
    assert btf.field("signal_struct", "nr_threads").size == 4                  # through const volatile
    assert btf.field("task_struct", "state") is None and btf.field("task_struct", "thread.nope") is None
    assert btf.field("task_struct", "pid.x") is None and btf.field("pid_t", "x") is None
    assert btf.struct_size("task_struct") == TASK_SIZE and btf.find("no_such") is None
    assert btf.struct_size("atomic_long_t") == 8 and btf.field("atomic_long_t", "counter").offset == 0
    with pytest.raises(BadInputError, match="bitfield"):
        btf.field("task_struct", "sched_remote_wakeup")


def _bad(blob: bytes, match: str) -> None:
    with pytest.raises(BadInputError, match=match) as exc:
        btf = Btf(blob)
        for name in ("s", "task_struct"):              # every member's size, as ps would need
            tid = btf.find(name)
            for m in btf.members(tid) if tid else ():
                btf.sizeof(m.type)
            btf.field(name, "nope")
    assert "\n" not in str(exc.value)


def test_hostile_headers_and_sections():
    good = kernel_btf().blob()
    _bad(good[:10], "shorter than struct btf_header")
    _bad(struct.pack(">H", 0x1234) + good[2:], "magic 0x1234")
    _bad(good[:2] + b"\x02" + good[3:], "version 2")
    _bad(good[:4] + struct.pack(">I", 1 << 30) + good[8:], "header length")
    w = kernel_btf()
    _bad(w.blob(type_len=len(w.types) + 4096), "type section .* runs past")
    _bad(w.blob(str_len=1 << 31), "string section .* runs past")
    _bad(w.blob(type_len=len(w.types) - 5), "cut short|runs past the type section")


def test_hostile_types():
    w = BtfWriter()
    w.add(STRUCT, "s", 8, vlen=0xFFFF)                                        # members beyond the blob
    _bad(w.blob(), "vlen 65535.* runs past the type section")
    w = BtfWriter()
    w.add(31, "x", 0)
    _bad(w.blob(), "unknown kind 31")
    w = BtfWriter()
    w.add(INT, "", 4, data=bytes(4), name_off=1 << 20)
    _bad(w.blob(), "name offset 1048576 is past the string section")
    w = BtfWriter()
    w.add(TYPEDEF, "a", 2)
    w.add(TYPEDEF, "b", 1)                                                    # a typedef loop
    w.struct("s", 8, [("m", 1, 0)])
    _bad(w.blob(), "more than 64 typedef")
    w = BtfWriter()
    w.add(ARRAY, "", 0, data=struct.pack(">III", 1, 1, 2))                    # an array of itself
    w.struct("s", 8, [("m", 1, 0)])
    _bad(w.blob(), "nested more than 64")
    w = BtfWriter()
    w.struct("task_struct", 8, [("thread", 999, 0)])                         # a type id past the end
    _bad(w.blob(), "type id 999 is not among")
    w = BtfWriter()
    w.struct("s", 8, [("", 1, 0)])                                            # an anonymous member of itself
    _bad(w.blob(), "contains itself")
    w = BtfWriter()                                                           # 2**20 paths to a missing name
    for i in range(20):
        w.struct("s" if i == 0 else "", 8, [("", i + 2, 0), ("", i + 2, 0)] if i < 19 else [("y", 21, 0)])
    w.add(INT, "int", 4, data=struct.pack(">I", 32))
    _bad(w.blob(), "visits more than 65536 members")


def test_find_btf_by_start_stop_symbols_and_no_btf_in_one_line():
    blob = kernel_btf().blob()
    mem = {0x5000: blob}
    syms = SymbolTable([("T", "_stext", 0x1000), ("T", "_etext", 0x2000), ("D", "__start_BTF", 0x5000),
                        ("D", "__stop_BTF", 0x5000 + len(blob))])
    addr, btf, how = find_btf(lambda a, n: mem[a][:n], syms)
    assert (addr, how) == (0x5000, "__start_BTF") and btf.struct_size("task_struct") == TASK_SIZE
    from vmcore.kvaddr import TranslationError

    def nothing(a, n):
        raise TranslationError(f"0x{a:x} unmapped")
    with pytest.raises(NoBtfError, match="carries no usable BTF") as exc:
        find_btf(nothing, SymbolTable([("T", "_stext", 0x1000), ("T", "_etext", 0x2000)]))
    assert "\n" not in str(exc.value)


# -- a machine with BTF and tasks -------------------------------------------------------------------
HIGH = 1 << 31                       # VA 2 GiB + x is physical x (a 2 GiB region-third frame)
BTF_AT = 0x290000                    # identity mapped, after kallsyms and after _etext
TASKS_PHYS = 0x500000
SIG_PHYS = 0x580000
SLEEP_STACK = 0x400000               # physical; THREAD_SIZE aligned
# pid, comm, state, exit_state, flags, cpu, tgid
TASKS = [(0, "swapper/0", 0, 0, 0x00200002, 0, 0), (1, "init", 1, 0, 0, 1, 1),
         (2, "kthreadd", 1, 0, 0x00208040, 1, 2), (17, "kworker/0:1", 0x402, 0, 0x04208060, 0, 17),
         (321, "bash", 0, 0, 0x00400100, 0, 321), (400, "sleeper", 2, 0, 0, 1, 400),
         (401, "defunct", 0x80, 0x20, 0, 1, 401), (402, "sleeper-thr", 1, 0, 0, 0, 400)]
LEADERS = [0, 1, 2, 17, 321, 400, 401]


def task_va(i: int) -> int:
    return HIGH + TASKS_PHYS + i * 0x400


def btf_machine(with_btf: bool = True, blob: bytes | None = None, break_after: int | None = None) -> Dump:
    d = machine()
    mem = bytearray(d.read(0, MEM))
    if with_btf:
        put(mem, BTF_AT, blob if blob is not None else kernel_btf().blob())
    sig_va = HIGH + SIG_PHYS
    for i, (pid, comm, state, exit_state, flags, cpu, tgid) in enumerate(TASKS):
        base = TASKS_PHYS + i * 0x400
        put(mem, base + T_CPU, struct.pack(">I", cpu))
        put(mem, base + T_STATE, struct.pack(">I", state))
        stack = TASK_STACK if pid == 321 else HIGH + SLEEP_STACK if pid == 400 else HIGH + 0x600000 + i * 0x4000
        put(mem, base + T_STACK, u64(stack))
        put(mem, base + T_FLAGS, struct.pack(">I", flags))
        put(mem, base + T_EXIT, struct.pack(">i", exit_state))
        put(mem, base + T_PID, struct.pack(">ii", pid, tgid))
        put(mem, base + T_PARENT, u64(task_va(0 if pid in (1, 2) else 1 if pid != 17 else 2)))
        put(mem, base + T_COMM, comm.encode().ljust(16, b"\0"))
        put(mem, base + T_SIGNAL, u64(sig_va if tgid == 400 else 0))
        put(mem, base + T_KSP, u64(HIGH + SLEEP_STACK + 0x3C00 if pid == 400 else 0))
    # init_task.tasks: a circle through the leaders
    idx = [i for i, t in enumerate(TASKS) if t[0] in LEADERS]
    for k, i in enumerate(idx):
        nxt, prv = idx[(k + 1) % len(idx)], idx[k - 1]
        put(mem, TASKS_PHYS + i * 0x400 + T_TASKS, u64(task_va(nxt) + T_TASKS) + u64(task_va(prv) + T_TASKS))
    if break_after is not None:                  # that task's tasks.next into an unmapped page
        i = next(i for i, t in enumerate(TASKS) if t[0] == break_after)
        put(mem, TASKS_PHYS + i * 0x400 + T_TASKS, u64(0x2FF000))
    # signal->thread_head: the thread group of 400 (leader and 402)
    head = sig_va + S_THREAD_HEAD
    n400, n402 = task_va(5) + T_THREAD_NODE, task_va(7) + T_THREAD_NODE
    put(mem, SIG_PHYS + S_THREAD_HEAD, u64(n400) + u64(n402))
    put(mem, TASKS_PHYS + 5 * 0x400 + T_THREAD_NODE, u64(n402) + u64(head))
    put(mem, TASKS_PHYS + 7 * 0x400 + T_THREAD_NODE, u64(head) + u64(n400))
    # the sleeper's stack: __switch_to's frame at ksp (r14 into the scheduler), its caller, then
    # the pt_regs of the system call it came in by
    sp0, sp1 = SLEEP_STACK + 0x3C00, SLEEP_STACK + 0x3D00
    put(mem, sp0 + STACK_FRAME_R14, u64(FUNCS["func_c"] + 0x40))
    put(mem, sp0 + STACK_FRAME_BACK_CHAIN, u64(HIGH + sp1))
    put(mem, sp1 + STACK_FRAME_R14, u64(FUNCS["func_b"] + 0x10))
    put(mem, sp1 + STACK_FRAME_BACK_CHAIN, u64(0))
    put(mem, sp1 + STACK_FRAME_OVERHEAD + 8, u64(0x0705000180000000 | PSW_MASK_PSTATE) + u64(0x1000))
    # CPU 0's lowcore (prefix 0): current_task is bash, whose stack is the lowcore's kernel stack
    put(mem, 0x340, u64(task_va(4)))
    return Dump([MemChunk(0, MEM, BytesSource(bytes(mem)))], d.cpus, d.attrs)


def test_task_list_from_btf_and_a_cpus_current_task():
    from vmcore.tasks import task_list
    tl = task_list(btf_machine())
    assert tl.btf_source.startswith(f"scan at 0x{BTF_AT:x}") and "CPU 0's current task" in tl.start
    got = {t.pid: (t.comm, t.state, t.letter, t.cpu, t.kernel_thread, t.on_cpu) for t in tl.tasks}
    assert got == {0: ("swapper/0", "RU", "R", 0, True, None), 1: ("init", "IN", "S", 1, False, None),
                   2: ("kthreadd", "IN", "S", 1, True, None), 17: ("kworker/0:1", "ID", "I", 0, True, None),
                   321: ("bash", "RU", "R", 0, False, 0), 400: ("sleeper", "UN", "D", 1, False, None),
                   401: ("defunct", "ZO", "Z", 1, False, None), 402: ("sleeper-thr", "IN", "S", 0, False, None)}
    assert [t.pid for t in tl.tasks] == sorted(got)
    by = {t.pid: t for t in tl.tasks}
    assert (by[321].ppid, by[17].ppid, by[1].ppid, by[402].tgid) == (1, 2, 0, 400)


def test_a_broken_task_list_gives_the_tasks_before_the_break_and_says_where():
    from vmcore.tasks import task_list
    tl = task_list(btf_machine(break_after=0))
    # the walk starts at bash (CPU 0's current) and runs 321 -> 400 -> 401 -> 0 -> (unmapped)
    assert sorted(t.pid for t in tl.tasks) == [0, 321, 400, 401, 402]
    assert len(tl.notes) == 1 and "breaks after 3 entries" in tl.notes[0] and "0x2ff000" in tl.notes[0]


def test_idle_and_running_tasks_from_the_per_cpu_runqueues():
    from vmcore.tasks import runqueues

    class Space:                     # kernel virtual memory: a few words
        mem = {0x9000: 0x100, 0x9008: (-0x200) & (2**64 - 1), 0x7000: 2,
               0x5100: 0xA1, 0x5108: 0xB1, 0x4E00: 0xA2, 0x4E08: 0xB2}

        def u64(self, a):
            return self.mem[a]

        def u32(self, a):
            return self.mem[a]
    syms = SymbolTable([("T", "_stext", 0x1000), ("D", "runqueues", 0x5000), ("D", "__per_cpu_offset", 0x9000),
                        ("D", "nr_cpu_ids", 0x7000)])
    btf = Btf(kernel_btf().blob())
    # per_cpu(runqueues, cpu) = runqueues + __per_cpu_offset[cpu], modulo 2**64 (offsets may be "negative")
    assert runqueues(Space(), syms, btf, 8) == {0: (0xB1, 0xA1), 1: (0xB2, 0xA2)}
    assert runqueues(Space(), SymbolTable([("T", "_stext", 0x1000)]), btf, 8) == {}


def test_bt_task_of_a_sleeping_task_from_thread_ksp_and_of_the_running_one():
    from vmcore.tasks import task_backtrace
    bt, t, _syms = task_backtrace(btf_machine(), 400)
    assert [f.symbol for f in bt.frames] == ["func_c+0x40/0x100", "func_b+0x10/0x100"]
    assert [f.how for f in bt.frames] == ["ksp", "backchain"] and {f.stack for f in bt.frames} == {"task"}
    assert "user space" in bt.stop and bt.task["pid"] == 400 and "thread.ksp" in bt.task["source"]
    bt, t, _syms = task_backtrace(btf_machine(), 321)                         # running: the CPU's registers
    assert bt.frames[0].how == "psw" and "panic" in [f.symbol.split("+")[0] for f in bt.frames]
    with pytest.raises(BadInputError, match="no task with PID 999"):
        task_backtrace(btf_machine(), 999)


# -- the CLI ----------------------------------------------------------------------------------------
def vmcore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vmcore.cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    d = tmp_path_factory.mktemp("btf")
    paths = {}
    bad = kernel_btf()
    bad.types[:12] = struct.pack(">III", 0, (STRUCT << 24) | 0xFFFF, 8)      # a member list beyond the blob
    for name, dump in (("btf", btf_machine()), ("nobtf", btf_machine(with_btf=False)),
                       ("badbtf", btf_machine(blob=bad.blob(type_len=len(bad.types))))):
        paths[name] = str(d / f"{name}.elf")
        dump.write(paths[name], "elf")
    return paths


def test_cli_ps_and_bt_task(dumps):
    out = vmcore("ps", dumps["btf"])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["PID", "PPID", "CPU", "TASK", "ST", "COMM"]
    bash = next(line for line in lines if line.endswith(" bash"))
    assert bash.startswith(">") and bash.split()[1:] == ["321", "1", "0", f"{task_va(4):016x}", "RU", "bash"]
    assert any(line.split()[-2:] == ["IN", "[kthreadd]"] for line in lines)
    res = json.loads(vmcore("ps", dumps["btf"], "--json").stdout)
    assert [t["pid"] for t in res["tasks"]] == [0, 1, 2, 17, 321, 400, 401, 402]
    assert res["tasks"][4]["current_on_cpu"] == 0 and res["tasks"][6]["state"] == "ZO"
    out = vmcore("bt", dumps["btf"], "--task", "400")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('PID 400 TASK') and f" [<{FUNCS['func_b'] + 0x10:016x}>] func_b+0x10/0x100" in out.stdout
    res = json.loads(vmcore("bt", dumps["btf"], "--task", "400", "--json").stdout)
    assert res["cpus"][0]["task"]["comm"] == "sleeper"
    assert vmcore("bt", dumps["btf"], "--task", "400", "--cpu", "0").returncode == 2


@pytest.mark.parametrize("which, args, match", [
    ("nobtf", ("ps",), "carries no usable BTF"), ("nobtf", ("bt", "--task", "1"), "carries no usable BTF"),
    ("badbtf", ("ps",), "vlen 65535"), ("btf", ("bt", "--task", "999"), "no task with PID 999")])
def test_cli_without_or_with_bad_btf_one_line_exit_3(dumps, which, args, match):
    out = vmcore(args[0], dumps[which], *args[1:])
    assert out.returncode == 3 and not out.stdout, out
    assert out.stderr.count("\n") == 1 and match in out.stderr and "Traceback" not in out.stderr
