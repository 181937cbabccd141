"""What every CLI of the suite shares: error lines and exit codes, --json output, progress bars.

A CLI module parses arguments, calls one library function and prints; errors
become one line on stderr with the exit code of their class (dumpkit.errors).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import sys
from typing import Any, Callable, Iterator

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from dumpkit.errors import EXIT_IO, EXIT_USAGE, DumpToolError
from dumpkit.parallel import reuse_large_buffers



class _StdConsole:
    """A rich Console on sys.stdout (or sys.stderr) as the stream is when something prints, not
    as it was at import: a caller that swaps the stream (the test suite runs the CLIs in-process)
    gets the output, and a new stream gets a Console that judges it anew (terminal, colours)."""

    def __init__(self, stderr: bool = False):
        self._stderr = stderr
        self._stream: Any = None
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        stream = sys.stderr if self._stderr else sys.stdout
        if self._console is None or stream is not self._stream:
            self._stream, self._console = stream, Console(stderr=self._stderr, soft_wrap=True)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


stdout = _StdConsole()
stderr = _StdConsole(stderr=True)


# typer up to 0.25 re-exports click's exceptions, later releases carry their own copy of
# click; both keep click's class names, so the base of every usage error is found by name.
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_EXIT = tuple({typer.Exit, *(c for c in typer.BadParameter.__mro__ if c.__name__ == "Exit")})


def new_app(help: str) -> typer.Typer:
    """The Typer app of one CLI: -h and --help everywhere, --version, help when called bare."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, help=help,
                      context_settings={"help_option_names": ["-h", "--help"]})

    def show_version(ctx: typer.Context, value: bool) -> None:
        if value:
            print(version_text(ctx.find_root().info_name or "s390-dumptools"))
            raise typer.Exit(0)

    @app.callback()
    def _root(version: bool = typer.Option(False, "--version", is_eager=True, expose_value=False,
                                           callback=show_version,
                                           help="show the version and the native extension's state")) -> None:
        pass

    return app


def version_text(prog: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    import native
    try:
        ver = version("s390-dumptools")
    except PackageNotFoundError:
        ver = "unknown (running from a source tree that is not installed)"
    return f"{prog} (s390-dumptools) {ver}\n{native.describe()}"


def run(app: typer.Typer, prog: str, argv: list[str] | None = None) -> int:
    """Run a typer app; map the suite's errors to one stderr line and an exit code."""
    try:
        rv = app(args=argv, prog_name=prog, standalone_mode=False)
        return rv if isinstance(rv, int) else 0   # click returns typer.Exit's code here
    except DumpToolError as exc:
        _error_line(prog, str(exc))
        return exc.exit_code
    except _EXIT as exc:
        return exc.exit_code
    except typer.Abort:
        _error_line(prog, "aborted")
        return 130
    except _CLICK_EXCEPTION as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":   # called with nothing: typer showed the help
            return EXIT_USAGE
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else prog
        _error_line(where, f"{exc.format_message()} (see '{where} -h')")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error_line(prog, "interrupted")
        return 130
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "EIO")
        where = f": {exc.filename}" if exc.filename else ""
        _error_line(prog, f"{exc.strerror or exc} ({name}){where}")
        return EXIT_IO


def main_for(app: typer.Typer, prog: str) -> Callable[[], None]:
    def main() -> None:
        install_signal_handlers()
        tolerate_any_terminal()
        reuse_large_buffers()
        try:
            code = run(app, prog)
        except Terminated as exc:
            code = exc.exit_code
            _error_line(prog, f"{exc}; its temporary files were removed, nothing is claimed complete")
        sys.exit(code)

    main.app, main.prog = app, prog     # what runs it in-process: run(main.app, main.prog, argv)
    return main


def tolerate_any_terminal() -> None:
    """On a terminal that cannot show every character (LC_ALL=C with PYTHONIOENCODING=ascii, a
    Latin-1 locale), print what it cannot show as '?' (stdout) or a backslash escape (stderr)
    instead of crashing; rich draws its tables in ASCII there by itself."""
    for stream, errors in ((sys.stdout, "replace"), (sys.stderr, "backslashreplace")):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding and not encoding.startswith("utf"):
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(errors=errors)


# -- signals: SIGINT, SIGTERM, SIGHUP unwind like an error, so every `with atomic_file` removes its
# temporary; the exit code is 128 + the signal's number, as a shell reports a killed command.

CAUGHT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """Raised in the main thread by a caught signal.  A BaseException, as KeyboardInterrupt: an
    `except Exception` on the way up does not swallow it."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} before the end")
        self.signum = signum
        self.exit_code = 128 + signum


def _on_signal(signum, frame) -> None:
    for s in CAUGHT_SIGNALS:            # the unwinding that follows (temporaries removed) runs to its end
        signal.signal(s, signal.SIG_IGN)
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """Turn SIGINT/SIGTERM/SIGHUP into Terminated (main thread; signals the parent ignored stay
    ignored, as nohup asks)."""
    for s in CAUGHT_SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, _on_signal)


def _error_line(prog: str, message: str) -> None:
    line = " ".join(message.split())  # exactly one line, whatever the message held
    print(f"{prog}: error: {line}", file=sys.stderr)


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    if hasattr(obj, "to_json"):
        return obj.to_json()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def want_progress(force: bool | None = None) -> bool:
    if force is not None:
        return force
    return sys.stderr.isatty()


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool | None = None) -> Iterator[Callable[[int], None]]:
    """Yield an `advance(nbytes)` callable; draws a rich bar on stderr when enabled."""
    if not want_progress(enabled):
        yield lambda n: None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr.console,
        transient=False,
    ) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n: prog.advance(task, n)


def hexaddr(value: int, width: int = 16) -> str:
    return f"0x{value:0{width}x}"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "no", "false")
