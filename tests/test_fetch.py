"""digest.feeds.fetch (through digest.http) against a real HTTP server on 127.0.0.1: metadata, retries, Retry-After,
timeouts, redirect loops, cut-off bodies, conditional requests and mirrors."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from conftest import TOPIC_TITLES, describe, news_rss, reddit_atom, titled
from digest.errors import FeedError
from digest.feeds import fetch, fetch_first, parse_feed
from digest.http import retry_after_seconds

BODY = reddit_atom(titled(TOPIC_TITLES[:3]))
FAST = {"timeout": 5, "backoff": 0.01, "max_wait": 5}


HANG = 60  # seconds after which a test that should end fails instead of hanging (not a speed limit)


def within(seconds: float, call):
    """`call()`'s result, or a test failure if it takes longer than `seconds` (no hanging test)."""
    box = {}

    def target():
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_fetch_returns_raw_body_and_what_the_server_said(http_server):
    body = b'<?xml version="1.0" encoding="ISO-8859-1"?>\r\n' + BODY[38:]  # not re-encoded, CRLF kept
    http_server.add("/feed", body, headers={"ETag": '"v1"', "Last-Modified": "Wed, 01 Jan 2026 00:00:00 GMT"})
    old = http_server.add("/old", status=301, headers={"Location": "/feed"})

    got = fetch(old, name="topics", **FAST)

    assert got.body == body
    assert (got.status, got.url, got.final_url) == (200, old, http_server.base + "/feed")
    assert got.etag == '"v1"' and got.last_modified == "Wed, 01 Jan 2026 00:00:00 GMT"
    assert datetime.fromisoformat(got.fetched_at.replace("Z", "+00:00")).tzinfo is not None
    assert got.attempts == 1
    assert "If-None-Match" not in http_server.seen[0].headers


def test_conditional_request_and_304(http_server):
    def handler(request):
        if request.headers.get("If-None-Match") == '"v1"':
            request.reply(304, b"", {"ETag": '"v1"'})
        else:
            request.reply(200, BODY, {"ETag": '"v1"'})

    url = http_server.handle("/feed", handler)
    got = fetch(url, name="topics", etag='"v1"', last_modified="Wed, 01 Jan 2026 00:00:00 GMT", **FAST)
    assert (got.status, got.body, got.etag) == (304, b"", '"v1"')
    assert http_server.seen[0].headers["If-Modified-Since"] == "Wed, 01 Jan 2026 00:00:00 GMT"
    assert fetch(url, name="topics", **FAST).body == BODY


def test_404_is_not_tried_again(http_server):
    url = http_server.script("/gone", (404, b"gone", {}), (200, BODY, {}))
    with pytest.raises(FeedError) as info:
        fetch(url, name="topics", retries=3, **FAST)
    assert [s.path for s in http_server.seen] == ["/gone"]
    assert "feed 'topics'" in str(info.value) and url in str(info.value) and "404" in str(info.value)


def test_500_then_success(http_server):
    url = http_server.script("/flaky", (500, b"oops", {}), (503, b"busy", {}), (200, BODY, {}))
    retries_seen = []
    got = fetch(url, name="topics", retries=2, on_retry=retries_seen.append, **FAST)
    assert got.body == BODY and got.attempts == 3 and len(http_server.seen) == 3
    assert "500" in retries_seen[0] and url in retries_seen[0]


def test_500_every_time_gives_up_after_the_retries(http_server):
    url = http_server.add("/down", b"oops", status=500)
    with pytest.raises(FeedError) as info:
        fetch(url, name="trending", retries=2, **FAST)
    assert len(http_server.seen) == 3
    assert "HTTP 500" in str(info.value) and "after 3 tries" in str(info.value) and url in str(info.value)


def test_429_retry_after_is_honoured(http_server):
    url = http_server.script("/limited", (429, b"slow down", {"Retry-After": "1"}), (200, BODY, {}))
    said = []
    start = time.monotonic()
    got = within(HANG, lambda: fetch(url, name="topics", retries=1, timeout=5, backoff=0.0, max_wait=10,
                                     on_retry=said.append))
    assert got.body == BODY and len(http_server.seen) == 2
    assert len(said) == 1 and url in said[0] and "HTTP 429" in said[0], said
    assert said[0].endswith("; trying again in 1 s"), said  # what Retry-After asked
    assert time.monotonic() - start >= 1.0  # it did wait


def test_429_retry_after_is_capped_by_max_wait(http_server):
    url = http_server.script("/limited", (429, b"come back tomorrow", {"Retry-After": "86400"}), (200, BODY, {}))
    said = []
    start = time.monotonic()
    got = within(HANG, lambda: fetch(url, name="topics", retries=1, timeout=5, backoff=0.0, max_wait=0.3,
                                     on_retry=said.append))
    assert got.body == BODY
    assert len(said) == 1 and said[0].endswith("; trying again in 0.3 s"), said  # max_wait, not a day
    assert time.monotonic() - start >= 0.3


def test_retry_after_as_seconds_or_http_date():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90.0
    assert retry_after_seconds(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0.0
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None, now) is None


def test_stall_mid_body_past_the_timeout(http_server):
    def stall(request):
        request.send_response(200)
        request.send_header("Content-Length", "5000")
        request.end_headers()
        request.wfile.write(BODY[:100])
        request.wfile.flush()
        time.sleep(3)  # then the connection closes: without the timeout, the error would be "cut off"

    url = http_server.handle("/stall", stall)
    with pytest.raises(FeedError) as info:
        within(HANG, lambda: fetch(url, name="topics", timeout=0.3, retries=0))
    assert url in str(info.value) and "the 0.3 s timeout" in str(info.value), info.value


def test_a_trickling_body_cannot_outlast_the_timeout(http_server):
    """Each byte comes well within the socket timeout; the request as a whole must still end (without
    the total timeout, the whole body would arrive and the fetch would succeed)."""

    def trickle(request):
        request.send_response(200)
        request.send_header("Content-Length", "100")
        request.end_headers()
        try:
            for _ in range(100):
                request.wfile.write(b"x")
                request.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    url = http_server.handle("/trickle", trickle)
    with pytest.raises(FeedError) as info:
        within(HANG, lambda: fetch(url, name="topics", timeout=0.5, retries=0))
    assert url in str(info.value) and "the 0.5 s timeout" in str(info.value), info.value


def test_redirect_loop(http_server):
    a = http_server.add("/a", status=302, headers={"Location": "/b"})
    http_server.add("/b", status=302, headers={"Location": "/a"})
    with pytest.raises(FeedError) as info:
        fetch(a, name="topics", **FAST)
    message = str(info.value)
    assert a in message and "redirect" in message and "feed 'topics'" in message


def test_body_cut_off_mid_way(http_server):
    def cut(request):
        request.send_response(200)
        request.send_header("Content-Length", str(len(BODY)))
        request.end_headers()
        request.wfile.write(BODY[:100])  # then the connection closes (HTTP/1.0)

    url = http_server.handle("/cut", cut)
    with pytest.raises(FeedError) as info:
        fetch(url, name="topics", retries=1, **{**FAST, "timeout": 2})
    message = str(info.value)
    assert url in message and f"cut off after 100 of {len(BODY)} bytes" in message
    assert len(http_server.to("/cut")) == 2  # tried again once


def test_mirrors_are_tried_in_order(http_server):
    down = http_server.add("/down", status=404)
    html = http_server.add("/html", b"<!DOCTYPE html><html><body>Too many requests</body></html>")
    good = http_server.add("/good", news_rss(titled(["One", "Two"])))
    warnings = []
    got = fetch_first([down, html, good], name="trending", warn=warnings.append,
                      validate=lambda body, url: parse_feed(body, name="trending", source=url), **FAST)
    assert got.url == good
    assert len(warnings) == 2
    assert down in warnings[0] and "404" in warnings[0] and html in warnings[1]


def test_all_mirrors_failing_names_every_url(http_server):
    a = http_server.add("/a", status=404)
    b = http_server.add("/b", status=410)
    with pytest.raises(FeedError) as info:
        fetch_first([a, b], name="topics", **FAST)
    assert a in str(info.value) and b in str(info.value) and "410" in str(info.value)


# ---------------------------------------------------------------------------------------------
# A live `digest run`: the retries it makes are warnings the user sees


def test_live_run_warns_of_each_retry(run_cli, http_server, tmp_path):
    topics_url = http_server.script("/topics.rss", (503, b"busy", {}), (200, BODY, {}))
    trending_url = http_server.add("/trending.rss", news_rss(titled(["One story", "Another story", "Third"])))
    config = tmp_path / "digest.toml"
    config.write_text(f'[feeds]\nbackoff = 0.01\nretries = 2\n[feeds.topics]\nurl = "{topics_url}"\n'
                      f'[feeds.trending]\nurl = "{trending_url}"\n', encoding="utf-8")
    out = tmp_path / "site"
    result = run_cli("run", "--config", config, "--engine", "fake", "--out", out, "--date", "2026-01-02")
    assert result.exit_code == 0, describe(result)
    assert len(http_server.to("/topics.rss")) == 2
    warning = f"digest: warning: feed 'topics': {topics_url}: HTTP 503"
    lines = [line for line in result.stderr.splitlines() if line.startswith(warning)]
    assert len(lines) == 1 and lines[0].endswith("; trying again in 0.01 s"), describe(result)
