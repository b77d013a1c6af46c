"""Where everything lives in a site folder: the one place that names a path under it.

    ROOT/content/posts/YYYY-MM-DD-ai-auto-summary.md   the posts (what Hugo publishes)
    ROOT/.digest/lock                                   held by the run writing to ROOT
    ROOT/.digest/history.sqlite3                        topics already written up
    ROOT/.digest/manifests/YYYY-MM-DD.json              what each post was made from
    ROOT/.digest/snapshots/<UTC time>/                  the feeds a live run fetched
    ROOT/.digest/cache/sha256.json                      hashes of large files (the model)

ROOT is the Hugo site root. Hugo reads only its own folders (content/, static/, ...) and skips
names that start with a dot, so nothing under .digest/ is published.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

STATE_DIR = ".digest"


def post_filename(day: date) -> str:
    """`YYYY-MM-DD-ai-auto-summary.md`, as the published series names its posts."""
    return f"{day.isoformat()}-ai-auto-summary.md"


@dataclass(frozen=True)
class Site:
    """The paths of one site folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of_manifest(cls, manifest: Path) -> "Site":
        """The site a manifest at ROOT/.digest/manifests/NAME.json belongs to."""
        return cls(Path(manifest).resolve().parents[2])

    @property
    def posts(self) -> Path:
        return self.root / "content" / "posts"

    def post(self, day: date) -> Path:
        return self.posts / post_filename(day)

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    @property
    def lock(self) -> Path:
        return self.state / "lock"

    @property
    def history(self) -> Path:
        return self.state / "history.sqlite3"

    @property
    def manifests(self) -> Path:
        return self.state / "manifests"

    def manifest(self, day: date) -> Path:
        return self.manifests / f"{day.isoformat()}.json"

    @property
    def snapshots(self) -> Path:
        return self.state / "snapshots"

    def new_snapshot(self, now: datetime | None = None) -> Path:
        """A folder under snapshots/ named by the UTC time, not there yet (-2, -3, ... when it is)."""
        stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        path, n = self.snapshots / stamp, 1
        while path.exists():
            n += 1
            path = self.snapshots / f"{stamp}-{n}"
        return path

    @property
    def hash_cache(self) -> Path:
        """Where the sha256 of large files (the model) is remembered for this site."""
        return self.state / "cache" / "sha256.json"

    @property
    def written_folders(self) -> tuple[Path, ...]:
        """The folders the atomic writer writes single files into (where a killed run leaves temp files)."""
        return self.posts, self.manifests, self.hash_cache.parent

    def portable(self, path: Path) -> str:
        """`path` relative to the root when it lies inside it (the site can move), else absolute."""
        path = Path(path).resolve()
        try:
            return path.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)
