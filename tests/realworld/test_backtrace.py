"""Issue 19 on real dumps: where did it crash, from the dump alone (no vmlinux, no debug info).

Peers: the kernel's own `Call Trace:` in the console log of the same panic (stock-1g, a Debian
6.1 kernel after `echo c > /proc/sysrq-trigger`), the guest's /proc/kallsyms lines the
harness recorded (manifest "symbols"), the release the harness read from the guest, and the
identity mapping of the 6.1 kernel (virtual == physical) for the page-table walk.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys

import pytest

from tests.realworld.conftest import sample_addresses

pytestmark = pytest.mark.realworld
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TRACE_LINE = re.compile(r"\[<([0-9a-f]{16})>\] ([\w.$]+)\+(0x[0-9a-f]+)/(0x[0-9a-f]+)")
SYSRQ_PATH = ["__handle_sysrq", "write_sysrq_trigger", "proc_reg_write", "vfs_write", "ksys_write",
              "__do_syscall", "system_call"]


def call_trace(console: str) -> list[tuple[int, str, int, int]]:
    """The kernel's Call Trace lines after the panic: (address, function, offset, size)."""
    lines = console.splitlines()
    start = next(i for i, l in enumerate(lines) if l.rstrip().endswith("Call Trace:"))
    out = []
    for line in lines[start + 1:]:
        m = TRACE_LINE.search(line)
        if not m:
            break
        out.append((int(m.group(1), 16), m.group(2), int(m.group(3), 16), int(m.group(4), 16)))
    return out


@pytest.fixture(scope="module")
def stock(runs):
    r = next(r for r in runs if r.has("panic_elf"))
    with open(r.path("console"), errors="replace") as fh:
        trace = call_trace(fh.read())
    assert len(trace) >= 8, f"console log of {r.name}: Call Trace too short: {trace}"
    return r, trace


def test_bt_of_the_panicking_cpu_matches_the_kernels_call_trace(stock, vmcore_cli):
    r, trace = stock
    res = vmcore_cli.json("bt", r.path("panic_elf"))
    assert len(res["cpus"]) == 1, "bt without --cpu/--all shows the crashed CPU"
    frames = res["cpus"][0]["frames"]
    ours = [f["symbol"].split("+")[0] for f in frames]
    theirs = [name for _a, name, _o, _s in trace]
    # the log's trace was taken inside panic (dump_stack_lvl); the dump was taken after panic went
    # on (the CPU is in panic's notifier now): from panic outwards both stacks are the same frames
    assert "panic" in ours and "panic" in theirs, (ours, theirs)
    i, j = ours.index("panic"), theirs.index("panic")
    assert ours[i:] == theirs[j:], f"\nours:   {ours}\nkernel: {theirs}"
    below = [(f["address"], f["symbol"]) for f in frames[i + 1:]]
    assert below == [(a, f"{n}+0x{o:x}/0x{s:x}") for a, n, o, s in trace[j + 1:]]
    assert "user space" in res["cpus"][0]["stop"]
    text = vmcore_cli("bt", r.path("panic_elf"))
    for a, n, o, s in trace[j + 1:]:
        assert f" [<{a:016x}>] {n}+0x{o:x}/0x{s:x}" in text


def test_info_names_the_crash_site(stock, vmcore_cli):
    r, _trace = stock
    info = vmcore_cli.json("info", r.path("panic_elf"))
    assert info["crashed_in"]["cpu"] == 0 and info["crashed_in"]["where"].startswith("sysrq_handle_crash+0x")


def test_sym_gives_the_kernels_names_offsets_and_sizes(stock, vmcore_cli):
    r, trace = stock
    for a, n, o, s in trace:
        assert vmcore_cli("sym", r.path("panic_elf"), f"0x{a:x}").strip() == f"{n}+0x{o:x}/0x{s:x}"
        got = vmcore_cli.json("sym", r.path("panic_elf"), n)
        assert got["address"] == a - o and got["size"] == s


def test_sym_agrees_with_the_guests_proc_kallsyms(runs, vmcore_cli):
    checked = 0
    for r in runs:
        for kind in ("panic_elf", "vmcore", "qemu_elf"):
            if not r.has(kind):
                continue
            for name, addr in r.manifest["symbols"].items():
                got = vmcore_cli.json("sym", r.path(kind), name)
                assert got["address"] == addr, f"[{r.name} {kind}] {name}"
                checked += 1
    assert checked >= 9


def test_read_init_uts_ns_by_symbol_shows_the_release(runs, vmcore_cli):
    for r in runs:
        kind = "panic_elf" if r.has("panic_elf") else "vmcore" if r.has("vmcore") else "qemu_elf"
        data = bytes.fromhex(vmcore_cli.json("read", r.path(kind), "init_uts_ns", "0x200")["data"])
        # struct new_utsname: sysname[65], nodename[65], release[65], ...
        assert data[:6] == b"Linux\0"
        assert data[130:195].split(b"\0")[0].decode() == r.release, r.name


def test_vtop_agrees_with_the_identity_mapping(runs, vmcore_cli):
    from vmcore.formats import open_dump
    from vmcore.kvaddr import KernelSpace
    rng = random.Random(19)
    for r in runs:
        kind = "panic_elf" if r.has("panic_elf") else "vmcore"
        with open_dump(r.path(kind)) as d:
            space = KernelSpace(d)
            ranges = [(c.start, c.end) for c in d.chunks if c.kind != "absent"]
            for a in sample_addresses(rng, ranges, 300, align=1) + [r.text[0], r.text[1] - 1]:
                tr = space.walk(a)
                assert tr.phys == a == tr.linear, f"[{r.name}] 0x{a:x} -> 0x{tr.phys:x}"
                assert [lv.name for lv in tr.levels][0] in ("region-third", "region-second", "region-first")
        out = vmcore_cli.json("vtop", r.path(kind), f"0x{r.text[0]:x}")
        assert out["physical"] == r.text[0] and len(out["levels"]) >= 2


def test_vtop_of_an_unmapped_address_names_the_level(runs):
    r = next(r for r in runs if r.has("panic_elf"))
    res = subprocess.run([sys.executable, "-m", "vmcore.cli", "vtop", r.path("panic_elf"), "0x3fffffff000"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 3 and not res.stdout
    err = res.stderr.strip()
    assert "\n" not in err and "0x3fffffff000" in err and "page-translation exception" in err


def test_bt_of_a_real_proc_vmcore_runs_through_panic_and_the_sysrq_path(kdump_runs, vmcore_cli):
    for r in kdump_runs:
        res = vmcore_cli.json("bt", r.path("vmcore"))
        names = [f["symbol"].split("+")[0] for f in res["cpus"][0]["frames"]]
        assert "panic" in names, f"[{r.name}] {names}"
        assert names[names.index("panic") + 1:] == ["sysrq_handle_crash"] + SYSRQ_PATH, f"[{r.name}] {names}"


def test_sym_agrees_with_the_kernels_system_map_on_200_random_symbols(kdump_runs, vmcore_cli):
    """The kdump configurations run a kernel the harness built: its System.map is the peer
    (Debian's own System.map is a stub pointing to the -dbg package)."""
    from vmcore import inspect
    from vmcore.formats import open_dump
    rng = random.Random(200)
    for r in kdump_runs:
        path = os.path.join(os.path.dirname(r.manifest["kernel_image"]), "System.map")
        with open(path) as fh:
            rows = [line.split() for line in fh]
        with open_dump(r.path("vmcore")) as d:
            space = inspect.kernel_space(d)
            syms = inspect.kernel_symbols(space)
            koff = int(d.attrs.vmcoreinfo.get("KERNELOFFSET") or "0", 16)
        names = {}
        for a, t, n in rows:
            names.setdefault(n, []).append(int(a, 16))
        listed = {s.name for s in syms.symbols}
        # kallsyms holds the text symbols (and data ones only with CONFIG_KALLSYMS_ALL)
        candidates = sorted(n for (a, t, n) in rows if t in "Tt" and len(names[n]) == 1 and n in listed)
        assert len(candidates) > 1000, f"[{r.name}] {len(candidates)} text symbols in both"
        for n in rng.sample(candidates, 200):
            want = names[n][0] + koff
            assert syms.by_name(n).address == want, f"[{r.name}] {n}"
            hit = syms.lookup(want + 1)
            assert hit is not None and hit[0].address == want, f"[{r.name}] 0x{want + 1:x} -> {hit}"
        for n in candidates[:3]:
            assert vmcore_cli.json("sym", r.path("vmcore"), n)["address"] == names[n][0] + koff
