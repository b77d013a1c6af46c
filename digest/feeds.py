"""Fetching and parsing feeds (RSS 2.0 and Atom, through feedparser).

A feed is read either from the network (`fetch`, through digest.http) or from a file in a feeds directory
(`DIR/<name>.xml`, one file per configured feed); both end in `parse_feed` on the raw bytes.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence
from xml.parsers import expat

import feedparser
import ftfy

from . import http
from .errors import FeedError

ACCEPT = "application/atom+xml, application/rss+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"


@dataclass(frozen=True)
class Entry:
    """One feed item, as the feed gives it: title and summary as plain text (entities decoded once)."""

    title: str
    link: str = ""
    id: str = ""
    summary: str = ""


@dataclass(frozen=True)
class Feed:
    name: str
    source: str
    entries: tuple[Entry, ...]
    # What was wrong with the document but could be worked around (one line each).
    warnings: tuple[str, ...] = ()


# Entries read from one feed: a post needs a few dozen at most, and feedparser spends about a
# millisecond on each, so a feed of 10,000 entries is cut after this many before it is parsed.
MAX_ENTRIES = 200
# Characters of an entry's plain-text summary kept (the prompt uses its first 60 words).
MAX_SUMMARY_CHARS = 4000

_TAG = re.compile(r"<[^>]+>")
_REDDIT_TRAILER = re.compile(r"\s*submitted by\s+/?u/\S+.*$", re.S | re.I)
_ITEM_NAMES = ("item", "entry")


def _plain(fragment: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded once, whitespace collapsed."""
    return " ".join(html.unescape(_TAG.sub(" ", fragment or "")).split())


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML summary, without Reddit's "submitted by /u/..." trailer."""
    return " ".join(_REDDIT_TRAILER.sub("", _plain(fragment)).split())


def _text(item, key: str) -> str:
    """An entry's text field as plain text: HTML (by feedparser's reading of the element's type)
    loses its tags and has its entities decoded, plain text is kept as the XML gave it; either way
    mojibake (UTF-8 read as Windows-1252, "AIâ€™s") is repaired."""
    value = item.get(key) or ""
    detail = item.get(f"{key}_detail") or {}
    if "html" in (detail.get("type") or ""):
        value = _plain(value)
    return ftfy.fix_encoding(value)


class _Cut(Exception):
    def __init__(self, at: int, open_elements: list[str]):
        self.at, self.open_elements = at, open_elements


def _first_entries(data: bytes, limit: int) -> bytes | None:
    """`data` cut before its (limit+1)-th item or entry, with the elements still open closed again,
    so that it stays well-formed; None when there is no such entry, or the bytes are not XML that
    expat reads (feedparser's own recovery then gets the whole document).

    Read as ISO-8859-1, which maps every byte to a character, so any ASCII-compatible encoding
    (UTF-8, Windows-1252, ...) is walked correctly: element names are ASCII.
    """
    parser = expat.ParserCreate(encoding="ISO-8859-1")
    stack: list[str] = []
    seen = 0

    def start(tag: str, attrs) -> None:
        nonlocal seen
        if tag.rpartition(":")[2] in _ITEM_NAMES:
            seen += 1
            if seen > limit:
                raise _Cut(parser.CurrentByteIndex, list(stack))
        stack.append(tag)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: stack.pop()
    try:
        parser.Parse(data, True)
    except _Cut as cut:
        closing = "".join(f"</{tag}>" for tag in reversed(cut.open_elements))
        return data[: cut.at] + closing.encode("latin-1")
    except expat.ExpatError:
        pass
    return None


def parse_feed(data: bytes, *, name: str, source: str) -> Feed:
    """Parse the raw bytes of an RSS or Atom document.

    Raises FeedError when the bytes are not a feed at all (HTML, garbage, an empty body) or are
    malformed beyond recovery. What can be worked around becomes a warning on the `Feed`: XML that
    is not well-formed but still yields entries, a wrong declared encoding, entries without a title,
    the same entry twice, more than MAX_ENTRIES entries.
    """
    label = f"feed '{name}' ({source})"
    if not data.strip():
        raise FeedError(f"{label} is empty")
    warnings = []
    cut = _first_entries(data, MAX_ENTRIES)
    if cut is not None:
        data = cut
        warnings.append(f"{label} has more than {MAX_ENTRIES} entries; only the first {MAX_ENTRIES} are read")
    parsed = feedparser.parse(data)
    warnings.extend(_parser_problems(parsed, label))
    entries, untitled, repeated, ids = [], 0, 0, set()
    for item in parsed.entries:
        title = _text(item, "title")
        summary = item.get("summary") or ""
        if not summary and item.get("content"):
            summary = item.content[0].get("value", "")
        link = item.get("link", "") or ""
        entry_id = item.get("id", "") or link
        if not title.strip():
            untitled += 1
            continue
        if entry_id and entry_id in ids:
            repeated += 1
            continue
        ids.add(entry_id)
        entries.append(Entry(title=title, link=link, id=entry_id,
                             summary=ftfy.fix_encoding(html_to_text(summary)[:MAX_SUMMARY_CHARS])))
    if untitled:
        warnings.append(f"{label}: skipped {untitled} {_entries(untitled)} without a title")
    if repeated:
        warnings.append(f"{label}: skipped {repeated} {_entries(repeated)} that "
                        f"{'repeats' if repeated == 1 else 'repeat'} an earlier entry's id")
    return Feed(name=name, source=source, entries=tuple(entries), warnings=tuple(warnings))


def _parser_problems(parsed, label: str) -> list[str]:
    """What feedparser had to work around, as warnings; a FeedError when it read no feed at all."""
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if not parsed.entries:
        if not parsed.get("version"):
            detail = f" ({problem})" if problem else ""
            raise FeedError(f"{label} is not an RSS or Atom feed{detail}: check the URL or the file")
        if problem and not isinstance(problem, feedparser.CharacterEncodingOverride):
            raise FeedError(f"{label} is not well-formed XML and no entry could be read from it ({problem})")
        return []
    if isinstance(problem, feedparser.CharacterEncodingOverride):
        return [f"{label}: {problem}"]
    if problem:
        count = len(parsed.entries)
        return [f"{label} is not well-formed XML ({problem}); using the {count} {_entries(count)} read from it"]
    return []


def _entries(count: int) -> str:
    return "entry" if count == 1 else "entries"


def read_feed_bytes(directory: Path, name: str) -> tuple[Path, bytes]:
    """The path and raw bytes of `directory/<name>.xml`, the layout that `--feeds-from` and snapshots use."""
    path = Path(directory) / f"{name}.xml"
    return path, _file_bytes(path, " (expected one file per configured feed)")


def _file_bytes(path: Path, hint: str = "") -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FeedError(f"feed file not found: {path}{hint}")
    except OSError as exc:
        raise FeedError(f"cannot read feed file {path}: {exc.strerror or exc}") from exc


def read_feed_file(directory: Path, name: str) -> Feed:
    """Read and parse `directory/<name>.xml`."""
    path, data = read_feed_bytes(directory, name)
    return parse_feed(data, name=name, source=str(path))


def read_feed_path(path: Path) -> Feed:
    """Read and parse the feed file at `path`, whatever its name (`digest eval FILE`), named by its stem."""
    path = Path(path)
    return parse_feed(_file_bytes(path), name=path.stem, source=str(path))


def fetch(url: str, *, name: str, on_retry: Callable[[str], None] | None = None, **options) -> http.Response:
    """GET a feed's `url` through digest.http (its retry policy; `options` as for `http.get`: timeout,
    user_agent, retries, backoff, max_wait, etag, last_modified). Raises FeedError naming the feed and
    the URL; each retry is told to `on_retry`. The body is capped at http.MAX_BYTES (or `max_bytes`)."""
    told = (lambda message: on_retry(f"feed '{name}': {message}")) if on_retry else None
    try:
        return http.get(url, headers={"Accept": ACCEPT}, on_retry=told, **options)
    except http.HTTPFailure as exc:
        raise FeedError(f"feed '{name}': {exc}") from exc


def fetch_first(urls: Sequence[str], *, name: str, validate: Callable[[bytes, str], object] | None = None,
                conditional: dict[str, tuple[str | None, str | None]] | None = None,
                warn: Callable[[str], None] = lambda message: None, **options) -> http.Response:
    """The first of `urls` (a feed's URL and its mirrors) that answers with a usable body.

    `validate(body, url)` may raise FeedError to reject a body (an HTML page instead of a feed).
    `conditional` maps a URL to the (ETag, Last-Modified) of the copy already held.
    Each URL that fails is reported through `warn` when another one is left to try.
    """
    if not urls:
        raise FeedError(f"feed '{name}' has no url in the config ([feeds.{name}] url)")
    failures = []
    for n, url in enumerate(urls):
        etag, modified = (conditional or {}).get(url, (None, None))
        try:
            fetched = fetch(url, name=name, etag=etag, last_modified=modified, **options)
            if validate is not None and fetched.status != 304:
                validate(fetched.body, url)
            return fetched
        except FeedError as exc:
            failures.append(str(exc))
            if n + 1 < len(urls):
                warn(f"{exc}; trying the next URL, {urls[n + 1]}")
    if len(failures) == 1:
        raise FeedError(failures[0])
    raise FeedError(f"feed '{name}': all {len(urls)} URLs failed: " + "; ".join(failures))


