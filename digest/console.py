"""What the commands say on stderr, and expected failures as one line and a documented exit code.

Every command runs its work inside `expected_errors()`: a `DigestError` becomes
`digest: error: MESSAGE` and exits with the error's code; Ctrl-C and SIGTERM exit 130 and 143.
A command-line mistake (an unknown option, a bad value, a missing argument) is one such line too,
and exit 2: the `digest` command group is `OneLineErrors`.
"""

from __future__ import annotations

import errno
import sys
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console
from typer.core import TyperGroup

from .errors import EXIT_INTERRUPTED, EXIT_OUTPUT, EXIT_TERMINATED, EXIT_USAGE, DigestError, Terminated

# No emoji codes: a path or a line number such as `x.toml:100:` must not become an emoji. Lines that
# hold a path, a key or feed text are printed with markup=False too (`[tag]` stays as it is).
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

# Failures that only writing can meet: a write that slipped past its own handling is still an
# output error (exit 6), not a traceback.
_WRITE_ERRNOS = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS, errno.EFBIG)
                          if code is not None)


def error(message: str) -> None:
    """`digest: error: MESSAGE` on stderr, as it is (no rich markup)."""
    err.print(f"digest: error: {message}", markup=False)


def warning(message: str) -> None:
    err.print(f"digest: warning: {message}", markup=False)


@contextmanager
def expected_errors() -> Iterator[None]:
    """Turn the project's exceptions (and an interrupt) into one line on stderr and the exit code."""
    try:
        yield
    except DigestError as exc:
        error(str(exc))
        raise typer.Exit(exc.exit_code)
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        error(f"cannot write{where}: {exc.strerror or exc} (free some space, or choose another --out)")
        raise typer.Exit(EXIT_OUTPUT)
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        err.print(f"digest: interrupted{' by SIGTERM' if terminated else ''}", markup=False)
        raise typer.Exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)


# click's exceptions, as this typer raises them (typer >= 0.25 carries its own copy of click).
_CLICK_EXCEPTIONS = sys.modules[typer.BadParameter.__module__]
_ClickException = _CLICK_EXCEPTIONS.ClickException
_NoArgsIsHelp = getattr(_CLICK_EXCEPTIONS, "NoArgsIsHelpError", ())  # click >= 8.2


def usage_line(exc: Exception) -> str:
    """A command-line mistake as one sentence, with the help to read: click's message, no usage box."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    if message[:1].isupper() and message[1:2].islower():  # "Invalid value for ...", "No such option: ..."
        message = message[0].lower() + message[1:]
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


class OneLineErrors(TyperGroup):
    """The `digest` command group: whatever runs it (the installed script, `python -m digest.cli`, a
    test's CliRunner), a command-line mistake is one `digest: error:` line and exit 2 instead of
    click's usage box, and an Abort is an interrupt; --help is as click prints it."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        except _NoArgsIsHelp as exc:  # a bare `digest` shows the help (click >= 8.2 raises for it)
            exc.show()
            code = exc.exit_code
        except _ClickException as exc:
            error(usage_line(exc))
            code = EXIT_USAGE
        except typer.Abort:
            err.print("digest: interrupted", markup=False)
            code = EXIT_INTERRUPTED
        sys.exit(code if isinstance(code, int) else 0)
