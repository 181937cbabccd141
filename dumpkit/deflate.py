"""The zlib the suite inflates and deflates with: zlib-ng (a dependency, fast and releasing the
GIL), or the standard zlib where no zlib-ng is built for this Python (s390x has no wheel on
PyPI): the same streams, slower, said once on stderr."""

from __future__ import annotations

import sys

_module = None


def zlib_module():
    """zlib_ng.zlib_ng, else the standard zlib (one warning line, once per process)."""
    global _module
    if _module is None:
        try:
            from zlib_ng import zlib_ng as mod
        except ImportError:
            import zlib as mod
            print("warning: zlib-ng is not installed for this Python; the standard zlib stands in (slower)",
                  file=sys.stderr)
        _module = mod
    return _module
