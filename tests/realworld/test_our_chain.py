"""Issue 9: our whole chain on a real machine image.  The real production kernel's memory
(pmemsave) is imported, our kexec-s390 loads the same real kernel for kdump, our stand-alone
dumper takes the kdump path, our kdump kernel saves the dump; the pages that could not change
between the pmemsave instant and the real panic (kernel text, the init's marker pages) must equal
those in the real kernel's own /proc/vmcore."""

import random

import pytest

from tests.conftest import cli_json, peer_kdumpfile, run_cli
from tests.realdata import make_initrd
from vmcore.formats import open_dump

pytestmark = pytest.mark.realworld
PAGE = 4096


@pytest.fixture(scope="module")
def chains(kdump_runs, tmp_path_factory):
    out = []
    for run in kdump_runs:
        tmp = tmp_path_factory.mktemp(f"chain-{run.name}")
        m = str(tmp / "m")
        d = cli_json("s390_machine.cli", "import", m, "--memory", run.path("memory"),
                     "--cpus-from", run.path("qemu_elf"))
        assert d["meminfo"]["header_valid"] and d["crashkernel"]["base"] == run.crash[0]
        initrd = make_initrd(str(tmp / "initrd.img"))
        load = cli_json("kexec_s390.cli", "load", "-p", run.manifest["kernel_image"], "--initrd", initrd,
                        "--reuse-cmdline", "--machine", m)
        assert load["crashkernel"] == {"base": hex(run.crash[0]), "size": hex(run.crash[1])}
        assert cli_json("kexec_s390.cli", "status", "--machine", m)["kdump_intact"]
        dev = str(tmp / "dasd.img")
        run_cli("zipl_sadump.cli", "build", "--device", dev, "--type", "eckd", "--size", "2G", check=True)
        r = cli_json("zipl_sadump.cli", "ipl", "--device", dev, "--machine", m)
        assert r["decision"] == "kdump", r["reason"]
        ours = str(tmp / "ours.elf")
        run_cli("vmcore.cli", "save", "--machine", m, "-o", ours, check=True)
        out.append((run, ours))
    assert len(out) >= 2
    return out


def test_our_vmcore_of_a_real_kernel_matches_the_real_proc_vmcore(chains):
    checked_runs = 0
    for run, ours in chains:
        text0, text1 = run.text
        pattern = sorted(run.pattern_pages())
        with open_dump(ours) as mine, open_dump(run.path("vmcore")) as real:
            assert mine.attrs.vmcoreinfo.osrelease == real.attrs.vmcoreinfo.osrelease == run.release
            assert [(c.start, c.end) for c in mine.chunks] == [(c.start, c.end) for c in real.chunks
                                                                if c.kind != "absent"]
            assert len(mine.cpus) == len(real.cpus) == run.config.cpus
            rnd = random.Random(9)
            text_pages = list(range(text0 & ~(PAGE - 1), text1, PAGE))
            pages = rnd.sample(text_pages, min(400, len(text_pages))) + pattern
            # low pages (below the crashkernel size) come through the swap in both dumps
            low = [p for p in pages if p < run.crash[1]]
            assert len(low) > 100
            for p in pages:
                assert mine.read(p, PAGE) == real.read(p, PAGE), hex(p)
            # and equal the production kernel's memory at the pmemsave instant
            for p in pages[:200]:
                assert mine.read(p, PAGE) == run.read_image("memory", p, PAGE), hex(p)
        checked_runs += 1
    assert checked_runs == len(chains)


def test_libkdumpfile_opens_our_dump_of_a_real_kernel(chains):
    kdumpfile = peer_kdumpfile()
    for run, ours in chains:
        k = kdumpfile.kdumpfile(ours)
        assert k.attr["arch.name"] == "s390x"
        assert k.attr["linux.uts.release"] == run.release
        with open_dump(ours) as d:
            for p in sorted(run.pattern_pages())[:50]:
                assert bytes(k.read(kdumpfile.KDUMP_KPHYSADDR, p, 64)) == d.read(p, 64)
