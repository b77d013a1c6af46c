"""Ctrl-C and SIGTERM: how a run is stopped with the same cleanup whatever it is doing.

`sigterm_as_interrupt` turns SIGTERM into `Terminated` (a KeyboardInterrupt) for the CLI's commands.
An interrupt raised while native code was calling back into Python (llama.cpp's log callback runs
thousands of times a run) is printed by ctypes, with a traceback, and dropped: the run would go on to
its end. So while llama.cpp works (`with IN_NATIVE:`), the signal handlers only note the interrupt
(`interrupt_now_or_later`), and it is raised as soon as llama.cpp returns.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from .errors import Terminated

_noted: list[KeyboardInterrupt] = []
_in_native = [0]


def note_interrupt(exc: KeyboardInterrupt) -> None:
    _noted[:] = [exc]


def forget_interrupts() -> None:
    _noted.clear()


def raise_noted_interrupt() -> None:
    if _noted:
        raise _noted.pop()


def interrupt_now_or_later(exc: KeyboardInterrupt) -> None:
    """What a signal handler does: raise `exc`, or, inside a native call, note it for its end."""
    if _in_native[0]:
        note_interrupt(exc)
    else:
        raise exc


class InNative:
    """`with IN_NATIVE:` around a llama.cpp call: an interrupt meanwhile is raised when it returns."""

    def __enter__(self) -> None:
        _in_native[0] += 1

    def __exit__(self, *exc_info) -> None:
        _in_native[0] -= 1
        if exc_info[0] is None:
            raise_noted_interrupt()


IN_NATIVE = InNative()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` (a KeyboardInterrupt), so a `kill` stops a run with
    the same cleanup as Ctrl-C: no partial post, the engine and the lock released. While llama.cpp
    works, either signal is noted and raised when it returns (`interrupt_now_or_later`): raised
    in a native callback, ctypes would print it and drop it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        interrupt_now_or_later(Terminated() if signum == signal.SIGTERM else KeyboardInterrupt())

    forget_interrupts()
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        forget_interrupts()
