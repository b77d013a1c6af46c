"""What the commands say on stderr, and expected failures as one line and a documented exit code.

Every command runs its work inside `expected_errors()`: a `DigestError` becomes
`digest: error: MESSAGE` and exits with the error's code; Ctrl-C and SIGTERM exit 130 and 143.
"""

from __future__ import annotations

import errno
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console

from .errors import EXIT_INTERRUPTED, EXIT_OUTPUT, EXIT_TERMINATED, DigestError, Terminated

err = Console(stderr=True, highlight=False, soft_wrap=True)

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
