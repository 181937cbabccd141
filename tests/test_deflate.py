"""Where no zlib-ng is built for the Python (Debian's s390x Python: PyPI has no s390x wheel), the
standard zlib stands in, said once on stderr, and the streams are the same."""

import subprocess
import sys

from tests.conftest import ROOT

PROGRAM = r"""
import sys
sys.modules["zlib_ng"] = None                  # import zlib_ng fails, as where it is not built
from meminfo_abi.s390_dump_stream import compress_unit, inflate_unit
from vmcore.formats.kdump.codecs import compressor
unit = bytes(range(256)) * 4096
assert inflate_unit(compress_unit(unit)) == unit
flag, fn = compressor("zlib")
import zlib
assert zlib.decompress(fn(unit[:4096])) == unit[:4096]
print(type(sys.modules.get("zlib_ng")).__name__, flag)
"""


def test_the_standard_zlib_stands_in_and_says_so_once():
    proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "zlib-ng" in line]
    assert warnings == ["warning: zlib-ng is not installed for this Python; the standard zlib stands in (slower)"]
    assert proc.stdout.split() == ["NoneType", "1"]      # DUMP_DH_COMPRESSED_ZLIB


def test_zlib_ng_is_used_where_it_is_installed():
    from dumpkit.deflate import zlib_module
    assert zlib_module().__name__ == "zlib_ng.zlib_ng"
