"""Feed snapshots: one directory holding each feed's raw bytes and an index of where they came from.

    DIR/topics.xml, DIR/trending.xml    the bodies exactly as received (the `--feeds-from` layout)
    DIR/index.json                      per feed: url, final_url, fetched_at, status, etag,
                                        last_modified, sha256, size; or the error that stopped it

`fetch_snapshot` writes one (conditional requests when DIR already holds one); `read_snapshot`
reads one back, checking every file against its sha256 first. Nothing here touches the network
except `fetch_snapshot`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

from . import feeds as feedlib
from .errors import FeedError
from .files import sha256_bytes, write_atomic, write_json

INDEX = "index.json"
FORMAT = 1
STRICT = "feeds.strict / --strict-feeds: every feed must work"


class SnapshotError(FeedError):
    """A snapshot's index is missing or unreadable, or a file does not match it."""


def load_index(directory: Path) -> dict:
    path = Path(directory) / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SnapshotError(f"snapshot index not found: {path} (make a snapshot with 'digest fetch --to {directory}')")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"cannot read snapshot index {path}: {exc}") from exc
    if not isinstance(index, dict) or not isinstance(index.get("feeds"), dict):
        raise SnapshotError(f"{path} is not a digest snapshot index (no 'feeds' table)")
    return index


def _previous(directory: Path) -> dict:
    """The entries of an earlier snapshot in `directory` whose files are still intact, else nothing."""
    try:
        entries = load_index(directory)["feeds"]
    except SnapshotError:
        return {}
    kept = {}
    for name, entry in entries.items():
        path = Path(directory) / f"{name}.xml"
        if isinstance(entry, dict) and entry.get("sha256") and path.is_file() \
                and sha256_bytes(path.read_bytes()) == entry["sha256"]:
            kept[name] = entry
    return kept


def fetch_snapshot(
    directory: Path,
    urls: Mapping[str, Sequence[str]],
    *,
    strict: bool,
    options: dict,
    warn: Callable[[str], None] = lambda message: None,
) -> dict:
    """Fetch each feed (`urls`: name -> its URL and mirrors) into `directory`; return the index written.

    A feed that an earlier snapshot in `directory` holds is asked for conditionally (If-None-Match,
    If-Modified-Since); a 304 keeps its bytes. Every body must parse as a feed. A feed that fails on
    every URL is recorded in the index with its error and left out, unless `strict`, where it stops
    everything; `warn` hears of each URL given up for the next one. Files are written only when every feed is settled, the index last.
    """
    directory = Path(directory)
    previous = _previous(directory)
    entries: dict[str, dict] = {}
    bodies: dict[str, bytes] = {}
    for name, feed_urls in urls.items():
        old = previous.get(name, {})
        conditional = {old["url"]: (old.get("etag"), old.get("last_modified"))} if old.get("url") else {}
        try:
            got = feedlib.fetch_first(list(feed_urls), name=name, conditional=conditional, warn=warn,
                                      validate=lambda body, url, n=name: feedlib.parse_feed(body, name=n, source=url),
                                      **options)
            if got.status == 304 and not old:
                raise FeedError(f"feed '{name}': {got.url} answered 304 Not Modified to a request that was not conditional")
        except FeedError as exc:
            if strict:
                raise FeedError(f"{exc} ({STRICT})") from exc
            entries[name] = {"urls": list(feed_urls), "error": str(exc)}
            continue
        body = (directory / f"{name}.xml").read_bytes() if got.status == 304 else got.body
        bodies[name] = body
        entries[name] = {
            "url": got.url, "final_url": got.final_url, "fetched_at": got.fetched_at, "status": got.status,
            "etag": got.etag or (old.get("etag") if got.status == 304 else None),
            "last_modified": got.last_modified or (old.get("last_modified") if got.status == 304 else None),
            "sha256": sha256_bytes(body), "size": len(body), "file": f"{name}.xml",
        }
    if not bodies:
        raise FeedError("no feed could be fetched: " + "; ".join(e["error"] for e in entries.values()))
    for name, body in bodies.items():
        write_atomic(directory / f"{name}.xml", body)
    for name in entries.keys() - bodies.keys():
        (directory / f"{name}.xml").unlink(missing_ok=True)
    index = {"format": FORMAT, "feeds": entries}
    write_json(directory / INDEX, index)
    return index


def read_snapshot(directory: Path, names: Sequence[str]) -> tuple[dict, dict[str, bytes | None]]:
    """The index and each feed's bytes (None for a feed the snapshot records as failed).

    Every file is checked against the index's sha256 before anything uses it.
    """
    directory = Path(directory)
    index = load_index(directory)
    bodies: dict[str, bytes | None] = {}
    for name in names:
        entry = index["feeds"].get(name)
        if not isinstance(entry, dict):
            raise SnapshotError(f"{directory / INDEX} has no entry for feed '{name}'")
        if "error" in entry:
            bodies[name] = None
            continue
        path = directory / f"{name}.xml"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SnapshotError(f"snapshot file {path} is missing or unreadable ({exc.strerror or exc}); "
                                f"{INDEX} lists it with sha256 {entry.get('sha256')}")
        found = sha256_bytes(data)
        if found != entry.get("sha256"):
            raise SnapshotError(f"snapshot file {path} does not match {INDEX}: sha256 expected {entry.get('sha256')}, "
                                f"found {found} ({entry.get('size')} bytes expected, {len(data)} found); "
                                "fetch the snapshot again")
        bodies[name] = data
    return index, bodies
