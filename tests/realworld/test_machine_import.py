"""`s390-machine import` of real memory images: QEMU `pmemsave` of a running real s390x
kernel (CPUs from the QEMU ELF dump of the same instant)."""

from __future__ import annotations

import struct

import pytest

from tests.conftest import cli_json
from tests.realworld.conftest import u64
from tests.realworld.qemu import psw_masks_agree

pytestmark = pytest.mark.realworld

LC_OS_INFO = 0xE18
OSINFOSZ = b"OSINFOSZ"
HEADER_CHECKS = ("pointer", "alignment", "magic", "header checksum", "version")


def cksm(data: bytes) -> int:
    """z/Architecture CHECKSUM, written again here so the test does not trust the suite's."""
    data = data + b"\0" * (-len(data) % 4)
    s = 0
    for (w,) in struct.iter_unpack(">I", data):
        s += w
        s = (s & 0xFFFFFFFF) + (s >> 32)
    return s


def test_import_real_images(runs, tmp_path):
    checked = 0
    for r in runs:
        where = f"[{r.name}]"
        d = str(tmp_path / r.name)
        imported = cli_json("s390_machine.cli", "import", d, "--memory", r.path("memory"),
                            "--cpus-from", r.path("qemu_elf"), "--no-progress")
        shown = cli_json("s390_machine.cli", "show", d)
        assert imported == shown, where
        assert shown["memory_size"] == r.size, where

        # the real os_info page, checked by the suite and, independently, here
        checks = {c["check"]: c for c in shown["meminfo"]["checks"]}
        for name in HEADER_CHECKS:
            assert checks[name]["ok"], f"{where} meminfo check {name}: {checks[name]}"
        ptr = u64(r.read_image("memory", LC_OS_INFO, 8))
        assert ptr and ptr % 4096 == 0, where
        page = r.read_image("memory", ptr, 4096)
        assert page[:8] == OSINFOSZ, where
        assert cksm(page[0x0C:]) == struct.unpack_from(">I", page, 8)[0], f"{where} CKSM of the real os_info page"
        ck_addr, ck_size = struct.unpack_from(">QQ", page, 0x10)
        entry0 = struct.unpack_from(">QQI", page, 0x20)
        assert entry0 == (0, 0, 0), f"{where} real kernels leave os_info entry 0 (VMCOREINFO) empty: {entry0}"

        # the crashkernel range: /proc/iomem's "Crash kernel" line, os_info, s390-machine
        if r.config.kdump:
            base, size = r.crash
            assert checks["crashkernel"]["ok"], where
            assert (ck_addr, ck_size) == (base, size), where
            assert shown["crashkernel"] == {"base": base, "size": size}, \
                f"{where} {shown['crashkernel']} != iomem {r.manifest['crash_kernel']['line']}"
            assert size == int(r.config.crashkernel.rstrip("M")) << 20, where
            # the real kexec-tools loaded kdump, but only our kexec-s390 writes the segment table
            assert not checks["kdump loaded"]["ok"] and checks["kdump loaded"]["wait_code"] == "0x4580", where
        else:
            assert r.crash is None and (ck_addr, ck_size) == (0, 0), where
            assert shown["crashkernel"] is None, where
            assert not checks["crashkernel"]["ok"] and checks["crashkernel"]["wait_code"] == "0x4523", where

        # vmcoreinfo through lowcore 0xE0C, as the kdump kernel finds it
        vi = shown["vmcoreinfo"]
        assert vi is not None, where
        assert vi["osrelease"] == r.release, where
        assert vi["source"] == "lowcore 0xE0C note", where
        assert shown["kernel"]["release"] == r.release, where
        assert shown["kernel"]["command_line"] == r.manifest["append"], where

        # CPUs from the QEMU ELF dump, equal to `info registers` of the same instant
        qemu_regs = r.qemu_registers()
        assert len(shown["cpus"]) == r.config.cpus == len(qemu_regs), where
        for cpu, qemu in zip(shown["cpus"], qemu_regs):
            assert cpu["psw_addr"] == qemu["psw_addr"] and psw_masks_agree(cpu["psw_mask"], qemu), where
        checked += 1
    assert checked == len(runs) == 3
