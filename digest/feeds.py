"""Fetching and parsing feeds (RSS 2.0 and Atom, through feedparser).

A feed is read either from the network (`fetch`) or from a file in a feeds directory
(`DIR/<name>.xml`, one file per configured feed); both end in `parse_feed` on the raw bytes.
"""

from __future__ import annotations

import html
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import feedparser

from .errors import FeedError

DEFAULT_USER_AGENT = "digest/0.1 (offline daily digest generator; +https://example.invalid/digest)"
MAX_FEED_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One feed item, as the feed gives it (title with entities decoded, summary as plain text)."""

    title: str
    link: str = ""
    id: str = ""
    summary: str = ""


@dataclass(frozen=True)
class Feed:
    name: str
    source: str
    entries: tuple[Entry, ...]


_TAG = re.compile(r"<[^>]+>")
_REDDIT_TRAILER = re.compile(r"\s*submitted by\s+/?u/\S+.*$", re.S | re.I)


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, whitespace collapsed."""
    text = _TAG.sub(" ", fragment or "")
    text = html.unescape(text)
    text = _REDDIT_TRAILER.sub("", text)
    return " ".join(text.split())


def parse_feed(data: bytes, *, name: str, source: str) -> Feed:
    """Parse the raw bytes of an RSS or Atom document.

    Raises FeedError when the bytes are not a feed at all (HTML, garbage, an empty body).
    """
    if not data.strip():
        raise FeedError(f"feed '{name}' ({source}) is empty")
    parsed = feedparser.parse(data)
    if not parsed.get("version") and not parsed.entries:
        reason = parsed.get("bozo_exception")
        detail = f": {reason}" if reason else ""
        raise FeedError(f"feed '{name}' ({source}) is not an RSS or Atom feed{detail}")
    entries = []
    for item in parsed.entries:
        summary = item.get("summary") or ""
        if not summary and item.get("content"):
            summary = item.content[0].get("value", "")
        entries.append(
            Entry(
                title=item.get("title", "") or "",
                link=item.get("link", "") or "",
                id=item.get("id", "") or item.get("link", "") or "",
                summary=html_to_text(summary),
            )
        )
    return Feed(name=name, source=source, entries=tuple(entries))


def read_feed_file(directory: Path, name: str) -> Feed:
    """Read `directory/<name>.xml`, the layout that `--feeds-from` and snapshots use."""
    path = Path(directory) / f"{name}.xml"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FeedError(f"feed file not found: {path} (expected one file per configured feed)")
    except OSError as exc:
        raise FeedError(f"cannot read feed file {path}: {exc.strerror or exc}") from exc
    return parse_feed(data, name=name, source=str(path))


def fetch(url: str, *, name: str, timeout: float = 30.0, user_agent: str = DEFAULT_USER_AGENT) -> bytes:
    """GET `url` and return the body's raw bytes. Raises FeedError on any network failure."""
    request = urllib.request.Request(url, headers={"User-Agent": user_agent})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(MAX_FEED_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise FeedError(f"feed '{name}': {url} answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FeedError(f"feed '{name}': cannot fetch {url}: {reason}") from exc
    if len(data) > MAX_FEED_BYTES:
        raise FeedError(f"feed '{name}': {url} is larger than {MAX_FEED_BYTES // (1024 * 1024)} MiB")
    return data


def fetch_feed(url: str, *, name: str, timeout: float = 30.0, user_agent: str = DEFAULT_USER_AGENT) -> Feed:
    return parse_feed(fetch(url, name=name, timeout=timeout, user_agent=user_agent), name=name, source=url)


def samples_dir() -> Path:
    """The sample feeds bundled in the package (a feeds directory for `--feeds-from`)."""
    return Path(__file__).resolve().parent / "samples"
