"""Issue 21: the suite itself on real s390x Linux (harness step suite-on-s390x).

In the guest (the kdump-capable 6.1 kernel under qemu-system-s390x, Debian's s390x Python 3.11):
our `kexec-s390 load -p` of the kdump kernel through the real kexec_load(2) -> our
`kexec-s390 status` -> the host takes QEMU's own dumps -> `echo c > /proc/sysrq-trigger` ->
the kernel checks our purgatory's CKSMs and starts our loaded kdump kernel -> our
`vmcore save -d 31 -c` reads the real /proc/vmcore (dump level 31) -> onto the virtio disk ->
power off.  Here, on the host: the console proves each step, the dump verifies, real
makedumpfile reads its kernel log, and the pages that could not change between QEMU's dump and
the crash are equal."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess

import pytest

from dumpkit.errors import BadInputError
from kexec_s390 import purgatory
from meminfo_abi.checksum import csum_partial
from meminfo_abi.meminfo import SEGMENT_KIND_PURGATORY, KexecSegmentTable
from tests.conftest import cli_json, run_cli
from tests.realdata import s390x_peers
from tests.realworld import harness, suite_initramfs
from tests.realworld.conftest import Run, load_run
from vmcore.formats import open_dump

pytestmark = pytest.mark.realworld
PAGE = 4096


@pytest.fixture(scope="module")
def suite() -> Run:
    return load_run(harness.SUITE_CONFIG)


@pytest.fixture(scope="module")
def console(suite) -> str:
    with open(suite.path("console")) as fh:
        return fh.read()


@pytest.fixture(scope="module")
def phases(suite, console) -> tuple[str, str]:
    """(the production kernel's console, the kdump kernel's), split at our PANIC line."""
    m = re.search(rf"^S390DT-PANIC {suite.manifest['token']}$", console, re.M)
    assert m, "the guest never reached the crash"
    return console[:m.start()], console[m.end():]


def test_the_suite_runs_on_s390x_with_its_c_extension(phases):
    prod, _ = phases
    m = re.search(r"^S390DT-PYTHON (3\.11\.\d+) (\w+) (.*)$", prod, re.M)
    assert m, "the guest's Python did not start"
    assert m.group(2) == "big"
    assert "native extension: built" in m.group(3) and "s390x-linux-gnu.so" in m.group(3)


def test_kexec_s390_load_through_the_real_kexec_load(suite, phases):
    """Our load table on the console: the kernel and the initrd where the simulator puts them,
    the purgatory page at crash base + 0x2000, the entry inside the crashkernel memory; the
    kernel took it (kexec_crash_loaded went 0 -> 1)."""
    prod, _ = phases
    base, size = suite.crash
    assert (base, size) == (0x30000000, 256 << 20)
    assert "loaded into kexec_load(2)" in prod
    rows = {m.group(1): (int(m.group(2), 16), m.group(3))
            for m in re.finditer(r"^│ \d+ │ (\w+)\s+│ 0x([0-9a-f]+) │.*│ (0x[0-9a-f]{8}) │$", prod, re.M)}
    assert set(rows) == {"kernel", "initrd", "purgatory"}, rows
    assert rows["kernel"][0] == base + 0x10000
    assert rows["initrd"][0] == base + 0x800000
    assert rows["purgatory"][0] == base + 0x2000
    assert f"entry 0x{base + 0x2800:x}, flags 0x160001, kernel 6.1." in prod
    assert re.search(rf"^purgatory: segment table at 0x{base + 0x2000:x}, sha256 [0-9a-f]{{64}}; "
                     rf"kexec_load\(2\) entry 0x{base + 0x2800:x}$", prod, re.M)
    assert re.search(r"^S390DT-STATUS-BEFORE rc=1$", prod, re.M)
    m = re.search(r"^S390DT-KEXEC rc=(\d+) loaded=(\d) from=([\d.]+) to=([\d.]+)$", prod, re.M)
    assert m and m.group(1, 2) == ("0", "1"), m and m.group(0)


def test_kexec_s390_unload_through_the_real_kexec_load(phases):
    """A first load (kernel only) is taken and `unload -p` (kexec_load with no segments) drops it."""
    prod, _ = phases
    assert re.search(r"^S390DT-FIRST-LOAD rc=0 loaded=1$", prod, re.M)
    assert re.search(r"^kdump unloaded$", prod, re.M)
    assert re.search(r"^S390DT-UNLOAD rc=0 loaded=0$", prod, re.M)


def test_kexec_s390_status_says_loaded(suite, phases):
    prod, _ = phases
    after = prod[prod.index("S390DT-RUN kexec-s390 status\n"):]
    assert "kdump loaded" in after.split("\n", 2)[1]
    assert "/sys/kernel/kexec_crash_loaded = 1" in after
    assert re.search(r"^S390DT-STATUS rc=0$", after, re.M)
    js = json.loads(re.search(r"^S390DT-STATUS-JSON (.*)$", after, re.M).group(1))
    assert js["loaded"] and js["kdump_intact"]
    base, size = suite.crash
    assert js["crashkernel"] == {"base": hex(base), "size": hex(size)} and js["crash_size"] == size


def test_the_kernel_loaded_exactly_our_segments(suite):
    """QEMU's pmemsave at the READY instant: crash base + 0x2000 holds our segment table with the
    purgatory code at +0x800, and every segment in storage has the CKSM and SHA-256 it records."""
    base, _size = suite.crash
    page = suite.read_image("memory", base + 0x2000, PAGE)
    table = KexecSegmentTable.parse(page)
    assert table.entry == 0x10010
    assert page[0x800:0x800 + len(purgatory.CODE)] == purgatory.CODE
    assert [s.kind_name for s in table.segments] == ["kernel", "initrd"]
    digest = hashlib.sha256()
    for s in table.segments:
        assert s.kind != SEGMENT_KIND_PURGATORY
        data = suite.read_image("memory", s.mem, s.memsz)
        assert csum_partial(data) == s.csum, s.kind_name
        digest.update(data)
    assert digest.digest() == table.sha256


def test_our_kdump_kernel_booted_and_vmcore_save_wrote_the_dump(suite, phases):
    _, kdump = phases
    token = suite.manifest["token"]
    assert re.search(r"Linux version 6\.1\.\d+", kdump), "the kdump kernel did not boot"
    assert "setup: The maximum memory size is 256MB" in kdump
    assert re.search(rf"Kernel command line: console=ttysclp0 s390dt_token={token}$", kdump, re.M)
    m = re.search(rf"^S390DT-KDUMP-BEGIN {token} size=(\d+) release=(\S+)", kdump, re.M)
    assert m and int(m.group(1)) > 768 << 20 and m.group(2) == suite.release
    assert re.search(r"^saved 768 MiB of old memory, 2 CPUs, VMCOREINFO from ELF note to /dump/vmcore \(kdump\), "
                     r"dump level 31: \d+ pages left out, [\d.]+ MiB written$", kdump, re.M)
    m = re.search(rf"^S390DT-SAVED {token} rc=0 size=(\d+)", kdump, re.M)
    assert m and int(m.group(1)) == os.path.getsize(suite.path("saved"))
    assert suite.manifest["files"]["saved"] == f"vmcore.d{suite_initramfs.DUMP_LEVEL}"


def test_vmcore_verify_and_info_on_the_saved_dump(suite):
    path = suite.path("saved")
    proc = run_cli("vmcore.cli", "verify", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = cli_json("vmcore.cli", "info", path)
    assert info["format"] == "kdump" and info["complete"]
    assert info["dump_level"] == suite_initramfs.DUMP_LEVEL and info["excluded_pages"] > 0
    assert info["cpus"] == 2 and info["memory_size"] == 768 << 20 > info["memory_present"] > 0
    assert info["extra"]["utsname"]["release"] == info["vmcoreinfo"]["osrelease"] == suite.release
    assert info["crashed_in"]["where"].startswith("sysrq_handle_crash+")


def test_the_kernel_log_in_the_saved_dump(suite, tmp_path):
    """Our dmesg and real makedumpfile's --dump-dmesg (s390x, under qemu-user) both find every
    marker the production kernel logged, the last one just before the crash."""
    markers = suite.manifest["markers"] + [suite.manifest["panic_marker"]]
    ours = run_cli("vmcore.cli", "dmesg", suite.path("saved"))
    assert ours.returncode == 0, ours.stderr
    out = tmp_path / "dmesg.txt"
    proc = subprocess.run([*s390x_peers()["MAKEDUMPFILE"], "--dump-dmesg", suite.path("saved"), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-500:] + proc.stderr[-500:]
    theirs = out.read_text(errors="replace")
    for marker in markers:
        assert marker in ours.stdout, marker
        assert marker in theirs, marker


def test_pages_equal_qemus_own_dump_where_memory_was_stable(suite):
    """Kernel text cannot change between QEMU's dump at READY and the crash: in our saved dump it
    equals QEMU's dump-guest-memory ELF of the same kernel, page for page.  The /pattern pages
    (the rootfs' page cache) are what dump level 31 leaves out: every one of them is filtered."""
    base, _size = suite.crash
    text0, text1 = suite.text
    pattern = [p for p in sorted(suite.pattern_pages()) if p < base]
    assert len(pattern) > 500
    text = list(range(text0 & ~(PAGE - 1), text1, PAGE))
    assert len(text) > 300
    with open_dump(suite.path("saved")) as ours, open_dump(suite.path("qemu_elf")) as qemu:
        for p in text:
            assert ours.read(p, PAGE) == qemu.read(p, PAGE), hex(p)
        for p in pattern:
            with pytest.raises(BadInputError, match="filtered out of the dump"):
                ours.read(p, PAGE)


def test_our_purgatory_answers_the_kernels_question_on_the_real_crash_memory(suite, tmp_path):
    """The crashkernel memory of the READY instant, mapped at its own address under qemu-user,
    and our purgatory called as the kernel calls it at the crash (start_kdump(0)): 0, intact; a
    bit flipped in the kernel, the initrd or a recorded CKSM: 1 (the kernel then skips kdump);
    outside the segments: still 0."""
    import shutil
    if shutil.which(f"{harness.CROSS}gcc") is None or shutil.which("qemu-s390x-static") is None:
        pytest.fail("gcc-s390x-linux-gnu and qemu-user-static are needed")
    debs = harness.build_all(only="suite-debs")["suite-debs"]
    sysroot = tmp_path / "sysroot"
    for pkg in ("libc6-dev", "linux-libc-dev"):
        shutil.copytree(debs["roots"][pkg], sysroot, dirs_exist_ok=True, symlinks=True)
    prog = str(tmp_path / "run_purgatory")
    subprocess.run([f"{harness.CROSS}gcc", f"--sysroot={sysroot}", "-static", "-O2",
                    os.path.join(os.path.dirname(__file__), "run_purgatory.c"), "-o", prog], check=True)
    base, size = suite.crash

    def intact(flip: int | None = None) -> int:
        argv = ["qemu-s390x-static", prog, suite.path("memory"), hex(base), hex(base), hex(size)]
        proc = subprocess.run(argv + ([hex(flip)] if flip is not None else []), capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout)

    table = KexecSegmentTable.parse(suite.read_image("memory", base + 0x2000, PAGE))
    kernel, initrd = table.segments
    assert intact() == 0
    assert intact(kernel.mem + 0x400) == 1                       # the parameter area
    assert intact(initrd.mem + initrd.bufsz // 2) == 1
    assert intact(base + 0x2000 + 64 + 24) == 1                 # the kernel's recorded CKSM
    assert intact(base + 0x2000 + 0x100) == 0                    # the table's padding: no segment
