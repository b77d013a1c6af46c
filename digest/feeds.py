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

import feedparser

from .errors import FeedError

DEFAULT_USER_AGENT = "digest/0.1 (offline daily digest generator; +https://example.invalid/digest)"
MAX_FEED_BYTES = 32 * 1024 * 1024
ACCEPT = "application/atom+xml, application/rss+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"


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


def samples_dir() -> Path:
    """The sample feeds bundled in the package (a feeds directory for `--feeds-from`)."""
    return Path(__file__).resolve().parent / "samples"
