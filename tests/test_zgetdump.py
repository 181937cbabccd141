"""Issue 6 acceptance, the real peer: s390-tools' zgetdump (Debian's s390x build under qemu-user).

zgetdump -i prints the info of our flat s390, extended s390 and ELF outputs without error, and
what `zgetdump -f s390` and `zgetdump -f elf` write (to stdout: 2.16 takes no output
file argument) from our dumps reads back through our reader
with the same pages and CPU registers.

The sysroot (s390-tools, and the libraries zgetdump is linked against, from Debian bookworm
s390x) is built once under ~/.cache/s390-dumptools, never in the repository.  A missing piece
(package, qemu-s390x-static) fails the test with one line; nothing is skipped.

Debian bookworm ships s390-tools 2.16 (2021), which predates the dumper's zlib-compressed
segments (extended format version 2, s390-tools 2.2x, 2023): it reads a version-2 stream as if
it were uncompressed.  The extended stream handed to it is therefore an uncompressed one
(ECKD --no-compress, and a multi-volume set); the compressed one is an expected failure that
documents the gap.
"""

import glob
import os
import re
import shutil
import subprocess

import pytest
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from tests.conftest import run_cli
from tests.realdata import fetch_debs, sysroot
from vmcore.formats import open_dump, write_dump
from vmcore.model import page_digests

pytestmark = pytest.mark.slow      # make check: the real zgetdump under qemu-user

QEMU = "qemu-s390x-static"
ZGETDUMP_PACKAGE = "s390-tools"
# shared library -> the Debian package that ships it (s390x)
LIBRARY_PACKAGES = {
    "libc.so.6": "libc6", "libpthread.so.0": "libc6", "libdl.so.2": "libc6", "libm.so.6": "libc6",
    "libz.so.1": "zlib1g", "libfuse.so.2": "libfuse2", "libfuse3.so.3": "libfuse3-3",
    "libssl.so.3": "libssl3", "libcrypto.so.3": "libssl3", "libglib-2.0.so.0": "libglib2.0-0",
    "libcurl.so.4": "libcurl4", "libjson-c.so.5": "libjson-c5",
}
MB = 1 << 20


def _needed(binary: str) -> list[str]:
    with open(binary, "rb") as fh:
        elf = ELFFile(fh)
        dyn = next((s for s in elf.iter_sections() if isinstance(s, DynamicSection)), None)
        return [t.needed for t in dyn.iter_tags() if t.entry.d_tag == "DT_NEEDED"] if dyn else []


@pytest.fixture(scope="session")
def zgetdump():
    """A function running zgetdump (s390x, under qemu-user) with arguments; returns the process."""
    qemu = shutil.which(QEMU)
    if qemu is None:
        pytest.fail(f"{QEMU} is not installed (apt-get install qemu-user-static)")
    tools = fetch_debs(ZGETDUMP_PACKAGE)[0]
    found = glob.glob(os.path.join(tools, "*bin", "zgetdump")) + glob.glob(os.path.join(tools, "usr", "*bin",
                                                                                        "zgetdump"))
    if not found:
        pytest.fail(f"no zgetdump in the {ZGETDUMP_PACKAGE} package ({tools})")
    rel = os.path.relpath(found[0], tools)
    needed = _needed(found[0])
    unknown = [n for n in needed if n not in LIBRARY_PACKAGES]
    if unknown:
        pytest.fail(f"zgetdump needs {', '.join(unknown)}: no Debian package known for it (LIBRARY_PACKAGES)")
    packages = sorted({LIBRARY_PACKAGES[n] for n in needed})
    roots = [tools] + fetch_debs(*packages)
    root = sysroot("sysroot-zgetdump", roots)
    binary = os.path.join(root, rel)

    def run(*args: str, stdout=None) -> subprocess.CompletedProcess:
        return subprocess.run([qemu, "-L", root, binary, *args], stdout=stdout or subprocess.PIPE,
                              stderr=subprocess.PIPE, text=stdout is None, timeout=600)
    proc = run("-v")
    if proc.returncode != 0 or "zgetdump" not in (proc.stdout + proc.stderr):
        pytest.fail(f"zgetdump does not run under {QEMU}: {(proc.stderr or proc.stdout).strip()}")
    return run


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """A 128 MiB, 2-CPU machine's stand-alone dumps and our outputs made from them."""
    d = tmp_path_factory.mktemp("zg")
    out = {}
    for name, extra in (("nc", ["--no-compress"]), ("zlib", [])):
        m = str(d / f"m_{name}")
        run_cli("s390_machine.cli", "create", m, "--memory", "128M", "--cpus", "2", "--crashkernel", "32M",
                "--fill", "0.25", check=True)
        dev = str(d / f"{name}.img")
        run_cli("zipl_sadump.cli", "build", "--device", dev, "--type", "eckd", "--size", "256M", check=True)
        run_cli("zipl_sadump.cli", "ipl", "--device", dev, "--machine", m, "--kdump", "off", "--no-map", *extra,
                check=True)
        out[f"ext_{name}"] = str(d / f"ext_{name}.dump")
        run_cli("zipl_sadump.cli", "extract", "--device", dev, "-f", "s390_ext", "-o", out[f"ext_{name}"], check=True)
    vols = [str(d / f"v{i}.img") for i in range(3)]
    m = str(d / "m_mv")
    run_cli("s390_machine.cli", "create", m, "--memory", "128M", "--cpus", "2", "--fill", "0.25", check=True)
    run_cli("zipl_sadump.cli", "build", "--multi-volume", ",".join(vols), "--size", "16M", check=True)
    run_cli("zipl_sadump.cli", "ipl", "--device", ",".join(vols), "--machine", m, "--kdump", "off", "--no-map",
            check=True)
    out["ext_mv"] = str(d / "ext_mv.dump")
    run_cli("zipl_sadump.cli", "extract", "--device", ",".join(vols), "-f", "s390_ext", "-o", out["ext_mv"],
            check=True)
    with open_dump(out["ext_nc"]) as src:
        out["flat"] = str(d / "ours.s390")
        out["elf"] = str(d / "ours.elf")
        write_dump(src, out["flat"], "s390")
        write_dump(src, out["elf"], "elf")
        out["pages"] = page_digests(src)
        out["cpus"] = [c.to_json() for c in src.cpus]
    out["dir"] = d
    return out


def _info(zgetdump, path: str) -> dict[str, str]:
    proc = zgetdump("-i", path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "ERROR" not in text and "not complete" not in text, text
    fields = {}
    for line in text.splitlines():
        m = re.match(r"\s+(.+?)\.*: (.*)$", line)
        if m:
            fields[m.group(1).strip()] = m.group(2).strip()
    return fields


@pytest.mark.parametrize("what,fmt", [("flat", "s390"), ("ext_nc", "s390_ext"), ("ext_mv", "s390_ext"),
                                      ("elf", "elf")])
def test_zgetdump_info_on_our_outputs(zgetdump, ours, what, fmt):
    f = _info(zgetdump, ours[what])
    assert f["Dump format"] == fmt
    assert f["Dump memory range"] == "128 MB"
    assert f["CPU count (online)"] == "2"
    assert f["UTS kernel release"] == "6.1.0-s390dumptools"
    assert f["System arch"] == "s390x (64 bit)"
    if fmt != "elf":
        assert f["CPU count (real)"] == "2" and f["Real memory range"] == "128 MB"
        assert "Dump created" in f and "Dump ended" in f
    if what == "flat":
        assert f["Version"] == "5"


@pytest.mark.xfail(strict=True, reason="s390-tools 2.16 (Debian bookworm) predates zlib-compressed dump segments")
def test_zgetdump_info_on_a_compressed_extended_stream(zgetdump, ours):
    f = _info(zgetdump, ours["ext_zlib"])
    assert f["Dump memory range"] == "128 MB"


@pytest.mark.parametrize("src", ["ext_nc", "flat", "elf"])
@pytest.mark.parametrize("fmt", ["s390", "elf"])
def test_we_read_what_zgetdump_writes(zgetdump, ours, src, fmt, tmp_path):
    out = str(tmp_path / f"zg.{fmt}")
    with open(out, "wb") as fh:                 # `zgetdump -f FMT DUMP > FILE` (2.16 has no FILE argument)
        proc = zgetdump("-f", fmt, ours[src], stdout=fh)
    err = proc.stderr.decode()
    assert proc.returncode == 0 and "Success: Dump has been copied" in err, err
    with open_dump(out) as d:
        assert d.attrs.format == fmt and d.attrs.complete, d.attrs.incomplete_reason
        assert page_digests(d) == ours["pages"]
        got = [c.to_json() for c in d.cpus]
    want = ours["cpus"]
    # zgetdump's ELF notes have no breaking-event address, and its s390 writer leaves the TOD
    # programmable register as the memory held it: compare what each output carries
    drop = {"last_break"} | ({"address"} if fmt == "elf" else set())
    strip = lambda regs: [{k: v for k, v in r.items() if k not in drop} for r in regs]  # noqa: E731
    assert strip(got) == strip(want)
