"""Issue 16, points 1-3: opening is reading, one writer at a time, every state change a transaction.

  * a machine directory whose memory.img is a symlink to a victim file, with a crafted kexec
    load journal (and a crafted transaction journal): every command leaves the victim
    byte-identical and fails with one line; a crafted journal beside a real image is refused
    and nothing is replayed;
  * a reading command on an interrupted machine says so and writes nothing; the next writing
    command rolls back (or completes) and says which;
  * a second writer waits with a message on stderr, or fails at once with --no-wait (exit 5);
    two concurrent `kexec-s390 load`s, and a load beside hotplug / `sadump ipl`, all succeed one
    after the other: checksums verify and machine.json holds every reported success;
  * SIGKILL, ENOSPC and EIO at many points of `s390-machine panic`, `sadump ipl` (kdump path)
    and each hotplug: afterwards `s390-machine show` names the state; the machine is exactly
    before (memory and state identical) or exactly after (the kdump kernel's view of old
    memory verifies page for page against the pre-crash memory, panic pages aside), and a
    `sadump ipl` full dump verifies page for page or is refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import struct
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, cli_json, copy_machine, run_cli, tree_digest
from tests.realdata import debian_kernel, make_initrd
from tests.test_faults import FaultyWrites, _kill_during, _timed, run_in_process, small_fs  # noqa: F401

MIB = 1 << 20
PAGE = 4096
ZERO = hashlib.sha1(bytes(PAGE)).digest()
# the acceptance runs: FAULTS_KILLS=20 TXN_ROUNDS=20 TXN_ALL_POINTS=1 (a few minutes each loop)
SEED = int(os.environ.get("FAULTS_SEED", "390"))
KILLS = int(os.environ.get("FAULTS_KILLS", "3"))
ROUNDS = int(os.environ.get("TXN_ROUNDS", "3"))
ALL_POINTS = os.environ.get("TXN_ALL_POINTS", "") not in ("", "0")


# -- machines ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel():
    return debian_kernel()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("txn")
    return {"dir": str(d), "initrd": make_initrd(str(d / "initrd.img"), payload_size=MIB),
            "initrd2": make_initrd(str(d / "initrd2.img"), payload_size=9 * MIB)}


@pytest.fixture(scope="module")
def base(files):
    """A 256 MiB, 2-CPU machine with 64 MiB crashkernel and no kdump loaded."""
    path = os.path.join(files["dir"], "base")
    run_cli("s390_machine.cli", "create", path, "--memory", "256M", "--cpus", "2", "--crashkernel", "64M",
            check=True)
    return path


@pytest.fixture(scope="module")
def loaded(base, kernel, files):
    """`base` with kdump loaded (a 9 MiB initrd: the swap has several chunks)."""
    path = copy_machine(base, os.path.join(files["dir"], "loaded"))
    run_cli("kexec_s390.cli", "load", "-p", kernel, "--initrd", files["initrd2"], "--machine", path, check=True)
    return path


def load_args(kernel, initrd, machine, *extra):
    return ["load", "-p", kernel, "--initrd", initrd, "--machine", machine, "--no-progress", *extra]


def cmd(module, args):
    return [sys.executable, "-m", module, *args]


def new_device(directory: str, name: str = "dev.img") -> str:
    path = os.path.join(directory, name)
    run_cli("zipl_sadump.cli", "build", "--device", path, "--size", "300M", check=True)
    return path


def one_line(proc_or_err) -> str:
    err = proc_or_err if isinstance(proc_or_err, str) else proc_or_err.stderr
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- pages ---------------------------------------------------------------------------------------


def image_pages(path: str) -> dict[int, bytes]:
    """Page number -> sha1 of every page of a memory image that is not all zero."""
    from dumpkit.fileio import data_extents
    out = {}
    fd = os.open(path, os.O_RDONLY)
    try:
        for s, e in data_extents(fd, os.fstat(fd).st_size):
            for pos in range(s - s % MIB, e, MIB):
                data = os.pread(fd, MIB, pos)
                for p in range(0, len(data), PAGE):
                    d = hashlib.sha1(data[p:p + PAGE]).digest()
                    if d != ZERO:
                        out[(pos + p) // PAGE] = d
    finally:
        os.close(fd)
    return out


def full_dump_pages(dev: str) -> dict[int, bytes]:
    from zipl_sadump.device import read_devices
    from meminfo_abi.s390_dump_reader import open_device_dump as open_dump
    out = {}
    with open_dump(read_devices([dev])) as dump:
        for addr, data in dump.units():
            for p in range(0, len(data), PAGE):
                d = hashlib.sha1(data[p:p + PAGE]).digest()
                if d != ZERO:
                    out[(addr + p) // PAGE] = d
    return out


def kdump_pages(machine: str) -> tuple[dict[int, bytes], set[int]]:
    """The kdump kernel's view of old memory (/proc/vmcore, the swap undone): page digests, and
    the pages it leaves out (the crashkernel)."""
    from s390_machine.machine import Machine
    from vmcore.kdump import kdump_dump
    out = {}
    with Machine.open(machine, "read") as m, kdump_dump(m) as dump:
        absent = {p for s, e in dump.absent_ranges() for p in range(s // PAGE, e // PAGE)}
        for addr, data in dump.iter_data(MIB):
            for p in range(0, len(data), PAGE):
                d = hashlib.sha1(data[p:p + PAGE]).digest()
                if d != ZERO:
                    out[(addr + p) // PAGE] = d
    return out, absent


def differing(a: dict[int, bytes], b: dict[int, bytes], skip: set[int] = frozenset()) -> set[int]:
    return {p for p in set(a) | set(b) if p not in skip and a.get(p, ZERO) != b.get(p, ZERO)}


# -- 1. opening is reading -----------------------------------------------------------------------

_KJ_HEAD = struct.Struct(">8sIIQ")
_KJ_ENTRY = struct.Struct(">QQq")
_KJ_FOOT = struct.Struct(">QI4x8s")


def crafted_load_journal(memory_size: int, entries: list[tuple[int, int, int]], data: bytes = b"") -> bytes:
    """A kexec load journal as a killed load leaves it, with the entries an attacker chooses."""
    head = _KJ_HEAD.pack(b"S390KJNL", 1, 0, memory_size) + data
    return head + b"".join(_KJ_ENTRY.pack(*e) for e in entries) + _KJ_FOOT.pack(len(head), len(entries), b"KJNL-END")


def crafted_txn_journal(memory_size: int, records: list[tuple[bytes, int, int, bytes]]) -> bytes:
    import zlib
    head = struct.pack(">8sIIQ16s16s", b"S390TXN1", 1, 0, memory_size, b"0123456789abcdef", b"panic")
    out = head
    for tag, addr, length, payload in records:
        crc = zlib.crc32(payload, zlib.crc32(struct.pack(">4sIQQI", tag, 0, addr, length, 0)))
        out += struct.pack(">4sIQQI", tag, 0, addr, length, crc) + payload
    return out


def every_command(machine: str, kernel: str, initrd: str, dev: str, out: str) -> list[tuple[str, list[str]]]:
    return [
        ("s390_machine.cli", ["show", machine]),
        ("s390_machine.cli", ["show", machine, "--json"]),
        ("kexec_s390.cli", ["status", "--machine", machine]),
        ("kexec_s390.cli", load_args(kernel, initrd, machine)),
        ("kexec_s390.cli", load_args(kernel, initrd, machine, "--dry-run")),
        ("kexec_s390.cli", ["unload", "-p", "--machine", machine]),
        ("s390_machine.cli", ["panic", machine]),
        ("s390_machine.cli", ["hotplug", machine, "--add-cpu"]),
        ("s390_machine.cli", ["hotplug", machine, "--remove-cpu", "1"]),
        ("s390_machine.cli", ["hotplug", machine, "--add-memory", "1M"]),
        ("s390_machine.cli", ["recover", machine]),
        ("vmcore.cli", ["save", "--machine", machine, "-o", out, "--no-progress"]),
        ("zipl_sadump.cli", ["ipl", "--device", dev, "--machine", machine, "--no-map", "--no-progress"]),
        ("zipl_sadump.cli", ["show", "--device", dev, "--for-machine", machine]),
    ]


@pytest.fixture(scope="module")
def victim_case(base, files, kernel):
    """A machine directory whose memory.img is a symlink to a victim file, beside a crafted
    kexec load journal (one entry writing chosen bytes at a chosen offset of the victim, one
    punching a hole over all of it) and a crafted transaction journal."""
    d = os.path.join(files["dir"], "victim-case")
    os.makedirs(d)
    victim = os.path.join(files["dir"], "victim.bin")
    rng = random.Random(SEED)
    size = 256 * MIB
    with open(victim, "wb") as fh:
        fh.truncate(size)
        for off in range(0, size, 16 * MIB):
            fh.seek(off)
            fh.write(rng.randbytes(4096))
    with open(os.path.join(base, "machine.json")) as src, open(os.path.join(d, "machine.json"), "w") as dst:
        dst.write(src.read())
    os.symlink(victim, os.path.join(d, "memory.img"))
    evil = b"OWNED" * 100
    with open(os.path.join(d, "kexec-load.journal"), "wb") as fh:
        fh.write(crafted_load_journal(size, [(0x1000, len(evil), _KJ_HEAD.size), (0, size, -1)], evil))
    with open(os.path.join(d, "transaction.journal"), "wb") as fh:
        fh.write(crafted_txn_journal(size, [(b"UNDO", 0x2000, len(evil), evil), (b"HOLE", 0, size, b"")]))
    return d, victim


def test_symlinked_image_with_crafted_journals_leaves_the_victim_alone(victim_case, kernel, files, tmp_path):
    machine, victim = victim_case
    before = tree_digest(os.path.dirname(victim))["victim.bin"]
    dev = new_device(str(tmp_path))
    dev_before = tree_digest(str(tmp_path))["dev.img"]
    for module, args in every_command(machine, kernel, files["initrd"], dev, str(tmp_path / "out.elf")):
        proc = run_cli(module, *args)
        assert proc.returncode != 0, (args, proc.stdout)
        line = one_line(proc)
        if args[0] not in ("show",) or "--for-machine" not in args:
            assert "symbolic link" in line or "damaged" in line, (args, line)
        assert tree_digest(os.path.dirname(victim))["victim.bin"] == before, f"{args} changed the victim"
        assert os.path.islink(os.path.join(machine, "memory.img"))
    assert tree_digest(str(tmp_path))["dev.img"] == dev_before
    assert not os.path.exists(tmp_path / "out.elf")


@pytest.mark.parametrize("journal", [
    "load-entry-outside-memory", "load-negative-offset", "load-offset-outside-journal", "load-other-memory-size",
    "txn-undo-outside-memory", "txn-bad-crc", "txn-swap-outside-memory", "journal-is-a-symlink"])
def test_crafted_journal_beside_a_real_image_is_refused_and_never_replayed(journal, base, kernel, files, tmp_path):
    machine = copy_machine(base, str(tmp_path / "m"))
    size = 256 * MIB
    data = b"X" * 4096
    if journal == "load-entry-outside-memory":
        name, raw = "kexec-load.journal", crafted_load_journal(size, [(size - 4096, 8192, _KJ_HEAD.size)], data * 2)
    elif journal == "load-negative-offset":
        name, raw = "kexec-load.journal", crafted_load_journal(size, [(0x1000, 4096, -2)], data)
    elif journal == "load-offset-outside-journal":
        name, raw = "kexec-load.journal", crafted_load_journal(size, [(0x1000, 4096, 1 << 40)], data)
    elif journal == "load-other-memory-size":
        name, raw = "kexec-load.journal", crafted_load_journal(1 << 40, [((1 << 40) - 4096, 4096, -1)])
    elif journal == "txn-undo-outside-memory":
        name, raw = "transaction.journal", crafted_txn_journal(size, [(b"UNDO", size, 4096, data)])
    elif journal == "txn-bad-crc":
        raw = bytearray(crafted_txn_journal(size, [(b"UNDO", 0x3000, 4096, data), (b"HOLE", 0, 8192, b"")]))
        raw[100] ^= 1
        name, raw = "transaction.journal", bytes(raw)
    elif journal == "txn-swap-outside-memory":
        swap = json.dumps({"base": size, "size": 64 * MIB, "regions": [], "oldmem": [0, 0], "state": {}}).encode()
        name, raw = "transaction.journal", crafted_txn_journal(size, [(b"SWAP", 0, len(swap), swap)])
    else:
        target = tmp_path / "elsewhere.journal"
        target.write_bytes(crafted_load_journal(size, [(0x1000, 4096, _KJ_HEAD.size)], data))
        os.symlink(target, os.path.join(machine, "kexec-load.journal"))
        name, raw = None, None
    if name:
        with open(os.path.join(machine, name), "wb") as fh:
            fh.write(raw)
    before = tree_digest(machine)
    dev = new_device(str(tmp_path))
    commands = every_command(machine, kernel, files["initrd"], dev, str(tmp_path / "out.elf"))
    if journal not in ("load-entry-outside-memory", "txn-undo-outside-memory"):
        commands = commands[:3] + commands[10:11]        # show, status and a writer (recover)
    for module, args in commands:
        if "--for-machine" in args:
            continue                     # reads only the machine's memory size
        proc = run_cli(module, *args)
        assert proc.returncode == 3, (args, proc.returncode, proc.stderr)
        line = one_line(proc)
        assert "journal" in line, line
        assert tree_digest(machine) == before, f"{args} changed the machine"


def _interrupted_load(loaded, kernel, files, tmp_path, monkeypatch, capsys) -> tuple[str, dict]:
    """A kexec load that died halfway (the disk failed for good): its journal is left."""
    machine = copy_machine(loaded, str(tmp_path / "m"))
    before = tree_digest(machine)
    mem = os.path.join(machine, "memory.img")
    f = FaultyWrites(monkeypatch, lambda p: p == mem, 2 * MIB)
    rc, err = run_in_process("kexec_s390.cli", "kexec-s390", load_args(kernel, files["initrd"], machine), capsys)
    monkeypatch.undo()
    assert rc == 5 and f.failed >= 2, err
    assert os.path.exists(os.path.join(machine, "kexec-load.journal"))
    return machine, before


def test_reading_commands_report_an_interrupted_load_and_write_nothing(loaded, kernel, files, tmp_path,
                                                                       monkeypatch, capsys):
    machine, before = _interrupted_load(loaded, kernel, files, tmp_path, monkeypatch, capsys)
    interrupted = tree_digest(machine)
    assert interrupted != before
    for module, args in [("s390_machine.cli", ["show", machine]), ("kexec_s390.cli", ["status", "--machine", machine]),
                         ("kexec_s390.cli", load_args(kernel, files["initrd"], machine, "--dry-run"))]:
        proc = run_cli(module, *args)
        if "--dry-run" not in args:
            assert one_line(proc) == f"warning: {machine}: interrupted kexec load; the next writing command " \
                                     "rolls it back", proc.stderr
        assert tree_digest(machine) == interrupted, f"{args} wrote"
    shown = cli_json("s390_machine.cli", "show", machine)
    assert shown["interrupted"] == "interrupted kexec load; the next writing command rolls it back"
    # the next writing command rolls it back and says so
    proc = run_cli("s390_machine.cli", "recover", machine)
    assert proc.returncode == 0, proc.stderr
    assert one_line(proc).startswith(f"{machine}: rolled back an interrupted kexec load")
    assert tree_digest(machine) == before
    assert cli_json("kexec_s390.cli", "status", "--machine", machine)["kdump_intact"]


# -- 2. one writer at a time ---------------------------------------------------------------------


class HeldLock:
    def __init__(self, path: str, exclusive: bool = True):
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def test_a_second_writer_waits_or_fails_at_once_with_no_wait(base, kernel, files, tmp_path):
    machine = copy_machine(base, str(tmp_path / "m"))
    lock = HeldLock(machine)
    try:
        before = tree_digest(machine)
        for module, args in [("kexec_s390.cli", load_args(kernel, files["initrd"], machine, "--no-wait")),
                             ("s390_machine.cli", ["hotplug", machine, "--add-cpu", "--no-wait"]),
                             ("s390_machine.cli", ["panic", machine, "--no-wait"]),
                             ("s390_machine.cli", ["show", machine, "--no-wait"]),
                             ("kexec_s390.cli", ["status", "--machine", machine, "--no-wait"])]:
            proc = run_cli(module, *args)
            assert proc.returncode == 5, (args, proc.stderr)
            assert one_line(proc).endswith(f"machine {machine} is in use by another command (--no-wait)")
        assert tree_digest(machine) == before
        # without --no-wait: a message, then it waits for the lock and does its work
        proc = subprocess.Popen(cmd("s390_machine.cli", ["hotplug", machine, "--add-cpu", "--json"]), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        assert line == f"waiting for machine {machine}: another command is using it\n", line
        time.sleep(0.3)
        assert proc.poll() is None, "it did not wait"
        assert tree_digest(machine) == before
    finally:
        lock.release()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == "", err
    assert json.loads(out) == {"added_cpu": 2}
    # readers share the lock: a held shared lock does not stop another reader
    lock = HeldLock(machine, exclusive=False)
    try:
        proc = run_cli("s390_machine.cli", "show", machine, "--no-wait", "--json")
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        proc = run_cli("s390_machine.cli", "hotplug", machine, "--add-cpu", "--no-wait")
        assert proc.returncode == 5
    finally:
        lock.release()


def _events(machine: str, name: str) -> list[dict]:
    with open(os.path.join(machine, "machine.json")) as fh:
        return [e for e in json.load(fh)["events"] if e["event"] == name]


def _together(*argvs) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen(a, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in argvs]
    out = []
    for p in procs:
        o, e = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, o, e))
    return out


def _concurrent_loads(base, kernel, files, tmp_path, rounds):
    machine = copy_machine(base, str(tmp_path / "m"))
    for r in range(rounds):
        n = len(_events(machine, "kexec_load"))
        a, b = _together(cmd("kexec_s390.cli", load_args(kernel, files["initrd"], machine)),
                         cmd("kexec_s390.cli", load_args(kernel, files["initrd2"], machine)))
        assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
        for p in (a, b):
            assert p.stderr in ("", f"waiting for machine {machine}: another command is using it\n"), p.stderr
        status = cli_json("kexec_s390.cli", "status", "--machine", machine)
        assert status["kdump_intact"], status["reason"]
        assert len(_events(machine, "kexec_load")) == n + 2, f"round {r}: a reported load is missing"


@pytest.mark.slow
def test_two_concurrent_loads(base, kernel, files, tmp_path):
    _concurrent_loads(base, kernel, files, tmp_path, ROUNDS)


def _load_beside(other: str, base, kernel, files, tmp_path, rounds):
    for r in range(rounds):
        machine = copy_machine(base, str(tmp_path / f"m{r}"))
        if other == "hotplug":
            argv = cmd("s390_machine.cli", ["hotplug", machine, "--add-cpu", "--json"])
        else:
            dev = new_device(str(tmp_path), f"dev{r}.img")
            argv = cmd("zipl_sadump.cli", ["ipl", "--device", dev, "--machine", machine, "--kdump", "off",
                                           "--no-map", "--no-progress"])
        load, o = _together(cmd("kexec_s390.cli", load_args(kernel, files["initrd"], machine)), argv)
        assert load.returncode == 0 and o.returncode == 0, (load.stderr, o.stderr)
        assert cli_json("kexec_s390.cli", "status", "--machine", machine)["kdump_intact"]
        assert len(_events(machine, "kexec_load")) == 1
        state = cli_json("s390_machine.cli", "show", machine)
        if other == "hotplug":
            assert [c["address"] for c in state["cpus"]] == [0, 1, 2]
            assert len(_events(machine, "hotplug")) == 1
        else:
            assert state["status"] == "dumped"
            assert any(e["detail"].startswith("full dump") for e in _events(machine, "sadump"))


@pytest.mark.slow
@pytest.mark.parametrize("other", ["hotplug", "sadump-ipl"])
def test_load_beside_hotplug_and_sadump_ipl(other, base, kernel, files, tmp_path):
    _load_beside(other, base, kernel, files, tmp_path, min(ROUNDS, 2) if other == "sadump-ipl" else ROUNDS)


# -- 3. every state change is a transaction ------------------------------------------------------

OPS = {
    "panic": ("s390_machine.cli", lambda m, dev: ["panic", m]),
    "ipl-kdump": ("zipl_sadump.cli", lambda m, dev: ["ipl", "--device", dev, "--machine", m, "--no-map",
                                                     "--no-progress"]),
    "add-cpu": ("s390_machine.cli", lambda m, dev: ["hotplug", m, "--add-cpu"]),
    "remove-cpu": ("s390_machine.cli", lambda m, dev: ["hotplug", m, "--remove-cpu", "1"]),
    "add-memory": ("s390_machine.cli", lambda m, dev: ["hotplug", m, "--add-memory", "16M"]),
    "unload": ("kexec_s390.cli", lambda m, dev: ["unload", "-p", "--machine", m]),
}


@pytest.fixture(scope="module")
def references(loaded, files):
    """Per operation: the machine before, and the pages each change may differ in (from a run that
    was not interrupted): the kdump view of a panic against the pre-crash memory, a full dump
    against it."""
    d = os.path.join(files["dir"], "refs")
    os.makedirs(d)
    pre = image_pages(os.path.join(loaded, "memory.img"))
    refs = {"pre": pre, "pre_tree": tree_digest(loaded)}
    for op in ("panic", "ipl-kdump"):
        m = copy_machine(loaded, os.path.join(d, op))
        dev = new_device(d, f"{op}.img")
        module, argv = OPS[op]
        run_cli(module, *argv(m, dev), check=True)
        got, absent = kdump_pages(m)
        refs[op] = differing(pre, got, absent)
        refs["absent"] = absent
        refs[op + "-after"] = tree_digest(m)
    m = copy_machine(loaded, os.path.join(d, "full"))
    dev = new_device(d, "full.img")
    run_cli("zipl_sadump.cli", "ipl", "--device", dev, "--machine", m, "--kdump", "off", "--no-map",
            "--no-progress", check=True)
    refs["full"] = differing(pre, full_dump_pages(dev))
    return refs


def check_after_interruption(op: str, machine: str, tmp_path, refs, name: str) -> str:
    """`show` names the state; the machine is exactly before or exactly after; a full dump
    verifies page for page against the pre-crash memory (store-status pages aside) or is refused."""
    proc = run_cli("s390_machine.cli", "show", machine, "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    if shown["interrupted"]:
        assert one_line(proc) == f"warning: {machine}: {shown['interrupted']}"
        assert shown["interrupted"].startswith("interrupted "), shown["interrupted"]
        assert "the next writing command" in shown["interrupted"]
    proc = run_cli("s390_machine.cli", "recover", machine, "--json")
    assert proc.returncode == 0, proc.stderr
    recovered = json.loads(proc.stdout)["recovered"]
    how = "clean"
    if shown["interrupted"]:
        assert proc.stderr.strip().splitlines()[-1].startswith(f"{machine}: "), proc.stderr
        how = {"rolled": "rolled back", "completed": "completed", "the": "committed",
               "removed": "nothing done"}[recovered.split()[0]]
    assert not os.path.exists(os.path.join(machine, "transaction.journal"))
    state = cli_json("s390_machine.cli", "show", machine)
    assert state["interrupted"] is None
    if op in ("panic", "ipl-kdump"):
        if tree_digest(machine) == refs["pre_tree"]:
            outcome = "before"
        else:
            assert how != "rolled back", "rolled back, yet not exactly before"
            assert state["status"] == "kdump", state["status"]
            got, absent = kdump_pages(machine)
            assert absent == refs["absent"]
            bad = differing(refs["pre"], got, absent) - refs[op]
            assert not bad, f"{len(bad)} pages of old memory differ after the interrupted {op}"
            outcome = "after"
        dev = new_device(str(tmp_path), f"full-{name}.img")
        proc = run_cli("zipl_sadump.cli", "ipl", "--device", dev, "--machine", machine, "--kdump", "off",
                       "--no-map", "--no-progress")
        if outcome == "after":
            assert proc.returncode == 3 and "kdump" in one_line(proc), proc.stderr    # refused
        else:
            assert proc.returncode == 0, proc.stderr
            bad = differing(refs["pre"], full_dump_pages(dev)) - refs["full"]
            assert not bad, f"{len(bad)} pages of the full dump differ from the pre-crash memory"
        return f"{outcome}/{how}"
    # hotplug / unload: exactly before, or exactly what the command does
    if tree_digest(machine) == refs["pre_tree"]:
        return f"before/{how}"
    assert how != "rolled back", "rolled back, yet not exactly before"
    assert image_pages(os.path.join(machine, "memory.img")) != refs["pre"] or op == "add-memory"
    if op == "add-cpu":
        assert [c["address"] for c in state["cpus"]] == [0, 1, 2] and len(_events(machine, "hotplug")) == 1
    elif op == "remove-cpu":
        assert [c["address"] for c in state["cpus"]] == [0] and len(_events(machine, "hotplug")) == 1
    elif op == "add-memory":
        assert state["memory_size"] == 272 * MIB == os.path.getsize(os.path.join(machine, "memory.img"))
        assert image_pages(os.path.join(machine, "memory.img")) == refs["pre"]
        assert len(_events(machine, "hotplug")) == 1
    elif op == "unload":
        proc = run_cli("kexec_s390.cli", "status", "--machine", machine, "--json")
        assert proc.returncode == 1 and not json.loads(proc.stdout)["loaded"], proc.stderr
        assert len(_events(machine, "kexec_unload")) == 1
    return f"after/{how}"


@pytest.fixture(scope="module")
def refs(references):
    return references


def _eio_points(op: str) -> list[int]:
    """Byte counts of memory.img writes after which the disk fails for good (the process dies
    there as far as the machine can tell: neither it nor its own rollback gets further)."""
    if op in ("panic", "ipl-kdump"):
        if ALL_POINTS:
            return [0, 600, 5000, 20000, 4 * MIB + 100, 12 * MIB, 30 * MIB, 45 * MIB, 60 * MIB, 75 * MIB]
        return [600, 12 * MIB, 60 * MIB]
    return [0, 8, 4096] if ALL_POINTS else [0]


@pytest.mark.slow
@pytest.mark.parametrize("op", ["panic", "ipl-kdump", "add-cpu", "remove-cpu", "unload"])
def test_eio_at_many_points_leaves_before_or_after(op, loaded, refs, tmp_path, monkeypatch, capsys):
    outcomes = []
    for i, after in enumerate(_eio_points(op)):
        machine = copy_machine(loaded, str(tmp_path / f"m{i}"))
        dev = new_device(str(tmp_path), f"dev{i}.img") if op == "ipl-kdump" else None
        mem = os.path.join(machine, "memory.img")
        module, argv = OPS[op]
        f = FaultyWrites(monkeypatch, lambda p: p == mem, after)
        prog = {"s390_machine.cli": "s390-machine", "zipl_sadump.cli": "sadump", "kexec_s390.cli": "kexec-s390"}
        rc, err = run_in_process(module, prog[module], argv(machine, dev), capsys)
        monkeypatch.undo()
        if not f.failed:
            assert rc == 0, err                  # the command wrote less than `after`
        else:
            assert rc == 5 and "Input/output error" in err.strip().splitlines()[-1], err
        outcomes.append(check_after_interruption(op, machine, tmp_path, refs, f"eio{i}"))
    print(f"eio {op}: {outcomes}")
    assert any(o.startswith("before/") for o in outcomes), "no failure landed before the commit point"
    if op in ("panic", "ipl-kdump"):
        assert "after/completed" in outcomes, "no failure landed inside the swap"


@pytest.mark.slow
@pytest.mark.parametrize("op", ["panic", "ipl-kdump", "add-cpu", "remove-cpu", "add-memory"])
def test_sigkill_at_random_points(op, loaded, refs, tmp_path):
    _sigkills(op, loaded, refs, tmp_path, KILLS)


def _sigkills(op, loaded, refs, tmp_path, kills):
    rng = random.Random(SEED + 10 + list(OPS).index(op))
    module, argv = OPS[op]

    def journal(machine):
        return lambda: os.path.exists(os.path.join(machine, "transaction.journal"))

    ref = copy_machine(loaded, str(tmp_path / "ref"))
    window = _timed(cmd(module, argv(ref, new_device(str(tmp_path), "ref.img") if op == "ipl-kdump" else None)),
                    journal(ref), phase=True)
    outcomes = []
    for i in range(kills):
        machine = copy_machine(loaded, str(tmp_path / f"m{i}"))
        dev = new_device(str(tmp_path), f"dev{i}.img") if op == "ipl-kdump" else None
        _kill_during(cmd(module, argv(machine, dev)), journal(machine), window, rng)
        outcomes.append(check_after_interruption(op, machine, tmp_path, refs, f"kill{i}"))
    print(f"sigkill {op}: {outcomes} (window {window:.3f} s)")


@pytest.mark.slow
@pytest.mark.parametrize("op", ["panic", "ipl-kdump", "add-memory", "add-cpu"])
def test_enospc_at_many_points(op, small_fs, loaded, refs, tmp_path):
    """The machine on a tmpfs with little room left: the journal, the swap into holes of the
    crashkernel or machine.json find no space.  Afterwards (and once there is room again for
    the swap to be completed) the machine is before or after, the full dump verifies or is refused."""
    if op in ("panic", "ipl-kdump"):
        frees = ([0, 8 * 1024, 64 * 1024, 512 * 1024, 3 * MIB, 10 * MIB, 20 * MIB, 35 * MIB, 50 * MIB, 70 * MIB]
                 if ALL_POINTS else [8 * 1024, 3 * MIB])
    else:
        frees = [0, 4096, 16 * 1024] if ALL_POINTS else [4096]
    outcomes = []
    for i, free in enumerate(frees):
        fs = small_fs.mount(f"fs{i}")
        machine = copy_machine(loaded, os.path.join(fs, "m"))
        dev = new_device(str(tmp_path), f"dev{i}.img") if op == "ipl-kdump" else None
        small_fs.limit(fs, free)
        module, argv = OPS[op]
        proc = run_cli(module, *argv(machine, dev))
        if proc.returncode != 0:
            assert proc.returncode == 5 and "No space left on device" in proc.stderr.strip().splitlines()[-1], \
                proc.stderr
        small_fs.limit(fs, 400 * MIB)
        outcomes.append(check_after_interruption(op, machine, tmp_path, refs, f"enospc{i}"))
    print(f"enospc {op}: {outcomes}")


def test_enospc_while_a_swap_cannot_be_completed_refuses_the_full_dump(small_fs, loaded, refs, tmp_path):
    """The swap ran out of space halfway and there is still no space: every writer (the full dump
    included) refuses with one line (exit 5) instead of dumping scrambled memory; a reader names
    the state; once there is room, the next writer completes the swap."""
    fs = small_fs.mount()
    machine = copy_machine(loaded, os.path.join(fs, "m"))
    small_fs.limit(fs, 20 * MIB)           # the swap copies 64 MiB into the crashkernel's holes
    proc = run_cli("s390_machine.cli", "panic", machine)
    assert proc.returncode == 5 and "No space left on device" in proc.stderr, proc.stderr
    shown = run_cli("s390_machine.cli", "show", machine, "--json")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["interrupted"] == \
        "interrupted panic (crashkernel swap under way); the next writing command completes it"
    dev = new_device(str(tmp_path))
    before_dev = tree_digest(str(tmp_path))["dev.img"]
    proc = run_cli("zipl_sadump.cli", "ipl", "--device", dev, "--machine", machine, "--kdump", "off", "--no-map",
                   "--no-progress")
    assert proc.returncode == 5 and "No space left on device" in one_line(proc), proc.stderr
    assert tree_digest(str(tmp_path))["dev.img"] == before_dev
    proc = run_cli("vmcore.cli", "save", "--machine", machine, "-o", str(tmp_path / "v.elf"), "--no-progress")
    assert proc.returncode == 3 and "crashkernel swap under way" in one_line(proc)
    small_fs.limit(fs, 400 * MIB)
    assert check_after_interruption("panic", machine, tmp_path, refs, "late") == "after/completed"
