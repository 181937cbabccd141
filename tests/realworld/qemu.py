"""A qemu-system-s390x guest driven the way a user drives one: QMP over a unix socket (a
tiny client on the json module) and the console over a unix-socket chardev.

Every wait is bounded; `Guest` is a context manager that kills QEMU on every exit path
(and an atexit hook catches what a context manager cannot, e.g. SystemExit in a signal
handler).  Only unix sockets: the guest has no network.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time

QEMU = "qemu-system-s390x"

_LIVE: set[subprocess.Popen] = set()


def _kill_all() -> None:
    for proc in list(_LIVE):
        _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
    _LIVE.discard(proc)


atexit.register(_kill_all)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the harness dies, even by SIGKILL."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class GuestError(Exception):
    """QEMU failed, exited early or a wait timed out; the message says which."""


def _connect(path: str, what: str, timeout: float, proc: subprocess.Popen | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            if proc is not None and proc.poll() is not None:
                sock.close()
                raise GuestError(f"QEMU exited ({proc.returncode}) before its {what} socket was up") from None
            if time.monotonic() > deadline:
                sock.close()
                raise GuestError(f"{what} socket {path} did not appear within {timeout:.0f} s") from None
            time.sleep(0.05)


class Qmp:
    """QMP client: one request at a time, events kept in a list."""

    def __init__(self, path: str, timeout: float, proc: subprocess.Popen | None = None):
        self.sock = _connect(path, "QMP", timeout, proc)
        self.buf = b""
        self.events: list[dict] = []
        greeting = self._recv(timeout)
        if "QMP" not in greeting:
            raise GuestError(f"unexpected QMP greeting {greeting}")
        self.execute("qmp_capabilities", timeout=timeout)

    def _recv(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GuestError(f"no QMP answer within {timeout:.0f} s")
            r, _, _ = select.select([self.sock], [], [], min(left, 1.0))
            if r:
                data = self.sock.recv(65536)
                if not data:
                    raise GuestError("QEMU closed the QMP connection")
                self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command: str, timeout: float = 30, **arguments) -> object:
        msg = {"execute": command, "id": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._recv(max(0.1, deadline - time.monotonic()))
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise GuestError(f"QMP {command} failed: {reply['error'].get('desc', reply['error'])}")
            return reply.get("return")

    def hmp(self, line: str, timeout: float = 30) -> str:
        return str(self.execute("human-monitor-command", timeout=timeout, **{"command-line": line}))

    def wait_event(self, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev["event"] == name:
                    self.events.remove(ev)
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                raise GuestError(f"no QMP event {name} within {timeout:.0f} s")
            try:
                reply = self._recv(min(left, 1.0))
            except GuestError as exc:
                if "no QMP answer" in str(exc):
                    continue
                raise
            if "event" in reply:
                self.events.append(reply)

    def poll_events(self) -> list[dict]:
        """Read whatever events QEMU sent meanwhile (never blocks)."""
        while True:
            r, _, _ = select.select([self.sock], [], [], 0)
            if not r:
                break
            data = self.sock.recv(65536)
            if not data:
                break
            self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            msg = json.loads(line)
            if "event" in msg:
                self.events.append(msg)
        return self.events

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Console:
    """The guest console (a unix-socket chardev): a reader thread collects everything."""

    def __init__(self, path: str, timeout: float, proc: subprocess.Popen | None = None):
        self.sock = _connect(path, "console", timeout, proc)
        self.text = ""
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()

    def _reader(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.closed = True
                return
            with self.lock:
                self.text += data.decode("utf-8", "replace").replace("\r\n", "\n")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def wait_for(self, pattern: str, timeout: float, proc: subprocess.Popen | None = None,
                 start: int = 0, what: str | None = None, qmp: "Qmp | None" = None) -> re.Match:
        """The first match of `pattern` (a regex, multiline) in the console output after `start`;
        with `qmp`, a guest panic (disabled wait) ends the wait at once."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                m = rx.search(self.text, start)
            if m:
                return m
            if proc is not None and proc.poll() is not None:
                raise GuestError(f"QEMU exited ({proc.returncode}) while waiting for {what or pattern!r}; "
                                 f"console tail: {self.tail()}")
            if qmp is not None and any(e["event"] == "GUEST_PANICKED" for e in qmp.poll_events()):
                raise GuestError(f"the guest panicked (disabled wait) while waiting for {what or pattern!r}; "
                                 f"console tail: {self.tail()}")
            if time.monotonic() > deadline:
                raise GuestError(f"timeout after {timeout:.0f} s waiting for {what or pattern!r} on the console; "
                                 f"console tail: {self.tail()}")
            time.sleep(0.1)

    def tail(self, n: int = 3) -> str:
        with self.lock:
            lines = [ln for ln in self.text.splitlines() if ln.strip()]
        return " | ".join(lines[-n:]) or "(nothing)"

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Guest:
    """One qemu-system-s390x run (s390-ccw-virtio, TCG), started paused (-S)."""

    def __init__(self, workdir: str, *, kernel: str, initrd: str, append: str, memory_mb: int, cpus: int,
                 disk: str | None = None, timeout: float = 30):
        self.workdir = workdir
        self.qmp_path = os.path.join(workdir, "qmp.sock")
        self.con_path = os.path.join(workdir, "console.sock")
        self.log_path = os.path.join(workdir, "console.log")
        self.stderr_path = os.path.join(workdir, "qemu.stderr")
        for p in (self.qmp_path, self.con_path):
            if os.path.exists(p):
                os.unlink(p)
        self.argv = [
            QEMU, "-M", "s390-ccw-virtio", "-accel", "tcg", "-m", str(memory_mb), "-smp", str(cpus),
            "-nodefaults", "-display", "none", "-no-user-config", "-S",
            "-chardev", f"socket,id=con,path={self.con_path},server=on,wait=off,logfile={self.log_path}",
            "-device", "sclpconsole,chardev=con",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-kernel", kernel, "-initrd", initrd, "-append", append,
            "-action", "panic=pause",
        ]
        if disk:
            self.argv += ["-drive", f"file={disk},format=raw,if=none,id=vd0,cache=unsafe",
                          "-device", "virtio-blk-ccw,drive=vd0"]
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.qmp: Qmp | None = None
        self.console: Console | None = None

    def __enter__(self) -> "Guest":
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        _LIVE.add(self.proc)
        try:
            self.qmp = Qmp(self.qmp_path, self.timeout, self.proc)
            self.console = Console(self.con_path, self.timeout, self.proc)
        except GuestError as exc:
            raise GuestError(f"{exc}; {self.stderr_tail()}") from None
        return self

    def stderr_tail(self) -> str:
        try:
            with open(self.stderr_path, errors="replace") as fh:
                lines = [ln.strip() for ln in fh if ln.strip()]
        except OSError:
            lines = []
        return "QEMU stderr: " + (" | ".join(lines[-3:]) if lines else "(empty)")

    def start(self) -> None:
        self.qmp.execute("cont")

    def wait_for(self, pattern: str, timeout: float, what: str | None = None, start: int = 0,
                 fail_on_panic: bool = False) -> re.Match:
        return self.console.wait_for(pattern, timeout, self.proc, start=start, what=what,
                                     qmp=self.qmp if fail_on_panic else None)

    def quit(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.qmp.execute("quit", timeout=timeout)
        except GuestError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def __exit__(self, *exc) -> None:
        if self.qmp:
            self.qmp.close()
        if self.console:
            self.console.close()
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            _kill(self.proc)
        for p in (self.qmp_path, self.con_path):
            if os.path.exists(p):
                os.unlink(p)


def parse_info_registers(text: str) -> list[dict]:
    """HMP `info registers -a` of s390x: per CPU the PSW mask/address and the 16 GPRs
    (plus FPRs/CRs when printed), in the order QEMU lists the CPUs."""
    cpus: list[dict] = []
    cur: dict | None = None
    for line in text.splitlines():
        m = re.match(r"\s*CPU#(\d+)", line)
        if m:
            cur = {"index": int(m.group(1)), "gprs": {}, "crs": {}, "fprs": {}}
            cpus.append(cur)
            continue
        m = re.search(r"PSW=mask ([0-9a-fA-F]+) addr ([0-9a-fA-F]+)(?: cc\s+(\S+))?", line)
        if m:
            if cur is None:
                cur = {"index": 0, "gprs": {}, "crs": {}, "fprs": {}}
                cpus.append(cur)
            cur["psw_mask"], cur["psw_addr"] = int(m.group(1), 16), int(m.group(2), 16)
            cur["cc"] = m.group(3)
            continue
        for key, reg, val in re.findall(r"\b([RCF])(\d\d)=([0-9a-fA-F]{16})\b", line):
            if cur is not None:
                cur[{"R": "gprs", "C": "crs", "F": "fprs"}[key]][int(reg)] = int(val, 16)
    out = []
    for c in cpus:
        out.append({"index": c["index"], "psw_mask": c.get("psw_mask"), "psw_addr": c.get("psw_addr"),
                    "cc": c.get("cc"),
                    "gprs": [c["gprs"].get(i) for i in range(16)],
                    "crs": [c["crs"].get(i) for i in range(16)] if c["crs"] else None,
                    "fprs": [c["fprs"].get(i) for i in range(16)] if c["fprs"] else None})
    return out


PSW_CC_BITS = 0x0000300000000000     # PSW bits 18-19, the condition code


def psw_masks_agree(ours: int, qemu_cpu: dict) -> bool:
    """Our PSW mask (from a QEMU dump) against `info registers` of the same stopped instant.
    Under TCG QEMU keeps the condition code lazily (`cc CC_OP_ADD_64` where a settled one reads
    `cc 00`): `info registers` computes it for the mask it prints, while dump-guest-memory stores
    the mask as it stands, so for such a CPU the two agree on every bit but the condition code."""
    cc = qemu_cpu.get("cc")
    if cc is not None and not re.fullmatch(r"[0-3]|0[0-3]", cc):
        return (ours & ~PSW_CC_BITS) == (qemu_cpu["psw_mask"] & ~PSW_CC_BITS)
    return ours == qemu_cpu["psw_mask"]
