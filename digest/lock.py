"""One writer per output directory: an exclusive `flock` on its lock file (site.Site.lock) for the whole run.

The operating system releases the lock when the process ends, however it ends (even SIGKILL), so a
crashed run never blocks the next one. The holder writes its pid into the file for the message a
waiting run prints.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import LockedError
from .files import output_error
from .site import Site

POLL_SECONDS = 0.1


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


@contextmanager
def output_lock(root: Path, wait: float = 0.0, on_wait: Callable[[str], None] = lambda message: None) -> Iterator[Path]:
    """Hold the lock of output directory `root`; wait up to `wait` seconds for it, else LockedError.

    `on_wait` hears once that the lock is busy, when there is time to wait."""
    path = Site(root).lock
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise output_error("write to", path.parent, exc) from exc
    held = waiting = False
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
                break
            except BlockingIOError:
                if not waiting and wait > 0:
                    on_wait(f"waiting up to {wait:g} s for another digest run ({_holder(path)}) to finish")
                    waiting = True
                if time.monotonic() >= deadline:
                    raise LockedError(
                        f"another digest run ({_holder(path)}) is writing to {root}: it holds {path}; "
                        f"waited {wait:g} s (use --lock-wait SECONDS to wait longer)"
                    ) from None
                time.sleep(POLL_SECONDS)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as exc:  # a full disk has no room even for the pid
            raise output_error("write", path, exc) from exc
        yield path
    finally:
        try:
            if held:
                os.ftruncate(fd, 0)  # no stale pid for the next reader
        except OSError:
            pass  # the lock goes with the descriptor all the same
        os.close(fd)  # closing the descriptor releases the flock
