"""digest.http against a real HTTP server on 127.0.0.1: `post_json` (what an OpenAI-compatible engine
will use) with the same retry policy as feeds and downloads, and `download`'s resume edge cases.
The feeds' use of `get` is tested in test_fetch.py, `models pull`'s use of `download` in test_models.py."""

from __future__ import annotations

import json
import socket
import time

import pytest

from digest import http

FAST = {"timeout": 5, "backoff": 0.01, "max_wait": 5}


JSON = {"Content-Type": "application/json"}


def test_post_json_sends_json_and_returns_the_answer(http_server):
    url = http_server.add("/v1/chat/completions", b'{"choices": [{"message": {"content": "Hi"}}]}', headers=JSON)
    got = http.post_json(url, {"model": "m", "messages": [{"role": "user", "content": "é"}]},
                         headers={"Authorization": "Bearer k"}, **FAST)
    assert got == {"choices": [{"message": {"content": "Hi"}}]}
    [seen] = http_server.seen
    assert seen.method == "POST" and json.loads(seen.body) == {"model": "m", "messages": [{"role": "user", "content": "é"}]}
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Authorization"] == "Bearer k"
    assert seen.headers["User-Agent"] == http.DEFAULT_USER_AGENT


def test_post_json_tries_a_500_again(http_server):
    http_server.script("/v1", (500, b"oops", {}), (200, b'{"ok": true}', JSON))
    said = []
    assert http.post_json(http_server.base + "/v1", {}, on_retry=said.append, **FAST) == {"ok": True}
    assert len(http_server.seen) == 2 and all(s.body == b"{}" for s in http_server.seen)  # the payload sent again
    assert said == [f"{http_server.base}/v1: HTTP 500 Internal Server Error; trying again in 0.01 s"]


def test_post_json_waits_as_a_429_asks(http_server):
    http_server.script("/v1", (429, b"", {"Retry-After": "0"}), (200, b"[1, 2]", JSON))
    said = []
    # With a 5 s backoff the wait would be 5 s; Retry-After asks for none.
    assert http.post_json(http_server.base + "/v1", {}, on_retry=said.append, timeout=5, backoff=5, max_wait=10) == [1, 2]
    assert said == [f"{http_server.base}/v1: HTTP 429 Too Many Requests; trying again in 0 s"]


def test_post_json_garbage_body_is_one_clear_line_and_not_tried_again(http_server):
    http_server.add("/v1", b"<html>\n<body>Bad gateway</body></html>", headers={"Content-Type": "text/html"})
    with pytest.raises(http.HTTPFailure) as info:
        http.post_json(http_server.base + "/v1", {}, retries=3, **FAST)
    message = str(info.value)
    assert message.startswith(f"{http_server.base}/v1 answered HTTP 200 with a body that is not JSON")
    assert "\n" not in message and "<html>" in message
    assert len(http_server.seen) == 1 and not info.value.transient


def test_post_json_4xx_names_what_the_server_said(http_server):
    http_server.add("/v1", b'{"error": {"message": "context\\nlength exceeded"}}', status=400, headers=JSON)
    with pytest.raises(http.HTTPFailure) as info:
        http.post_json(http_server.base + "/v1", {}, retries=3, **FAST)
    assert str(info.value) == (f'{http_server.base}/v1 answered HTTP 400 Bad Request: '
                               '{"error": {"message": "context\\nlength exceeded"}}')
    assert info.value.status == 400 and len(http_server.seen) == 1


def test_post_json_gives_up_on_a_stalled_body_by_its_total_timeout(http_server):
    def stall(request):
        request.send_response(200)
        request.send_header("Content-Length", "1000")
        request.end_headers()
        request.wfile.write(b'{"choices": [')
        request.wfile.flush()
        time.sleep(10)  # without a timeout the client would wait this long, then find the body cut off

    http_server.handle("/v1", stall)
    with pytest.raises(http.HTTPFailure) as info:
        http.post_json(http_server.base + "/v1", {}, timeout=0.5, retries=1, backoff=0, max_wait=0)
    assert str(info.value) == (f"{http_server.base}/v1: no complete answer within the 0.5 s timeout "
                               "(stalled after 13 bytes) (after 2 tries)")
    assert info.value.transient and len(http_server.seen) == 2


def test_a_refused_connection_is_tried_again_then_named():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(http.HTTPFailure) as info:
        http.post_json(url, {}, timeout=2, retries=1, backoff=0, max_wait=0)
    assert str(info.value).startswith(f"{url}: cannot connect: ") and str(info.value).endswith("(after 2 tries)")


def test_download_of_a_file_already_complete_is_a_416(http_server, tmp_path):
    http_server.add("/f", status=416)
    part = tmp_path / "f.part"
    part.write_bytes(b"all of it")
    assert http.download(http_server.base + "/f", part, **FAST) == 1
    assert part.read_bytes() == b"all of it"
    assert http_server.seen[0].headers["Range"] == "bytes=9-"


def test_download_416_without_a_file_begun_is_an_error(http_server, tmp_path):
    http_server.add("/f", status=416)
    with pytest.raises(http.HTTPFailure, match="answered HTTP 416"):
        http.download(http_server.base + "/f", tmp_path / "f.part", **FAST)


def test_a_url_that_cannot_be_fetched_is_one_line_not_a_traceback():
    with pytest.raises(http.HTTPFailure) as info:
        http.get("feeds.example/top.rss", **FAST)
    assert str(info.value).startswith("feeds.example/top.rss is not a URL that can be fetched (")
