"""The suite's typed errors and their exit codes.

Every CLI turns one of these into a single line on stderr and its exit code;
anything else escaping a parser is a bug (the fuzz harnesses check that).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2          # wrong arguments (typer/click also uses 2)
EXIT_BAD_INPUT = 3      # unreadable, corrupt or unsupported input
EXIT_INCOMPLETE = 4     # a dump that is readable but not complete
EXIT_IO = 5             # the operating system refused (ENOSPC, EIO, EACCES, ...)
EXIT_UNSUPPORTED = 6    # not possible on this host (e.g. real kexec_load off s390x)


# One class per exit code below, alike on purpose (the duplicates report lists them as a pair):
# callers catch by class, every CLI turns a class into its exit code.
class DumpToolError(Exception):
    """Base of every error the suite reports to a user."""

    exit_code = EXIT_BAD_INPUT


class UsageError(DumpToolError):
    exit_code = EXIT_USAGE


class BadInputError(DumpToolError):
    exit_code = EXIT_BAD_INPUT


class IncompleteDumpError(DumpToolError):
    exit_code = EXIT_INCOMPLETE


class DumpIOError(DumpToolError):
    exit_code = EXIT_IO


class UnsupportedError(DumpToolError):
    exit_code = EXIT_UNSUPPORTED
