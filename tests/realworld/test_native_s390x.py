"""Issue 21: the native extension on big-endian s390x.

native/_native.c cross-built for s390x by the harness (suite-initramfs) and loaded by Debian's
s390x Python 3.11, under qemu-user: tests/test_native.py itself runs there, the C extension
against native.reference and the pure-Python fallback.  pytest and hypothesis come from the
host's site-packages (pure Python; the host's compiled modules carry an x86_64 suffix, which
the s390x interpreter never loads)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig

import pytest

from tests.conftest import ROOT
from tests.realworld import harness, suite_initramfs

pytestmark = pytest.mark.realworld


@pytest.fixture(scope="module")
def s390x_root(tmp_path_factory):
    """The kdump initrd of the suite-on-s390x run unpacked: Python, its libraries, the suite."""
    if shutil.which("qemu-s390x-static") is None:
        pytest.fail("qemu-s390x-static is not installed (apt-get install qemu-user-static)")
    try:
        res = harness.build_all(only="suite-initramfs")["suite-initramfs"]
    except harness.StepError as exc:
        pytest.fail(f"realworld harness FAILED at step {exc.step}: {exc}")
    root = str(tmp_path_factory.mktemp("s390x-root"))
    suite_initramfs.unpack_newc(res["kdump_initrd"], root)
    return root, res


def s390x_python(root: str, *args: str, cwd: str, timeout: float = 900) -> subprocess.CompletedProcess:
    host_site = sysconfig.get_paths()["purelib"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([f"{root}/{suite_initramfs.SUITE_DIR}",
                                                       f"{root}/{suite_initramfs.SUITE_DIR}/site", host_site]),
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("S390_DUMPTOOLS_NO_NATIVE", None)
    return subprocess.run(["nice", "qemu-s390x-static", "-L", root, f"{root}/{suite_initramfs.PYTHON}", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def test_the_extension_is_built_for_s390x_and_big_endian(s390x_root, tmp_path):
    root, res = s390x_root
    assert res["native"].endswith("_native.cpython-311-s390x-linux-gnu.so"), res["native"]
    proc = s390x_python(root, "-c", "import sys, platform, native; "
                        "print(sys.byteorder, platform.machine(), native.BUILT, native.describe())", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:3] == ["big", "s390x", "True"] and "s390x-linux-gnu.so" in proc.stdout


def test_native_tests_pass_on_s390x(s390x_root, tmp_path):
    """tests/test_native.py on s390x: every test but the one that starts the CLI as a child
    process (qemu-user without binfmt_misc cannot start an s390x child; the guest run
    suite-on-s390x starts the CLIs on s390x instead)."""
    root, _res = s390x_root
    shutil.copy(os.path.join(ROOT, "tests", "test_native.py"), tmp_path / "test_native.py")
    proc = s390x_python(root, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_native.py",
                        "-k", "not cli_runs", cwd=str(tmp_path))
    tail = proc.stdout.strip().splitlines()[-1:] or [proc.stderr.strip()[-300:]]
    assert proc.returncode == 0, f"{tail}\n{proc.stdout[-3000:]}"
    m = re.search(r"(\d+) passed", tail[0])
    assert m and int(m.group(1)) >= 140 and "failed" not in tail[0], tail
