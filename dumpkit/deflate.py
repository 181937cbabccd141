"""The zlib the suite inflates and deflates with: zlib-ng (a dependency, the faster),
or the standard zlib where no zlib-ng is built for this Python (s390x has no wheel on
PyPI): the same streams, slower, said once on stderr."""

from __future__ import annotations

import sys

try:            # at import, with the rest of the program: not in the middle of a read (vmcore mount)
    from zlib_ng import zlib_ng as _module
    _stand_in = False
except ImportError:
    import zlib as _module
    _stand_in = True
_said = False


def zlib_module():
    """zlib_ng.zlib_ng, else the standard zlib (one warning line, once per process)."""
    global _said
    if _stand_in and not _said:
        _said = True
        print("warning: zlib-ng is not installed for this Python; the standard zlib stands in (slower)",
              file=sys.stderr)
    return _module
