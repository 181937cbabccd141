"""`vmcore info/regs/dmesg/vmcoreinfo/read` on real dumps of real s390x kernels.

Dumps (per guest configuration, see harness.CONFIGS):
  qemu_elf    QEMU dump-guest-memory ELF      } of the running production kernel, taken while
  qemu_kdump  QEMU dump-guest-memory -z       } QEMU had it stopped, at the same instant as
              (makedumpfile's flattened        } the pmemsave image memory.raw and
              kdump-compressed format, zlib)   } `info registers -a`
  vmcore      the kdump kernel's own /proc/vmcore after a real panic (kdump configurations)
  panic_elf   QEMU ELF dump of the panicked stock kernel (no kdump; -action panic=pause)

Which byte comparisons are valid (`read` against a memory image):
  * qemu_elf and qemu_kdump against memory.raw: everywhere (same stopped instant).
  * vmcore against kdump-memory.raw, the kdump kernel's physical memory taken after the
    copy: everywhere /proc/vmcore has data.  Old address a < crashkernel size reads
    kdump-memory.raw at crash base + a (the swap done by the kdump kernel's entry code),
    a in [crashkernel size, crash base) reads it at a; the crashkernel itself is not in
    /proc/vmcore.  Exact: after the panic nothing writes old memory any more.
  * vmcore and panic_elf against memory.raw (taken *before* the panic): only where the old
    kernel did not write between the snapshot and the panic.  Witnesses that are stable by
    construction: the kernel text [_stext, _etext) (read-only after boot) and the /pattern
    pages of the initramfs (rootfs page cache, never written or freed); for the vmcore,
    also low pages (< crashkernel size) whose pre-panic content equals old memory at panic
    time (kdump-memory.raw at crash base + a) but differs from what the kdump kernel holds
    at a itself: there only reading through the swap gives the right bytes.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.conftest import run_cli
from tests.realworld.conftest import PAGE, kdump_reader_available, sample_addresses
from tests.realworld.qemu import psw_masks_agree

pytestmark = pytest.mark.realworld

KINDS = ("qemu_elf", "qemu_kdump", "vmcore", "panic_elf")
MIN_SAMPLES = 50


def _dumps(runs, kind):
    """The runs that have a dump of this kind, and how many there must be."""
    have = [r for r in runs if r.has(kind)]
    expected = {"qemu_elf": 3, "qemu_kdump": 3, "vmcore": 2, "panic_elf": 1}[kind]
    assert len(have) == expected, f"{kind}: {len(have)} dumps, expected {expected}"
    if kind == "qemu_kdump" and not kdump_reader_available():
        pytest.fail("the kdump-compressed (flattened) reader vmcore/formats/kdump/ is not there "
                    "yet: QEMU's dump-guest-memory -z output cannot be opened")
    return have


def _expected_format(kind: str) -> str:
    return "elf" if kind != "qemu_kdump" else "kdump"


@pytest.mark.parametrize("kind", KINDS)
def test_info_and_vmcoreinfo(runs, vmcore_cli, kind):
    checked = 0
    for r in _dumps(runs, kind):
        where = f"[{r.name} {kind}]"
        info = vmcore_cli.json("info", r.path(kind))
        assert info["format"].startswith(_expected_format(kind)), f"{where} {info['format']}"
        assert info["cpus"] == r.config.cpus, where
        assert info["complete"], f"{where} {info['incomplete_reason']}"
        assert info["vmcoreinfo"]["osrelease"] == r.release, where
        assert info["vmcoreinfo"]["page_size"] == "4096", where
        if kind == "vmcore":
            base, size = r.crash
            # /proc/vmcore: all old memory but the crashkernel (at the top of memory here)
            present = [(c["start"], c["end"]) for c in info["chunks"] if c["kind"] != "absent"]
            assert not any(s < base + size and e > base for s, e in present), f"{where} crashkernel in the dump"
            assert sum(e - s for s, e in present) == r.size - size, where
        else:
            assert info["memory_size"] == r.size, where

        vi = vmcore_cli.json("vmcoreinfo", r.path(kind))
        assert vi["entries"]["OSRELEASE"] == r.release, where
        assert "SYMBOL(swapper_pg_dir)" in vi["entries"], where
        # the kernel adds CRASHTIME when it starts the kdump kernel, and only then
        assert ("CRASHTIME" in vi["entries"]) == (kind == "vmcore"), where
        text = vmcore_cli("vmcoreinfo", r.path(kind))
        assert f"OSRELEASE={r.release}\n" in text, where
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_dmesg_has_the_markers(runs, vmcore_cli, kind):
    checked = 0
    for r in _dumps(runs, kind):
        where = f"[{r.name} {kind}]"
        records = vmcore_cli.json("dmesg", r.path(kind))
        texts = [rec["text"] for rec in records]
        for marker in r.manifest["markers"]:
            assert marker in texts, f"{where} {marker!r} not in the dump's kernel log ({len(texts)} records)"
        panicked = kind in ("vmcore", "panic_elf")
        assert (r.manifest["panic_marker"] in texts) == panicked, where
        if panicked:
            assert "Kernel panic - not syncing: sysrq triggered crash" in texts, where
        plain = vmcore_cli("dmesg", r.path(kind))
        assert all(m in plain for m in r.manifest["markers"]), where
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_regs(runs, vmcore_cli, kind):
    checked = 0
    for r in _dumps(runs, kind):
        where = f"[{r.name} {kind}]"
        regs = vmcore_cli.json("regs", r.path(kind))
        assert len(regs) == r.config.cpus, where
        if kind == "vmcore":
            # the state the crashed kernel stored for every CPU at the panic: no QEMU view of
            # that instant exists, but each PSW must point into the old kernel's text
            lo, hi = r.text
            for c in regs:
                assert lo <= int(c["psw"]["addr"], 16) < hi, f"{where} CPU {c['index']} {c['psw']}"
                assert int(c["psw"]["mask"], 16) >> 63 == 0 and int(c["psw"]["mask"], 16) & (1 << 32), where
        else:
            qemu = r.qemu_registers("registers" if kind != "panic_elf" else "panic_registers")
            assert len(qemu) == len(regs), where
            for mine, theirs in zip(regs, qemu):
                assert psw_masks_agree(int(mine["psw"]["mask"], 16), theirs), f"{where} CPU {mine['index']}"
                assert int(mine["psw"]["addr"], 16) == theirs["psw_addr"], f"{where} CPU {mine['index']}"
                assert [int(v, 16) for v in mine["gprs"]] == theirs["gprs"], f"{where} CPU {mine['index']}"
                assert [int(v, 16) for v in mine["crs"]] == theirs["crs"], f"{where} CPU {mine['index']}"
        checked += 1
    assert checked >= 1


def _read(vmcore_cli, path: str, addr: int, length: int) -> bytes:
    out = vmcore_cli.json("read", path, hex(addr), hex(length))
    assert out["address"] == addr and out["length"] == length
    return bytes.fromhex(out["data"])


def _stable_witnesses(r, rng: random.Random, limit: int) -> list[int]:
    """Page addresses whose content did not change from the pre-panic snapshot to the panic:
    kernel text and the initramfs /pattern pages (see the module docstring)."""
    lo, hi = r.text
    text = [a for a in range((lo + PAGE - 1) & ~(PAGE - 1), hi & ~(PAGE - 1), PAGE)]
    pattern = sorted(r.pattern_pages())
    assert len(pattern) >= 100, f"[{r.name}] only {len(pattern)} intact /pattern pages in memory.raw"
    return rng.sample(text, min(len(text), limit // 2)) + rng.sample(pattern, min(len(pattern), limit // 2))


@pytest.mark.parametrize("kind", ("qemu_elf", "qemu_kdump"))
def test_read_equals_the_memory_image_of_the_same_instant(runs, vmcore_cli, kind):
    checked = 0
    for r in _dumps(runs, kind):
        rng = random.Random(f"{r.name}/{kind}")
        addrs = sample_addresses(rng, [(0, r.size)], 40)
        addrs += [0, 0xE00, 0x10400] + _stable_witnesses(r, rng, 10)
        if r.crash:
            base, size = r.crash
            addrs += sample_addresses(rng, [(base, base + size)], 8)
        n = 0
        for a in addrs:
            length = min(rng.choice((16, 256, 4096)), r.size - a)
            assert _read(vmcore_cli, r.path(kind), a, length) == r.read_image("memory", a, length), \
                f"[{r.name} {kind}] 0x{a:x}+0x{length:x}"
            n += 1
        assert n >= MIN_SAMPLES
        checked += n
    assert checked >= MIN_SAMPLES * 3


def test_vmcore_read_equals_old_memory_through_the_swap(kdump_runs, vmcore_cli):
    """/proc/vmcore against the kdump kernel's physical memory (exact everywhere)."""
    checked = swapped = direct = 0
    for r in kdump_runs:
        base, size = r.crash
        rng = random.Random(f"{r.name}/vmcore-swap")
        low = sample_addresses(rng, [(0, size)], 30)
        high = sample_addresses(rng, [(size, base)], 30)
        for a in low + high:
            length = min(rng.choice((16, 256, 4096)), base - a)
            phys = base + a if a < size else a
            want = r.read_image("kdump_memory", phys, length)
            assert _read(vmcore_cli, r.path("vmcore"), a, length) == want, f"[{r.name}] old 0x{a:x}"
            swapped += a < size
            direct += a >= size
            checked += 1
        # the crashkernel memory is not part of /proc/vmcore
        res = run_cli("vmcore.cli", "read", r.path("vmcore"), hex(base + PAGE), "0x10")
        assert res.returncode != 0, f"[{r.name}] read inside the crashkernel should fail"
    assert checked >= MIN_SAMPLES * 2 and swapped >= 50 and direct >= 50


def _changed_by_kdump_kernel(r, limit: int, rng: random.Random) -> list[int]:
    """Low pages a < crashkernel size the old kernel did not change after the snapshot and the
    kdump kernel holds other bytes at: only reading through the swap finds the old bytes."""
    base, size = r.crash
    out = []
    with open(r.path("memory"), "rb") as pre, open(r.path("kdump_memory"), "rb") as post:
        for start in range(0, size, 1 << 24):
            n = min(1 << 24, size - start)
            before = os.pread(pre.fileno(), n, start)              # pre-panic, at a
            old = os.pread(post.fileno(), n, base + start)         # old memory at a, after the swap
            kdump = os.pread(post.fileno(), n, start)              # the kdump kernel's own memory at a
            for off in range(0, n, PAGE):
                p = before[off:off + PAGE]
                if p == old[off:off + PAGE] and p != kdump[off:off + PAGE] and p.count(0) < PAGE:
                    out.append(start + off)
    return rng.sample(out, min(limit, len(out)))


def test_vmcore_read_equals_the_pre_panic_image_where_memory_was_stable(kdump_runs, vmcore_cli):
    checked = through_swap = discriminating = 0
    for r in kdump_runs:
        base, size = r.crash
        rng = random.Random(f"{r.name}/vmcore-stable")
        witnesses = _stable_witnesses(r, rng, 40)
        extra = _changed_by_kdump_kernel(r, 20, rng)
        assert len(extra) >= 10, f"[{r.name}] only {len(extra)} low pages differ between old and kdump kernel"
        for a in witnesses + extra:
            if a >= base:
                continue
            got = _read(vmcore_cli, r.path("vmcore"), a, PAGE)
            assert got == r.read_image("memory", a, PAGE), f"[{r.name}] old page 0x{a:x}"
            checked += 1
            through_swap += a < size
        discriminating += len(extra)
    assert checked >= MIN_SAMPLES * 2 and through_swap >= 20 and discriminating >= 20


def test_panic_elf_read_equals_the_pre_panic_image_where_memory_was_stable(runs, vmcore_cli):
    checked = 0
    for r in _dumps(runs, "panic_elf"):
        rng = random.Random(f"{r.name}/panic")
        for a in _stable_witnesses(r, rng, 60):
            assert _read(vmcore_cli, r.path("panic_elf"), a, PAGE) == r.read_image("memory", a, PAGE), \
                f"[{r.name}] page 0x{a:x}"
            checked += 1
    assert checked >= MIN_SAMPLES


def test_cli_entry_point_on_every_dump(runs):
    """The same commands through `python -m vmcore.cli` (a separate process), once per dump."""
    checked = 0
    for r in runs:
        for kind in KINDS:
            if not r.has(kind) or (kind == "qemu_kdump" and not kdump_reader_available()):
                continue
            res = run_cli("vmcore.cli", "read", r.path(kind), hex(r.text[0]), "0x40", "--json")
            assert res.returncode == 0, f"[{r.name} {kind}] {res.stderr}"
            res = run_cli("vmcore.cli", "info", r.path(kind))
            assert res.returncode == 0 and r.release in res.stdout, f"[{r.name} {kind}] {res.stderr}"
            checked += 1
    assert checked >= 6
