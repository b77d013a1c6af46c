"""Fetching and parsing feeds (RSS 2.0 and Atom, through feedparser).

A feed is read either from the network (`fetch`) or from a file in a feeds directory
(`DIR/<name>.xml`, one file per configured feed); both end in `parse_feed` on the raw bytes.
"""

from __future__ import annotations

import dataclasses
import email.utils
import html
import http.client
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence
from xml.parsers import expat

import feedparser
import ftfy

from .errors import FeedError

DEFAULT_USER_AGENT = "digest/0.1 (offline daily digest generator; +https://example.invalid/digest)"
MAX_FEED_BYTES = 32 * 1024 * 1024
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
    try:
        return path, path.read_bytes()
    except FileNotFoundError:
        raise FeedError(f"feed file not found: {path} (expected one file per configured feed)")
    except OSError as exc:
        raise FeedError(f"cannot read feed file {path}: {exc.strerror or exc}") from exc


def read_feed_file(directory: Path, name: str) -> Feed:
    """Read and parse `directory/<name>.xml`."""
    path, data = read_feed_bytes(directory, name)
    return parse_feed(data, name=name, source=str(path))


@dataclass(frozen=True)
class Fetched:
    """One answer to a feed request: the body's bytes exactly as received, and what the server said."""

    url: str  # the URL asked for
    body: bytes  # empty for a 304
    status: int  # 200-299, or 304 (not modified)
    final_url: str  # after redirects
    etag: str | None
    last_modified: str | None
    fetched_at: str  # UTC, ISO 8601
    seconds: float
    attempts: int = 1


class _Transient(Exception):
    """A failure worth another try (429, 5xx, a timeout, a dropped connection)."""

    def __init__(self, what: str, retry_after: float | None = None):
        super().__init__(what)
        self.retry_after = retry_after


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: either delay-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def _read_body(response, url: str, started: float, timeout: float) -> bytes:
    """The whole body, in chunks; cut off, too large or too slow in all is an error."""
    expected = response.headers.get("Content-Length")
    chunks, size = [], 0
    while True:
        chunk = response.read1(64 * 1024)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_FEED_BYTES:
            raise FeedError(f"{url} is larger than {MAX_FEED_BYTES // (1024 * 1024)} MiB")
        if time.monotonic() - started > timeout:
            raise _Transient(f"the body took longer than the {timeout:g} s timeout (stalled after {size} bytes)")
    if expected and expected.isdigit() and size < int(expected):
        raise http.client.IncompleteRead(b"".join(chunks), int(expected) - size)
    return b"".join(chunks)


def _fetch_once(url: str, headers: dict[str, str], timeout: float) -> Fetched:
    started = time.monotonic()
    stamp = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = _read_body(response, url, started, timeout)
            status, final, answer = response.status, response.url, response.headers
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            body, status, final, answer = b"", 304, exc.url or url, exc.headers
        elif 300 <= exc.code < 400:
            target = exc.headers.get("Location", "?") if exc.headers else "?"
            raise FeedError(f"{url} redirects in a loop or too many times "
                            f"(last: HTTP {exc.code} to {target})") from exc
        elif exc.code == 429 or exc.code >= 500:
            raise _Transient(f"HTTP {exc.code} {exc.reason}",
                             retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)) from exc
        else:
            raise FeedError(f"{url} answered HTTP {exc.code} {exc.reason}") from exc
    except http.client.IncompleteRead as exc:
        got = len(exc.partial)
        raise _Transient(f"the body was cut off after {got} of {got + (exc.expected or 0)} bytes") from exc
    except (TimeoutError, socket.timeout) as exc:
        raise _Transient(f"no answer within the {timeout:g} s timeout") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise _Transient(f"no answer within the {timeout:g} s timeout") from exc
        raise _Transient(f"cannot connect: {exc.reason}") from exc
    except (http.client.HTTPException, OSError) as exc:
        raise _Transient(f"connection failed: {exc.__class__.__name__}: {exc}") from exc
    return Fetched(url=url, body=body, status=status, final_url=final or url, etag=answer.get("ETag"),
                   last_modified=answer.get("Last-Modified"), fetched_at=stamp,
                   seconds=round(time.monotonic() - started, 3))


def fetch(
    url: str,
    *,
    name: str,
    timeout: float = 30.0,
    user_agent: str = DEFAULT_USER_AGENT,
    retries: int = 2,
    backoff: float = 1.0,
    max_wait: float = 30.0,
    etag: str | None = None,
    last_modified: str | None = None,
    on_retry: Callable[[str], None] | None = None,
) -> Fetched:
    """GET `url`: the body's raw bytes and the answer's metadata. Raises FeedError naming the feed and URL.

    429, 5xx, timeouts and dropped connections are tried again up to `retries` times, waiting
    `backoff` * 2**n seconds, or what `Retry-After` asks, but never more than `max_wait` at a time.
    Other 4xx answers, redirect loops and oversized bodies fail at once. With `etag` or
    `last_modified` the request is conditional, and a 304 comes back with an empty body.
    """
    headers = {"User-Agent": user_agent, "Accept": ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    for attempt in range(retries + 1):
        try:
            return dataclasses.replace(_fetch_once(url, headers, timeout), attempts=attempt + 1)
        except _Transient as exc:
            if attempt == retries:
                tries = f" (after {attempt + 1} tries)" if attempt else ""
                raise FeedError(f"feed '{name}': {url}: {exc}{tries}") from exc
            wait = min(exc.retry_after if exc.retry_after is not None else backoff * 2**attempt, max_wait)
            if on_retry:
                on_retry(f"feed '{name}': {url}: {exc}; trying again in {wait:g} s")
            time.sleep(wait)
        except FeedError as exc:
            raise FeedError(f"feed '{name}': {exc}") from exc
    raise AssertionError("unreachable")


def fetch_first(urls: Sequence[str], *, name: str, validate: Callable[[bytes, str], object] | None = None,
                conditional: dict[str, tuple[str | None, str | None]] | None = None,
                warn: Callable[[str], None] = lambda message: None, **options) -> Fetched:
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


def fetch_feed(url: str, *, name: str, **options) -> Feed:
    return parse_feed(fetch(url, name=name, **options).body, name=name, source=url)


