"""`digest run --log-file PATH`: one line per stage with its time, for runs nobody watches.

    2026-11-23T06:00:01Z digest[4242] feeds ok 0.4s topics=6 trending=3 covered=4
    2026-11-23T06:00:02Z digest[4242] model ok 0.9s name=SmolLM2-135M-Instruct.Q4_1
    2026-11-23T06:00:17Z digest[4242] generation ok 15.2s sections=14 tokens=1460 tok/s=96.1
    2026-11-23T06:00:17Z digest[4242] write ok 0.0s path=site/content/posts/2026-11-23-ai-auto-summary.md
    2026-11-23T06:00:17Z digest[4242] exit 0 wrote site/content/posts/2026-11-23-ai-auto-summary.md

A failed stage is logged as `STAGE failed`, then the error and the exit code.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import EXIT_INTERRUPTED, EXIT_TERMINATED, DigestError, OutputError, Terminated

_FORMAT = "%(asctime)s digest[%(process)d] %(message)s"


def _fields(info: dict) -> str:
    return "".join(f" {key}={value}" for key, value in info.items())


class _LogFile(logging.FileHandler):
    """A log file whose write failures (a full disk) are kept, not printed as logging's traceback."""

    failure: OSError | None = None

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's naming
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            self.failure = self.failure or exc
        else:  # pragma: no cover - a formatting bug of ours
            super().handleError(record)


class RunLog:
    """Stage timings to a logging.Logger; with no file, a RunLog that writes nothing.

    A log file that cannot be written any more (a full disk) is reported once, as one warning line,
    and the run goes on without it: the post matters more than its log."""

    def __init__(self, logger: logging.Logger | None = None, handler: _LogFile | None = None, path: Path | None = None):
        self.logger = logger
        self.handler = handler
        self.path = path
        self.outcome = ""

    def line(self, message: str) -> None:
        if self.logger is None:
            return
        self.logger.info(message)
        failure = self.handler.failure if self.handler is not None else None
        if failure is not None:
            from .console import warning

            warning(f"cannot write the log file {self.path}: {failure.strerror or failure}; "
                    "the run goes on without it")
            self.logger = None

    @contextmanager
    def stage(self, name: str) -> Iterator[dict]:
        """Time the block; log `NAME ok 1.2s k=v ...` with what the block put in the dict, or `NAME failed`."""
        info: dict = {}
        start = time.perf_counter()
        try:
            yield info
        except BaseException:
            self.line(f"{name} failed {time.perf_counter() - start:.1f}s{_fields(info)}")
            raise
        self.line(f"{name} ok {time.perf_counter() - start:.1f}s{_fields(info)}")


@contextmanager
def run_log(path: Path | None) -> Iterator[RunLog]:
    """A RunLog appending to `path` (None: logging off) that logs the run's exit code however it ends."""
    if path is None:
        yield RunLog()
        return
    try:
        handler = _LogFile(path, mode="a", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot open the log file {path}: {exc.strerror or exc}") from exc
    formatter = logging.Formatter(_FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logger = logging.Logger("digest.run", logging.INFO)  # not registered: nothing else logs through it
    logger.addHandler(handler)
    log = RunLog(logger, handler, path)
    try:
        yield log
        log.line(f"exit 0 {log.outcome}".rstrip())
    except DigestError as exc:
        log.line(f"error: {exc}")
        log.line(f"exit {exc.exit_code}")
        raise
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):
            log.line(f"exit {EXIT_TERMINATED} terminated")
        else:
            log.line(f"exit {EXIT_INTERRUPTED} interrupted")
        raise
    except SystemExit as exc:
        log.line(f"exit {exc.code}")
        raise
    except Exception as exc:
        code = getattr(exc, "exit_code", 1)  # click's usage errors carry theirs (2)
        log.line(f"error: {exc}")
        log.line(f"exit {code}")
        raise
    finally:
        logger.removeHandler(handler)
        try:
            handler.close()  # flushes: on a full disk the last lines are lost, and the warning said so
        except OSError:
            pass
