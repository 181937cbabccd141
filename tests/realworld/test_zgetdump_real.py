"""Issue 9: our ELF and s390 outputs of real s390x dumps pass zgetdump -i (s390-tools' s390x
binary under qemu-user) and open in libkdumpfile."""

import pytest

from tests.conftest import peer_kdumpfile, run_cli
from tests.test_zgetdump import _info, zgetdump  # noqa: F401  (the fixture, shared)

pytestmark = pytest.mark.realworld


def test_zgetdump_and_libkdumpfile_take_our_outputs_of_real_dumps(runs, zgetdump, tmp_path):  # noqa: F811
    checked = 0
    kdumpfile = peer_kdumpfile()
    for run in runs:
        for fmt, zfmt in (("elf", "elf"), ("s390", "s390")):
            out = str(tmp_path / f"{run.name}.{fmt}")
            run_cli("vmcore.cli", "convert", run.path("qemu_elf"), "-o", out, "-f", fmt, check=True)
            f = _info(zgetdump, out)
            assert f["Dump format"] == zfmt
            assert f["UTS kernel release"] == run.release
            assert f["System arch"] == "s390x (64 bit)"
            assert f["CPU count (online)"] == str(run.config.cpus)
            assert f["Dump memory range"] == f"{run.size >> 20} MB"
            if fmt == "elf":
                k = kdumpfile.kdumpfile(out)
                assert k.attr["linux.uts.release"] == run.release
            checked += 1
    assert checked == 2 * len(runs) >= 6
