"""The dumped kernel's tasks, like crash's `ps`, and a sleeping task's kernel stack, from the
dump alone: struct offsets from the kernel's own BTF (vmcore/btf.py), names from kallsyms.

The task list is the circular list through init_task.tasks (thread-group leaders) plus each
group's threads (signal->thread_head / thread_node, or the older thread_group list); a
CPU's running task is its lowcore's current_task, which also finds the idle tasks of the
other CPUs (they are on no list).  Where kallsyms has no init_task (no CONFIG_KALLSYMS_ALL)
the walk starts at a CPU's current task: the list is circular, so it reaches every leader.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from dumpkit.errors import BadInputError, DumpToolError
from meminfo_abi.lowcore import LC_CURRENT_TASK, LC_KERNEL_STACK
from meminfo_abi.stackframe import THREAD_SIZE
from vmcore.backtrace import Backtrace, walk_cpu, walk_task
from vmcore.btf import Btf, find_btf

MAX_TASKS = 1 << 22             # the kernel's PID_MAX_LIMIT
MAX_CPUS = 1 << 12
U64 = (1 << 64) - 1
MAX_TASK_STRUCT = 64 << 10
PF_KTHREAD = 0x00200000         # task_struct.flags: a kernel thread (include/linux/sched.h)

# task_struct.__state / state and exit_state bits (include/linux/sched.h, stable since 4.14)
TASK_INTERRUPTIBLE = 0x1
TASK_UNINTERRUPTIBLE = 0x2
TASK_STOPPED = 0x4
TASK_TRACED = 0x8
EXIT_DEAD = 0x10
EXIT_ZOMBIE = 0x20
TASK_PARKED = 0x40
TASK_DEAD = 0x80
TASK_WAKING = 0x200
TASK_NOLOAD = 0x400
TASK_NEW = 0x800
# crash's two-letter state, the kernel's one letter (/proc/PID/stat), in the order tested
STATES = (
    ("ZO", "Z", lambda s, x: x & EXIT_ZOMBIE),
    ("DE", "X", lambda s, x: x & EXIT_DEAD),
    ("RU", "R", lambda s, x: s == 0),
    ("ID", "I", lambda s, x: s & (TASK_UNINTERRUPTIBLE | TASK_NOLOAD) == TASK_UNINTERRUPTIBLE | TASK_NOLOAD),
    ("IN", "S", lambda s, x: s & TASK_INTERRUPTIBLE),
    ("UN", "D", lambda s, x: s & TASK_UNINTERRUPTIBLE),
    ("ST", "T", lambda s, x: s & TASK_STOPPED),
    ("TR", "t", lambda s, x: s & TASK_TRACED),
    ("PA", "P", lambda s, x: s & TASK_PARKED),
    ("DE", "X", lambda s, x: s & TASK_DEAD),
    ("WA", "R", lambda s, x: s & TASK_WAKING),
    ("NE", "N", lambda s, x: s & TASK_NEW),
)

# task_struct members: name -> candidate paths (kernel versions differ), first found wins
TASK_MEMBERS = {
    "pid": ("pid",), "tgid": ("tgid",), "comm": ("comm",), "state": ("__state", "state"),
    "exit_state": ("exit_state",), "tasks": ("tasks",), "stack": ("stack",), "ksp": ("thread.ksp",),
    "on_cpu": ("on_cpu",), "cpu": ("cpu", "thread_info.cpu"), "flags": ("flags",),
    "real_parent": ("real_parent", "parent"), "signal": ("signal",), "thread_node": ("thread_node",),
    "thread_group": ("thread_group",), "mm": ("mm",),
}
REQUIRED = ("pid", "comm", "state", "tasks")


def state_of(state: int, exit_state: int) -> tuple[str, str]:
    for two, one, test in STATES:
        if test(state, exit_state):
            return two, one
    return "??", "?"


@dataclass
class Task:
    address: int
    pid: int
    tgid: int
    ppid: int | None
    comm: str
    state: str                  # crash's RU, IN, UN, ID, ...
    letter: str                 # the kernel's R, S, D, I, ...
    state_value: int
    cpu: int | None
    kernel_thread: bool
    on_cpu: int | None = None   # the dump's CPU index that runs it (its lowcore's current_task)
    rq_curr: int | None = None  # the CPU whose runqueue names it as running (rq->curr)
    fields: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        return {"pid": self.pid, "ppid": self.ppid, "tgid": self.tgid, "cpu": self.cpu, "task": self.address,
                "state": self.state, "state_letter": self.letter, "state_value": self.state_value,
                "comm": self.comm, "kernel_thread": self.kernel_thread, "current_on_cpu": self.on_cpu,
                "rq_curr": self.rq_curr}

    @property
    def active(self) -> bool:
        return self.on_cpu is not None or self.rq_curr is not None


class TaskReader:
    """task_struct as this kernel lays it out (BTF), read through the kernel's address space."""

    def __init__(self, space, btf: Btf):
        self.space = space
        self.btf = btf
        if btf.find("task_struct") is None:
            raise BadInputError("the kernel's BTF has no struct task_struct")
        self.size = btf.struct_size("task_struct")
        if not 0 < self.size <= MAX_TASK_STRUCT:
            raise BadInputError(f"the kernel's BTF gives struct task_struct {self.size} bytes")
        self.fields = {}
        for key, paths in TASK_MEMBERS.items():
            for p in paths:
                try:
                    f = btf.field("task_struct", p)
                except BadInputError:
                    if key in REQUIRED:
                        raise
                    f = None            # an optional member this kernel lays out oddly: done without
                if f is not None:
                    if f.offset + f.size > self.size:
                        raise BadInputError(f"the kernel's BTF puts task_struct.{p} ({f.size} bytes at "
                                            f"{f.offset}) past the struct's {self.size} bytes")
                    self.fields[key] = f
                    break
        missing = [k for k in REQUIRED if k not in self.fields]
        if missing:
            raise BadInputError("the kernel's BTF struct task_struct has no " + ", ".join(missing))
        nxt = btf.field("list_head", "next")
        self.next_off = nxt.offset if nxt is not None else 0
        th = btf.field("signal_struct", "thread_head")
        self.thread_head = th.offset if th is not None and {"signal", "thread_node"} <= set(self.fields) else None

    def raw(self, addr: int) -> bytes:
        return self.space.read(addr, self.size)

    def value(self, raw: bytes, key: str, signed: bool = False) -> int | None:
        f = self.fields.get(key)
        if f is None or f.size not in (1, 2, 4, 8):
            return None
        return int.from_bytes(raw[f.offset:f.offset + f.size], "big", signed=signed)

    def task(self, addr: int) -> Task:
        raw = self.raw(addr)
        cf = self.fields["comm"]
        comm = raw[cf.offset:cf.offset + min(cf.size, 64)].split(b"\0")[0].decode("utf-8", "replace")
        state = self.value(raw, "state") or 0
        exit_state = self.value(raw, "exit_state") or 0
        two, one = state_of(state, exit_state)
        flags = self.value(raw, "flags") or 0
        ppid = None
        parent = self.value(raw, "real_parent")
        if parent:
            try:
                praw = self.space.read(parent + self.fields["tgid" if "tgid" in self.fields else "pid"].offset, 4)
                ppid = struct.unpack(">i", praw)[0]
            except DumpToolError:
                pass
        pid = self.value(raw, "pid", signed=True)
        return Task(addr, pid, self.value(raw, "tgid", signed=True) if "tgid" in self.fields else pid, ppid, comm,
                    two, one, state | exit_state, self.value(raw, "cpu"), bool(flags & PF_KTHREAD),
                    fields={"stack": self.value(raw, "stack"), "ksp": self.value(raw, "ksp"),
                            "signal": self.value(raw, "signal"), "on_cpu": self.value(raw, "on_cpu")})

    def list_entries(self, head: int, member_off: int, limit: int = MAX_TASKS) -> tuple[list[int], str]:
        """Addresses of the structs on a circular list_head list, head excluded, each minus the
        offset of its list_head member; stops at the first address seen twice.  A list that
        breaks (a pointer into memory the dump lacks) gives what came before and the reason."""
        out, seen = [], {head}
        try:
            pos = self.space.u64(head + self.next_off)
            while pos not in seen:
                if len(out) >= limit:
                    return out, f"the list at 0x{head:x} goes on past {limit} entries"
                seen.add(pos)
                nxt = self.space.u64(pos + self.next_off)      # an entry counts once its links read
                out.append(pos - member_off)
                pos = nxt
        except DumpToolError as exc:
            return out, f"the list at 0x{head:x} breaks after {len(out)} entries: {exc}"
        return out, ""


@dataclass
class TaskList:
    tasks: list[Task]
    btf_source: str             # "__start_BTF" or "scan", and where
    start: str                  # where the walk began
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"btf": self.btf_source, "start": self.start, "notes": self.notes,
                "tasks": [t.to_json() for t in self.tasks]}


def cpu_currents(space, reader: TaskReader) -> dict[int, int]:
    """dump CPU index -> its lowcore's current_task, where that is a task whose stack is the
    lowcore's kernel stack (so the lowcore is the layout we think)."""
    out = {}
    for i, cpu in enumerate(space.dump.cpus):
        try:
            cur = struct.unpack(">Q", space.dump.read(cpu.prefix + LC_CURRENT_TASK, 8))[0]
            kstack = struct.unpack(">Q", space.dump.read(cpu.prefix + LC_KERNEL_STACK, 8))[0]
        except DumpToolError:
            continue
        if not cur:
            continue
        try:
            t = reader.task(cur)
        except DumpToolError:
            continue
        stack = t.fields.get("stack")
        if stack is None or kstack & ~(THREAD_SIZE - 1) == stack:
            out[i] = cur
    return out


def runqueues(space, syms, btf: Btf, ncpus: int) -> dict[int, tuple[int, int]]:
    """logical CPU -> (rq->idle, rq->curr) from the per-CPU runqueues (kallsyms runqueues and
    __per_cpu_offset[], CONFIG_KALLSYMS_ALL); {} where the kernel does not show them."""
    rqs, offsets, nr = syms.by_name("runqueues"), syms.by_name("__per_cpu_offset"), syms.by_name("nr_cpu_ids")
    idle, curr = btf.field("rq", "idle"), btf.field("rq", "curr")
    if None in (rqs, offsets, idle, curr):
        return {}
    out = {}
    try:
        n = space.u32(nr.address) if nr is not None else ncpus
        for cpu in range(min(n, MAX_CPUS)):
            rq = (rqs.address + space.u64(offsets.address + 8 * cpu)) & U64
            out[cpu] = (space.u64(rq + idle.offset), space.u64(rq + curr.offset))
    except DumpToolError:
        pass
    return out


def load(dump):
    """(space, syms, reader, btf address and how) for a dump; NoBtfError where the kernel has none."""
    from vmcore import inspect
    space = inspect.kernel_space(dump)
    syms = inspect.kernel_symbols(space)
    addr, btf, how = find_btf(space.read, syms)
    return space, syms, TaskReader(space, btf), f"{how} at 0x{addr:x} ({len(btf) - 1} types)"


def task_list(dump) -> TaskList:
    return _task_list(*load(dump))


def _task_list(space, syms, reader: TaskReader, btf_source: str) -> TaskList:
    currents = cpu_currents(space, reader)
    tasks_off = reader.fields["tasks"].offset
    init = syms.by_name("init_task")
    if init is not None:
        start, start_how = init.address, "init_task"
    elif currents:
        cpu = min(currents)
        start, start_how = currents[cpu], f"CPU {cpu}'s current task (kallsyms has no init_task)"
    else:
        raise BadInputError("no init_task in kallsyms and no CPU's current task in the dump: no task to start from")
    notes = []
    rest, broken = reader.list_entries(start + tasks_off, tasks_off)
    leaders = [start] + rest
    if broken:
        notes.append(f"task list: {broken}")
    order: list[int] = []
    seen: set[int] = set()

    def add(a: int) -> None:
        if a not in seen:
            seen.add(a)
            order.append(a)

    def read_task(a: int) -> Task | None:
        try:
            return reader.task(a)
        except DumpToolError as exc:
            notes.append(f"task at 0x{a:x} is unreadable: {exc}")
            return None

    tasks: dict[int, Task] = {}
    for a in leaders:
        t = read_task(a)
        if t is None:
            continue
        tasks[a] = t
        add(a)
        for thr in _threads(reader, t, notes):
            add(thr)
    for cpu, a in sorted(currents.items()):
        add(a)
    rq = runqueues(space, syms, reader.btf, len(space.dump.cpus))
    for cpu, (idle, _curr) in sorted(rq.items()):
        if idle:
            add(idle)           # the idle tasks of the other CPUs are on no list
    out = []
    for a in order:
        t = tasks.get(a) or read_task(a)
        if t is not None:
            out.append(t)
    by_addr = {t.address: t for t in out}
    for cpu, a in currents.items():
        if a in by_addr:
            by_addr[a].on_cpu = cpu
    for cpu, (_idle, curr) in rq.items():
        if curr in by_addr:
            by_addr[curr].rq_curr = cpu
    out.sort(key=lambda t: (t.pid, t.cpu if t.cpu is not None else -1, t.address))   # as crash's ps
    return TaskList(out, btf_source, start_how, notes)


def _threads(reader: TaskReader, leader: Task, notes: list[str]) -> list[int]:
    """The other threads of a thread-group leader."""
    if reader.thread_head is not None and leader.fields.get("signal"):
        node = reader.fields["thread_node"].offset
        found, broken = reader.list_entries(leader.fields["signal"] + reader.thread_head, node)
    elif "thread_group" in reader.fields:
        off = reader.fields["thread_group"].offset
        found, broken = reader.list_entries(leader.address + off, off)
    else:
        return []
    if broken:
        notes.append(f"threads of PID {leader.pid}: {broken}")
    return [a for a in found if a != leader.address]


def task_backtrace(dump, pid: int) -> tuple[Backtrace, Task, object]:
    """The kernel stack of the task with this PID: the CPU's live registers where it runs, else
    from its saved kernel stack pointer (thread.ksp)."""
    space, syms, reader, btf_source = load(dump)
    tl = _task_list(space, syms, reader, btf_source)
    hits = [t for t in tl.tasks if t.pid == pid]
    if not hits:
        raise BadInputError(f"no task with PID {pid} in the dump's task list ({len(tl.tasks)} tasks)")
    t = next((h for h in hits if h.on_cpu is not None), hits[0])
    info = {"pid": t.pid, "comm": t.comm, "address": t.address, "state": t.state}
    if t.on_cpu is not None:
        bt = walk_cpu(space, syms, t.on_cpu, dump.cpus[t.on_cpu])
        bt.task = dict(info, source=f"running on CPU {t.on_cpu}: its saved PSW and registers")
        return bt, t, syms
    ksp, stack = t.fields.get("ksp"), t.fields.get("stack")
    if ksp is None:
        raise BadInputError("the kernel's BTF struct task_struct has no thread.ksp: no saved stack pointer")
    bt = Backtrace(t.cpu if t.cpu is not None else -1, -1, 0, 0)
    bt.task = dict(info, source=f"saved kernel stack pointer thread.ksp 0x{ksp:x}")
    walk_task(space, syms, bt, ksp, stack if stack else ksp)
    return bt, t, syms
