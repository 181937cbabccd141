"""Issue 19 on a real kernel with BTF: Debian's 6.12 (CONFIG_DEBUG_INFO_BTF=y, KASLR) panicked by
`echo c > /proc/sysrq-trigger` under QEMU (harness EXTRA_CONFIGS, panic.elf).

Peers: the kernel's own compile-time offsets in VMCOREINFO (OFFSET(), SIZE()), the console
log of the same panic (the CPU, PID and command that wrote to sysrq-trigger, its Call Trace),
the CPU count the guest's /init printed (every CPU has its idle task and its per-CPU kernel
threads: this boot log names no kernel thread itself, so those stand for "the kernel threads
the log mentions"), and the older kernels of the harness (no BTF: one line, exit 3).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.realworld import harness
from tests.realworld.conftest import Run, load_run
from tests.realworld.test_backtrace import call_trace

pytestmark = pytest.mark.realworld
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PANIC_LINE = re.compile(r"CPU: (\d+) (?:UID: \d+ )?PID: (\d+) Comm: (\S+)")


@pytest.fixture(scope="module")
def run612() -> Run:
    return load_run(harness.EXTRA_CONFIGS[0])


@pytest.fixture(scope="module")
def console(run612) -> str:
    with open(run612.path("console"), errors="replace") as fh:
        return fh.read()


@pytest.fixture(scope="module")
def ps(run612, vmcore_cli) -> dict:
    return vmcore_cli.json("ps", run612.path("panic_elf"))


def test_btf_offsets_agree_with_the_kernels_own_vmcoreinfo(run612):
    from vmcore import inspect
    from vmcore.btf import find_btf
    from vmcore.formats import open_dump
    with open_dump(run612.path("panic_elf")) as d:
        space = inspect.kernel_space(d)
        syms = inspect.kernel_symbols(space)
        addr, btf, how = find_btf(space.read, syms)
        entries = dict(d.attrs.vmcoreinfo.entries)

        class WithoutBtfSymbols:     # a kernel without CONFIG_KALLSYMS_ALL: found by its header
            def by_name(self, name):
                return None if name in ("__start_BTF", "__stop_BTF") else syms.by_name(name)
        scanned, btf2, how2 = find_btf(space.read, WithoutBtfSymbols())
    assert how == "__start_BTF" and len(btf) > 10000
    assert (scanned, how2, len(btf2)) == (addr, "scan", len(btf))
    checked = 0
    for key, value in entries.items():
        m = re.fullmatch(r"OFFSET\((\w+)\.([\w.]+)\)", key)
        if m:
            f = btf.field(m.group(1), m.group(2))
            assert f is not None and f.offset == int(value), key
            checked += 1
        m = re.fullmatch(r"SIZE\((\w+)\)", key)
        if m:
            assert btf.struct_size(m.group(1)) == int(value), key
            checked += 1
    assert checked >= 40


def test_ps_lists_the_task_that_wrote_to_sysrq_trigger_as_it_died(ps, console):
    cpu, pid, comm = PANIC_LINE.search(console).groups()
    hit = [t for t in ps["tasks"] if t["pid"] == int(pid)]
    assert len(hit) == 1, hit
    t = hit[0]
    # it was running the write when it panicked: running, current on its CPU
    assert (t["comm"], t["state"], t["state_letter"], t["cpu"]) == (comm, "RU", "R", int(cpu))
    assert t["current_on_cpu"] is not None and t["rq_curr"] == int(cpu) and not t["kernel_thread"]


def test_ps_lists_every_cpus_idle_task_and_per_cpu_kernel_threads(ps, run612):
    ncpus = int(run612.manifest["nproc"].split()[0])
    by_comm = {t["comm"]: t for t in ps["tasks"]}
    for n in range(ncpus):
        assert by_comm[f"swapper/{n}"]["pid"] == 0 and by_comm[f"swapper/{n}"]["cpu"] == n
        for name in (f"ksoftirqd/{n}", f"migration/{n}", f"cpuhp/{n}"):
            t = by_comm[name]
            assert t["kernel_thread"] and t["ppid"] == 2 and t["cpu"] == n and t["state"] in ("IN", "RU"), t
    assert by_comm["kthreadd"]["pid"] == 2 and by_comm["kthreadd"]["ppid"] == 0
    assert sum(1 for t in ps["tasks"] if t["pid"] == 0) == ncpus
    pids = [t["pid"] for t in ps["tasks"] if t["pid"]]
    assert len(pids) == len(set(pids)) and pids == sorted(pids)
    running = [t for t in ps["tasks"] if t["current_on_cpu"] is not None]
    assert sorted(t["current_on_cpu"] for t in running) == list(range(ncpus))
    # the lowcore's current_task and the runqueue's curr name the same tasks
    assert sorted(t["rq_curr"] for t in running) == list(range(ncpus))
    assert all(t["current_on_cpu"] is not None for t in ps["tasks"] if t["rq_curr"] is not None)
    states = {t["state"] for t in ps["tasks"]}
    assert {"RU", "IN", "ID"} <= states and states <= {"RU", "IN", "UN", "ID", "ST", "TR", "ZO", "DE", "PA", "WA", "NE"}


def test_ps_text_marks_the_running_tasks(run612, ps, vmcore_cli):
    text = vmcore_cli("ps", run612.path("panic_elf")).splitlines()
    assert text[0].split() == ["PID", "PPID", "CPU", "TASK", "ST", "COMM"]
    assert sum(line.startswith(">") for line in text) == sum(
        t["current_on_cpu"] is not None or t["rq_curr"] is not None for t in ps["tasks"])
    assert any(line.split()[-1] == "[kthreadd]" for line in text)


def test_bt_of_the_crashing_cpu_matches_the_console_call_trace(run612, console, vmcore_cli):
    trace = call_trace(console)
    res = vmcore_cli.json("bt", run612.path("panic_elf"))
    frames = res["cpus"][0]["frames"]
    ours = [f["symbol"].split("+")[0] for f in frames]
    theirs = [name for _a, name, _o, _s in trace]
    i, j = ours.index("panic"), theirs.index("panic")
    assert ours[i:] == theirs[j:], f"\nours:   {ours}\nkernel: {theirs}"
    assert [(f["address"], f["symbol"]) for f in frames[i + 1:]] == \
        [(a, f"{n}+0x{o:x}/0x{s:x}") for a, n, o, s in trace[j + 1:]]
    assert theirs[j + 1:] == ["sysrq_reset_seq_param_set", "__handle_sysrq", "write_sysrq_trigger", "proc_reg_write",
                              "vfs_write", "ksys_write", "__do_syscall", "system_call"]


def test_bt_task_of_the_writer_is_its_cpus_trace(run612, console, vmcore_cli):
    _cpu, pid, comm = PANIC_LINE.search(console).groups()
    by_task = vmcore_cli.json("bt", run612.path("panic_elf"), "--task", pid)["cpus"][0]
    by_cpu = vmcore_cli.json("bt", run612.path("panic_elf"))["cpus"][0]
    assert by_task["task"]["comm"] == comm and by_task["frames"] == by_cpu["frames"]


def test_bt_task_of_sleeping_kernel_threads_runs_from_the_scheduler_to_ret_from_fork(run612, ps, vmcore_cli):
    sleeping = [t for t in ps["tasks"] if t["kernel_thread"] and t["pid"] and t["state"] in ("IN", "ID")
                and t["current_on_cpu"] is None]
    assert len(sleeping) >= 20
    for t in sleeping[:: max(1, len(sleeping) // 12)]:
        res = vmcore_cli.json("bt", run612.path("panic_elf"), "--task", str(t["pid"]))["cpus"][0]
        names = [f["symbol"].split("+")[0] for f in res["frames"]]
        assert names[:2] == ["__schedule", "schedule"], (t["comm"], names)
        assert names[-2:] == ["__ret_from_fork", "ret_from_fork"], (t["comm"], names)
        assert {f["stack"] for f in res["frames"]} == {"task"} and "end of the stack" in res["stop"]
        assert res["frames"][0]["how"] == "ksp"
    kthreadd = vmcore_cli.json("bt", run612.path("panic_elf"), "--task", "2")["cpus"][0]
    assert "kthreadd" in [f["symbol"].split("+")[0] for f in kthreadd["frames"]]


def test_kernels_without_btf_say_so_in_one_line(runs):
    """The harness's 6.1 kernels: Debian's has CONFIG_DEBUG_INFO_BTF off, the built one no debug info."""
    for r in runs:
        kind = "panic_elf" if r.has("panic_elf") else "vmcore"
        for args in (("ps",), ("bt", "--task", "1")):
            res = subprocess.run([sys.executable, "-m", "vmcore.cli", args[0], r.path(kind), *args[1:]],
                                 capture_output=True, text=True, cwd=ROOT)
            assert res.returncode == 3 and not res.stdout, (r.name, res)
            assert res.stderr.count("\n") == 1 and "carries no usable BTF" in res.stderr, (r.name, res.stderr)
