"""Topics already written up, in a small SQLite database (site.Site.history: OUT/.digest/history.sqlite3).

A story that stays on the top list for days is written up once: a run skips the stories covered
on *other* days within `history.days` of its own (matched by feed item id or normalised title),
so a back-filled or forced run for the same day picks its own topics again. A run records its
topics only once its post is written.
"""

from __future__ import annotations

import errno
import sqlite3
from contextlib import closing
from datetime import date, timedelta
from pathlib import Path
from typing import Sequence

from .errors import OutputError
from .select import Covered, Story, normalise_title

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    day TEXT NOT NULL,          -- the post's date, YYYY-MM-DD
    item_id TEXT NOT NULL,      -- the feed item's id (or link)
    title_key TEXT NOT NULL,    -- normalise_title(title)
    title TEXT NOT NULL,
    link TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS topics_day ON topics (day);
"""


class History:
    def __init__(self, path: Path, days: int):
        self.path = Path(path)
        self.days = days

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=10)
            connection.executescript(_SCHEMA)
            return connection
        except (OSError, sqlite3.Error) as exc:
            raise self._error(exc) from exc

    def _error(self, exc: Exception) -> OutputError:
        full = getattr(exc, "sqlite_errorcode", None) == getattr(sqlite3, "SQLITE_FULL", 13) or \
            getattr(exc, "errno", None) == errno.ENOSPC
        hint = "free some space, or choose another --out" if full else "move the file away, or run with --no-history"
        return OutputError(f"history database {self.path}: {exc} ({hint})")

    def covered(self, day: date) -> Covered:
        """Stories recorded for other days within `days` of `day` (none when `days` is 0)."""
        if self.days <= 0:
            return Covered()
        # The window is clamped to the calendar (a --date near year 1 or 9999 must not overflow).
        low = day - timedelta(days=min(self.days, (day - date.min).days))
        high = day + timedelta(days=min(self.days, (date.max - day).days))
        low, high = low.isoformat(), high.isoformat()
        try:
            with closing(self._connect()) as db:
                rows = db.execute("SELECT item_id, title_key FROM topics WHERE day BETWEEN ? AND ? AND day != ?",
                                  (low, high, day.isoformat())).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return Covered(ids=frozenset(i for i, _ in rows if i), titles=frozenset(t for _, t in rows if t))

    def record(self, day: date, stories: Sequence[Story]) -> None:
        """Make `stories` the topics of `day` (replacing what an earlier run of that day recorded)."""
        try:
            with closing(self._connect()) as db, db:
                db.execute("DELETE FROM topics WHERE day = ?", (day.isoformat(),))
                db.executemany("INSERT INTO topics (day, item_id, title_key, title, link) VALUES (?, ?, ?, ?, ?)",
                               [(day.isoformat(), s.id, normalise_title(s.title), s.title, s.link) for s in stories])
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
