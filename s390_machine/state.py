"""The machine's human-readable state file (machine.json): everything that is not storage.

CPUs with their live registers (a real machine keeps them in the CPUs, store
status puts them into storage), the crashkernel reservation the production
kernel made, what the machine is doing, and a log of what happened to it.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone

from meminfo_abi.cpu import CpuRegs
from dumpkit.errors import BadInputError

STATE_FILE = "machine.json"
MEMORY_FILE = "memory.img"
STATE_FORMAT = "s390-dumptools machine"
STATE_VERSION = 1
MAX_STATE_SIZE = 64 << 20

# What the machine is doing
STATUS_RUNNING = "running"          # production kernel up
STATUS_PANICKED = "panicked"        # production kernel stopped after a panic, CPUs stopped
STATUS_KDUMP = "kdump"              # kdump kernel started (swap done, OLDMEM set)
STATUS_DUMPED = "dumped"            # a stand-alone dumper wrote a full dump
STATUS_DISABLED_WAIT = "disabled-wait"
STATUSES = (STATUS_RUNNING, STATUS_PANICKED, STATUS_KDUMP, STATUS_DUMPED, STATUS_DISABLED_WAIT)


def _hex(v: int) -> str:
    return f"0x{v:x}"


def _num(v) -> int:
    return int(v, 0) if isinstance(v, str) else int(v)


@dataclass
class Crashkernel:
    base: int
    size: int

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass
class MachineState:
    memory_size: int
    cpus: list[CpuRegs]
    ipl_cpu: int = 0
    crashkernel: Crashkernel | None = None
    status: str = STATUS_RUNNING
    kernel: dict = field(default_factory=dict)          # release, command_line, origin, addresses
    cpu_states: dict[int, str] = field(default_factory=dict)   # cpu address -> operating/stopped
    psw_on_stop: dict | None = None     # disabled wait PSW, kdump entry, ...
    events: list[dict] = field(default_factory=list)
    transaction: str | None = None      # id of the last committed transaction (s390_machine/txn.py)

    def cpu(self, address: int) -> CpuRegs:
        for c in self.cpus:
            if c.address == address:
                return c
        raise BadInputError(f"the machine has no CPU {address}")

    def record(self, event: str, detail: str = "") -> None:
        self.events.append({"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "event": event, "detail": detail})

    def to_json(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "memory_image": MEMORY_FILE,
            "memory_size": _hex(self.memory_size),
            "status": self.status,
            "ipl_cpu": self.ipl_cpu,
            "crashkernel": None if self.crashkernel is None else
            {"base": _hex(self.crashkernel.base), "size": _hex(self.crashkernel.size)},
            "kernel": self.kernel,
            "psw_on_stop": self.psw_on_stop,
            "cpus": [dict(c.to_json(), state=self.cpu_states.get(c.address, "operating")) for c in self.cpus],
            "events": self.events,
            "transaction": self.transaction,
        }

    @classmethod
    def from_json(cls, d: dict) -> "MachineState":
        if not isinstance(d, dict) or d.get("format") != STATE_FORMAT:
            raise BadInputError("state file is not an s390-dumptools machine state")
        if d.get("version") != STATE_VERSION:
            raise BadInputError(f"machine state version {d.get('version')!r} is not supported")
        try:
            ck = d.get("crashkernel")
            cpus = [CpuRegs.from_json(c) for c in d["cpus"]]
            st = cls(
                memory_size=_num(d["memory_size"]),
                cpus=cpus,
                ipl_cpu=int(d.get("ipl_cpu", 0)),
                crashkernel=None if not ck else Crashkernel(_num(ck["base"]), _num(ck["size"])),
                status=str(d.get("status", STATUS_RUNNING)),
                kernel=dict(d.get("kernel") or {}),
                cpu_states={int(c["address"]): str(c.get("state", "operating")) for c in d["cpus"]},
                psw_on_stop=d.get("psw_on_stop"),
                events=list(d.get("events") or []),
                transaction=d.get("transaction"),
            )
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
            raise BadInputError(f"machine state file is damaged: {exc!r}") from None
        if st.transaction is not None and not (isinstance(st.transaction, str) and st.transaction.isalnum()):
            raise BadInputError("machine state names a malformed transaction")
        if st.status not in STATUSES:
            raise BadInputError(f"machine state has unknown status {st.status!r}")
        if not st.cpus:
            raise BadInputError("machine state lists no CPUs")
        return st


def load_state(directory: str) -> MachineState:
    path = os.path.join(directory, STATE_FILE)
    if not os.path.isdir(directory):
        raise BadInputError(f"{directory} is not a machine directory (no such directory)")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BadInputError(f"{directory} is not a machine directory (no {STATE_FILE})") from None
    except OSError as exc:
        raise BadInputError(f"{path} cannot be read as the machine state: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadInputError(f"{path} is not a regular file")
        if os.fstat(fd).st_size > MAX_STATE_SIZE:
            raise BadInputError(f"{path} is larger than {MAX_STATE_SIZE >> 20} MiB: not a machine state")
        with os.fdopen(fd, encoding="utf-8") as fh:
            fd = -1
            data = json.load(fh)
    except (ValueError, RecursionError) as exc:   # JSONDecodeError, UnicodeDecodeError, huge numbers, deep nesting
        raise BadInputError(f"{path} is not valid JSON: {exc}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    return MachineState.from_json(data)


def dump_state(state: MachineState) -> str:
    return json.dumps(state.to_json(), indent=2) + "\n"
