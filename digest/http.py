"""The one HTTP client: feeds and snapshots (`get`), `models pull` (`download`), JSON APIs (`post_json`).

Every request follows the same policy. It sends a User-Agent and has a timeout. 429, 5xx, timeouts
and dropped connections are tried again up to `retries` times, waiting `backoff` * 2**n seconds, or
what the server's `Retry-After` asks (seconds or an HTTP date), but never more than `max_wait` at a
time. Anything else (another 4xx, a redirect loop, a body over its size cap) fails at once.
A request that fails for good raises `HTTPFailure`, one line naming the URL, which each caller turns
into its own error (FeedError, ModelError). Nothing here prints: retries are told to `on_retry`.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from pathlib import Path
from typing import Callable, Collection, Mapping, TypeVar

from . import __version__

DEFAULT_USER_AGENT = f"digest/{__version__} (offline daily digest generator)"  # [feeds] user_agent's default too
MAX_BYTES = 32 * 1024 * 1024  # the default cap on a body read into memory
_MIB = 1024 * 1024
_CHUNK = 1 << 20

Notify = Callable[[str], None]
Progress = Callable[[int, "int | None"], None]
T = TypeVar("T")


class HTTPFailure(Exception):
    """A request that failed for good. Its message is one line that names the URL.

    `transient`: the failure was of the kind that is tried again (429, 5xx, a timeout, a dropped
    connection) and the retries ran out; `status`: the HTTP status, when there was one.
    """

    def __init__(self, message: str, *, url: str, status: int | None = None, transient: bool = False,
                 attempts: int = 1):
        super().__init__(message)
        self.url, self.status, self.transient, self.attempts = url, status, transient, attempts


class TooLarge(HTTPFailure):
    """The body is larger than the caller's cap (`max_bytes`)."""


class _Transient(Exception):
    """A failure worth another try (429, 5xx, a timeout, a dropped connection)."""

    def __init__(self, what: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(what)
        self.retry_after, self.status = retry_after, status


@dataclass(frozen=True)
class Response:
    """One answer: the body's bytes exactly as received, and what the server said."""

    url: str  # the URL asked for
    status: int  # 200-299, or one the caller accepted (304 for a conditional GET)
    final_url: str  # after redirects
    body: bytes  # empty for a 304
    headers: Message = field(repr=False)
    fetched_at: str  # UTC, ISO 8601
    seconds: float
    attempts: int = 1
    # Seconds from sending the request to the first byte of the body (a streamed answer's first
    # event, say); None for an empty body.
    first_byte_seconds: float | None = None

    @property
    def etag(self) -> str | None:
        return self.headers.get("ETag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("Last-Modified")


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


def _retrying(url: str, once: Callable[[], T], *, retries: int, backoff: float, max_wait: float,
              on_retry: Notify | None) -> tuple[T, int]:
    """`once()` and the number of tries it took: the retry policy of every request."""
    for attempt in range(retries + 1):
        try:
            return once(), attempt + 1
        except _Transient as exc:
            if attempt == retries:
                tries = f" (after {attempt + 1} tries)" if attempt else ""
                raise HTTPFailure(f"{url}: {exc}{tries}", url=url, status=exc.status, transient=True,
                                  attempts=attempt + 1) from exc
            wait = min(exc.retry_after if exc.retry_after is not None else backoff * 2**attempt, max_wait)
            if on_retry:
                on_retry(f"{url}: {exc}; trying again in {wait:g} s")
            time.sleep(wait)
    raise AssertionError("unreachable")


def _dropped(exc: BaseException, timeout: float) -> _Transient:
    """A network failure (before or during the body) as a transient one, in words."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return _Transient(f"no answer within the {timeout:g} s timeout")
    if isinstance(exc, http.client.IncompleteRead):
        got = len(exc.partial)
        return _Transient(f"the body was cut off after {got} of {got + (exc.expected or 0)} bytes")
    if isinstance(exc, urllib.error.URLError):
        return _Transient(f"cannot connect: {reason}")
    return _Transient(f"connection failed: {exc.__class__.__name__}: {exc}")


def _json_detail(exc: urllib.error.HTTPError) -> str:
    """What a JSON error body says (an API's reason for a 4xx), as one short line; else nothing."""
    if "json" not in (exc.headers.get("Content-Type", "") if exc.headers else ""):
        return ""
    try:
        text = " ".join(exc.read(400).decode("utf-8", "replace").split())
    except (OSError, http.client.HTTPException):
        return ""
    return f": {text[:200]}" if text else ""


def _open(url: str, timeout: float, accept: Collection[int] = (), **request):
    """The response to a request for `url` (`request`: urllib.request.Request's data, headers, method;
    an accepted error status comes back as its HTTPError, which reads like a response). Raises
    _Transient for what is worth another try, HTTPFailure for the rest."""
    try:
        return urllib.request.urlopen(urllib.request.Request(url, **request), timeout=timeout)
    except urllib.error.HTTPError as exc:
        code = exc.code
        if code in accept:
            return exc
        if 300 <= code < 400:
            target = exc.headers.get("Location", "?") if exc.headers else "?"
            raise HTTPFailure(f"{url} redirects in a loop or too many times (last: HTTP {code} to {target})",
                              url=url, status=code) from exc
        if code == 429 or code >= 500:
            after = retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)
            raise _Transient(f"HTTP {code} {exc.reason}", after, status=code) from exc
        raise HTTPFailure(f"{url} answered HTTP {code} {exc.reason}{_json_detail(exc)}", url=url, status=code) from exc
    except (http.client.HTTPException, OSError) as exc:  # URLError and timeouts are OSErrors
        raise _dropped(exc, timeout) from exc
    except ValueError as exc:  # no scheme, an unknown one, a malformed host
        raise HTTPFailure(f"{url} is not a URL that can be fetched ({exc})", url=url) from exc


def _limit_next_read(response, seconds: float) -> None:
    """Let the next read from `response` block no longer than `seconds`, so that one stalled read
    cannot outlast a total timeout (best effort: urllib gives no public way to the socket)."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def _size(limit: int) -> str:
    return f"{limit // _MIB} MiB" if limit % _MIB == 0 else f"{limit} bytes"


def _stream(response, url: str, sink: Callable[[bytes], object], *, timeout: float, deadline: float | None,
            start: int = 0, limit: int | None = None, progress: Progress | None = None) -> int:
    """Hand the body to `sink` chunk by chunk; the number of bytes read.

    With a `deadline` (time.monotonic()), the whole answer must be in by then; without one, `timeout`
    is the longest wait for data. `start`: bytes of the file already held (a resumed download), which
    count towards `limit`. A body cut off before its Content-Length, a stall or a late one is
    _Transient; one over `limit` is TooLarge (and that chunk is not handed on).
    """
    length = response.headers.get("Content-Length") if response.headers else None
    expected = int(length) if length and length.isdigit() else None
    total = start + expected if expected is not None else None
    got = 0

    def late() -> _Transient:
        if deadline is None:
            return _Transient(f"no data within the {timeout:g} s timeout (after {start + got} bytes)")
        return _Transient(f"no complete answer within the {timeout:g} s timeout (stalled after {start + got} bytes)")

    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise late()
            _limit_next_read(response, min(timeout, left))
        try:
            chunk = response.read1(_CHUNK)
        except TimeoutError as exc:
            raise late() from exc
        except (http.client.HTTPException, OSError) as exc:
            raise _dropped(exc, timeout) from exc
        if not chunk:
            break
        if limit is not None and start + got + len(chunk) > limit:
            raise TooLarge(f"{url} is larger than {_size(limit)}", url=url)
        sink(chunk)
        got += len(chunk)
        if progress:
            progress(start + got, total)
    if expected is not None and got < expected:
        raise _Transient(f"the body was cut off after {start + got} of {total} bytes")
    return got


def _stamp() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def request(method: str, url: str, *, data: bytes | None = None, headers: Mapping[str, str] | None = None,
            user_agent: str = DEFAULT_USER_AGENT, timeout: float = 30.0, retries: int = 2, backoff: float = 1.0,
            max_wait: float = 30.0, max_bytes: int = MAX_BYTES, accept: Collection[int] = (),
            on_retry: Notify | None = None) -> Response:
    """`method` on `url` with the retry policy; the whole body in memory. Raises HTTPFailure.

    `timeout` bounds each try in all: connecting, the answer and the body. `accept`: statuses
    outside 2xx that are an answer rather than a failure (304 for a conditional GET).
    """
    sent = {"User-Agent": user_agent, **(headers or {})}

    def once() -> Response:
        started, stamp = time.monotonic(), _stamp()
        with _open(url, timeout, accept, data=data, headers=sent, method=method) as answer:
            chunks: list[bytes] = []
            first: list[float] = []

            def sink(chunk: bytes) -> None:
                if not first:
                    first.append(round(time.monotonic() - started, 4))
                chunks.append(chunk)

            _stream(answer, url, sink, timeout=timeout, deadline=started + timeout, limit=max_bytes)
            return Response(url=url, status=answer.status, final_url=answer.url or url, body=b"".join(chunks),
                            headers=answer.headers, fetched_at=stamp, seconds=round(time.monotonic() - started, 3),
                            first_byte_seconds=first[0] if first else None)

    response, attempts = _retrying(url, once, retries=retries, backoff=backoff, max_wait=max_wait, on_retry=on_retry)
    return dataclasses.replace(response, attempts=attempts)


def get(url: str, *, headers: Mapping[str, str] | None = None, etag: str | None = None,
        last_modified: str | None = None, **options) -> Response:
    """GET `url` (options as for `request`). With `etag` or `last_modified` the request is
    conditional (If-None-Match, If-Modified-Since), and a 304 comes back with an empty body."""
    sent = dict(headers or {})
    if etag:
        sent["If-None-Match"] = etag
    if last_modified:
        sent["If-Modified-Since"] = last_modified
    return request("GET", url, headers=sent, accept=(304,) if etag or last_modified else (), **options)


def post(url: str, payload: object, *, headers: Mapping[str, str] | None = None, **options) -> Response:
    """POST `payload` as JSON to `url` (options as for `request`); the answer as it came (a stream of
    events, say: `headers` says what it accepts)."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    return request("POST", url, data=json.dumps(payload).encode("utf-8"), headers=sent, **options)


def post_json(url: str, payload: object, *, headers: Mapping[str, str] | None = None, **options) -> object:
    """POST `payload` as JSON to `url` (options as for `request`) and return the JSON answer.
    A body that is not JSON is an HTTPFailure (not tried again: the server would say the same)."""
    return _json_of(post(url, payload, headers={"Accept": "application/json", **(headers or {})}, **options))


def get_json(url: str, *, headers: Mapping[str, str] | None = None, **options) -> object:
    """GET `url` (options as for `request`) and return the JSON answer; not JSON is an HTTPFailure."""
    return _json_of(get(url, headers={"Accept": "application/json", **(headers or {})}, **options))


def _json_of(response: Response) -> object:
    """The answer's body as JSON, or an HTTPFailure that says what came instead."""
    url = response.url
    try:
        return json.loads(response.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPFailure(f"{url} answered HTTP {response.status} with a body that is not JSON "
                          f"({exc.__class__.__name__}: {exc}; it starts {response.body[:60]!r})",
                          url=url, status=response.status) from exc


def download(url: str, part: Path, *, user_agent: str = DEFAULT_USER_AGENT, timeout: float = 60.0,
             retries: int = 3, backoff: float = 1.0, max_wait: float = 30.0, max_bytes: int | None = None,
             progress: Progress | None = None, on_retry: Notify | None = None) -> int:
    """Stream `url` into the file `part`, resuming from its current size; the number of tries.

    A file already begun is continued with `Range: bytes=N-`: a 206 appends, a server that ignores
    the Range and sends 200 starts the file again, a 416 means nothing is left to send. Each retry
    resumes from what arrived. `timeout` is the longest wait for data (a large file may take long in
    all); `max_bytes` caps the file (TooLarge). Every chunk written is flushed and fsynced at the end
    of a try, so an interrupted download keeps what arrived for the next call.
    """

    def once() -> None:
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": user_agent}
        if have:
            headers["Range"] = f"bytes={have}-"
        with _open(url, timeout, (416,) if have else (), headers=headers) as answer:
            if answer.status == 416:
                return  # nothing left to send: the file is complete (or wrong, which its hash will tell)
            if answer.status != 206:
                have = 0  # the server sends the whole file: start again
            with open(part, "ab" if have else "wb") as out:
                try:
                    _stream(answer, url, out.write, timeout=timeout, deadline=None, start=have, limit=max_bytes,
                            progress=progress)
                finally:
                    out.flush()
                    os.fsync(out.fileno())

    return _retrying(url, once, retries=retries, backoff=backoff, max_wait=max_wait, on_retry=on_retry)[1]
