"""Fast native helpers: the CKSM checksum and zero-granule scanning.

CKSM (the z/Architecture CHECKSUM instruction, used for the os_info and IPL
parameter block checksums) works like this: read the data as a sequence of
32-bit big-endian words, padding a short final word with zero bytes on its
right.  Starting from a 32-bit value (``initial``, normally 0), add each word;
whenever the sum no longer fits in 32 bits, drop the carry bit and add 1 to
the low 32 bits instead (one's-complement, "end-around carry" addition).  The
answer is that 32-bit sum as it stands: unlike the Internet checksum it is not
inverted, and unlike Linux's generic ``csum_partial`` it is not folded down to
16 bits, so all 32 bits must match.

Functions (all accept any contiguous bytes-like object and do not copy it):

* ``csum_partial(buffer, initial=0) -> int``
* ``zero_ranges(buffer, granule=4096) -> list[tuple[int, int]]``: byte ranges
  of maximal runs of all-zero granules (the last granule may be short).
* ``nonzero_ranges(buffer, granule=4096)``: the complementary runs.
* ``is_zero(buffer) -> bool``
* ``page_rows(buffer, size, ...) -> list[int]``: the struct pages a dump-level
  scan has to decode (not tail pages; a hot flag, anon, or a page type).
* ``deflate_pages(buffers, page_size, level) -> (bytes, sizes)``: every page as
  a zlib stream of its own (or as it is, where the stream is not smaller), the
  whole batch without the GIL, through zlib-ng's own deflate; ``None`` unless
  ``zlib_ng_deflate()`` says it is there (the extension built, zlib-ng's module
  installed and exporting its native API).

``native.reference`` holds slow pure-Python versions of the checksum and the
scans that define the expected results.  When the C extension was not built (no
compiler at install time), ``native._fallback`` serves the checksum, the scans
and ``page_rows`` in pure Python (``deflate_pages`` stays None: the writer then
compresses page by page): the suite still works, only slower, and the first
call of a hot path says so once on stderr;
``BUILT`` and ``describe()`` tell which is in use (``--version`` prints it).
"""
from __future__ import annotations

import functools
import os
import sys

try:
    if os.environ.get("S390_DUMPTOOLS_NO_NATIVE", "") not in ("", "0"):
        raise ImportError("S390_DUMPTOOLS_NO_NATIVE is set")
    from . import _native as _impl
    BUILT = True
except ImportError:  # no compiler when the package was installed (or the fallback was asked for)
    from . import _fallback as _impl
    BUILT = False

__all__ = ["csum_partial", "zero_ranges", "nonzero_ranges", "is_zero", "page_rows", "BUILT", "describe",
           "zlib_ng_deflate", "deflate_pages"]

_warned = False


def describe() -> str:
    """One line on the implementation in use, for --version."""
    if BUILT:
        return f"native extension: built ({_impl.__file__})"
    return "native extension: not built, using the pure-Python fallback (slower)"


def _warn_once(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        global _warned
        if not _warned:
            _warned = True
            print("warning: the native extension (native._native) is not built; checksums and page "
                  "scans use the pure-Python fallback and are slower (reinstall with a C compiler)",
                  file=sys.stderr)
        return func(*args, **kwargs)
    return wrapper


if BUILT:
    csum_partial, zero_ranges, nonzero_ranges, is_zero, page_rows = (
        _impl.csum_partial, _impl.zero_ranges, _impl.nonzero_ranges, _impl.is_zero, _impl.page_rows)
else:
    csum_partial, zero_ranges, nonzero_ranges, is_zero, page_rows = (
        _warn_once(_impl.csum_partial), _warn_once(_impl.zero_ranges),
        _warn_once(_impl.nonzero_ranges), _warn_once(_impl.is_zero), _warn_once(_impl.page_rows))


_zlib_ng: str | None = None          # zlib-ng's version once bound, "" when it cannot be
deflate_pages = None


def zlib_ng_deflate() -> str:
    """zlib-ng's version when deflate_pages can run (bound on the first call), else ""."""
    global _zlib_ng, deflate_pages
    if _zlib_ng is None:
        _zlib_ng = ""
        if BUILT:
            try:
                from zlib_ng import zlib_ng
                _zlib_ng = _impl.bind_zlib_ng(zlib_ng.__file__)
                deflate_pages = _impl.deflate_pages
            except (ImportError, OSError):
                pass
    return _zlib_ng
