"""What long work says on stderr while it runs: each phase, and the sections as they are written.

On a terminal: a dim line per phase and a rich progress bar, redrawn in place and gone at the end.
Anywhere else (cron, systemd, a pipe): one plain line per phase, per finished section and, while
the engine works, one every `HEARTBEAT` seconds (when it reports: the batching engine after each prompt
it reads and each step, the others after each section), each with the UTC time, for a log. Where
nothing reports for `HEARTBEAT` seconds inside a block of work (loading a model, the sequential
engine's long section, a machine too busy for the next step), a watch thread says what is still
going on, so that a log never goes quiet for long:

    2026-12-07T10:15:02Z digest: reading feeds
    2026-12-07T10:15:03Z digest: generating 14 sections with SmolLM2-135M-Instruct.Q8_0 (batched engine)
    2026-12-07T10:15:09Z digest: generating: 3/14 sections, 412 tokens, 38 tok/s
    2026-12-07T10:15:14Z digest: still generating 14 sections with ... (11 s)

No bar, colour or markup there. Quiet: nothing (the command prints its result alone). The engines
never print: they call the progress callback that `Reporter.progress` gives (engine/base.py).
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Iterator

from .console import err
from .engine.base import Progress, ProgressCallback

# Seconds between two lines of a log while the engine reports and no section is finished.
HEARTBEAT = 5.0
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # as `run --log-file` writes it (runlog.py)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Reporter:
    """The status lines and progress of one command: a bar on a terminal, a timestamped log elsewhere.

    `terminal`: whether stderr is one (default: ask it); `clock` (seconds, for the heartbeat) and `now`
    (the time printed) are there for tests to inject."""

    def __init__(self, *, quiet: bool = False, terminal: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = _utc_now,
                 every: float = HEARTBEAT):
        if terminal is None:
            terminal = sys.stderr.isatty()
        self.quiet = quiet
        self.mode = "off" if quiet else "bar" if terminal else "log"
        self.clock, self.now, self.every = clock, now, every
        # The log's last line (its clock time) and the phase under way, for the watch thread.
        self.last_line, self.phase, self.phase_began = clock(), "", clock()
        self._writing = threading.Lock()

    def say(self, message: str) -> None:
        """A phase begins: `reading feeds`, `loading model`, ..."""
        if self.mode == "bar":
            err.print(f"{message}…", style="dim", markup=False, emoji=False, highlight=False)
        elif self.mode == "log":
            self.phase, self.phase_began = message, self.clock()
            self.log(message)

    def tell(self, message: str) -> None:
        """What the work came to (`wrote 7 topics: ...`): as it is on a terminal, timestamped in a log."""
        if self.mode == "bar":
            err.print(message, markup=False, emoji=False, highlight=False)
        elif self.mode == "log":
            self.log(message)

    def log(self, message: str) -> None:
        """A line of the log, noted as its last (both the work's thread and the watch thread write)."""
        with self._writing:
            self.last_line = self.clock()
            self.line(message)

    def watch_tick(self) -> None:
        """The watch thread's look: when the log has had no line for `every` seconds, say what goes on."""
        now = self.clock()
        if now - self.last_line >= self.every:
            what = self.phase or "working"
            self.log(f"still {what} ({now - self.phase_began:.0f} s)")

    def line(self, message: str) -> None:
        """`TIME digest: MESSAGE` on stderr, as it is, at once."""
        stream = sys.stderr  # looked up each time: a test (or the CLI runner) may have swapped it
        stream.write(f"{self.now().astimezone(timezone.utc).strftime(TIME_FORMAT)} digest: {message}\n")
        stream.flush()

    @contextmanager
    def progress(self, what: str = "generating") -> Iterator[ProgressCallback | None]:
        """The engine's progress callback for the block (None when quiet)."""
        if self.mode == "off":
            yield None
        elif self.mode == "log":
            with self._watching():
                yield _LogProgress(self, what)
        else:
            with _bar(what) as update:
                yield update


    @contextmanager
    def _watching(self) -> Iterator[None]:
        """A daemon thread that calls `watch_tick` a few times a heartbeat, for the block's length
        (llama.cpp's decode releases the GIL, so it runs while the engine works)."""
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(self.every / 4):
                self.watch_tick()

        thread = threading.Thread(target=watch, name="digest-log-watch", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


class _LogProgress:
    """A line when a section is finished, and a heartbeat while tokens are being generated.

    A callback whose count goes back or whose total changes is a new batch: the retry rounds of
    sections that failed a check (pipeline.generate), numbered from 2."""

    def __init__(self, reporter: Reporter, what: str):
        self.reporter, self.what = reporter, what
        self.round, self.done, self.total = 0, 0, None
        self.last = reporter.clock()

    def __call__(self, p: Progress) -> None:
        now = self.reporter.clock()
        begins = p.total != self.total or p.done < self.done
        if begins:
            self.round, self.total, self.done = self.round + 1, p.total, 0
        if p.done > self.done or now - self.last >= self.reporter.every or (begins and self.round > 1):
            self.done, self.last = p.done, now
            rate = f", {p.completion_tokens / p.elapsed:.0f} tok/s" if p.elapsed > 0 and p.completion_tokens else ""
            where = f" (round {self.round})" if self.round > 1 else ""
            self.reporter.log(f"{self.what}{where}: {p.done}/{p.total} sections, {p.completion_tokens} tokens{rate}")


@contextmanager
def _bar(what: str) -> Iterator[ProgressCallback]:
    """A rich progress bar on stderr: sections done / total, tokens/s, time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

    with Bar(TextColumn(what, markup=False), BarColumn(), MofNCompleteColumn(), TextColumn("sections"),
             TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task(what, total=None, rate="")

        def update(p: Progress) -> None:
            rate = f"{p.completion_tokens / p.elapsed:.0f} tok/s" if p.elapsed > 0 and p.completion_tokens else ""
            bar.update(task, total=p.total, completed=p.done, rate=rate)

        yield update
