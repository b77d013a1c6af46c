"""`digest fetch --to DIR`, `digest run --snapshot DIR`, and a live run that loses a feed: against a
real HTTP server on 127.0.0.1, with the fake engine (no model)."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from conftest import TOPIC_TITLES, TRENDING_TITLES, describe, news_rss, reddit_atom, titled
from digest.errors import EXIT_FEED, EXIT_MODEL

DAY = "2026-01-02"
TOPICS = reddit_atom(titled(TOPIC_TITLES, "[R] "))
TRENDING = news_rss(titled(TRENDING_TITLES))


@pytest.fixture(autouse=True)
def pinned_time(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767312000")  # 2026-01-02T00:00:00Z


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def closed_port_url(path: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def write_config(path: Path, topics: str | list[str], trending: str | list[str], **feeds) -> Path:
    def urls(value):
        first, *rest = [value] if isinstance(value, str) else value
        return f'url = "{first}"\nmirrors = {json.dumps(rest)}\n'

    settings = {"timeout": 5, "retries": 0, "backoff": 0.0, **feeds}
    lines = ["[feeds]", *(f"{k} = {json.dumps(v)}" for k, v in settings.items()),
             "[feeds.topics]", urls(topics), "[feeds.trending]", urls(trending),
             "[generation]", 'engine = "fake"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def etag_handler(body: bytes, etag: str):
    """Answer 304 to a request that names `etag`, else the body with its ETag and Last-Modified."""

    def handler(request):
        if request.headers.get("If-None-Match") == etag:
            request.reply(304, b"", {"ETag": etag})
        else:
            request.reply(200, body, {"ETag": etag, "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT"})

    return handler


@pytest.fixture
def feeds_server(http_server):
    http_server.handle("/topics.rss", etag_handler(TOPICS, '"t1"'))
    http_server.handle("/trending.rss", etag_handler(TRENDING, '"n1"'))
    return http_server


def index_of(directory: Path) -> dict:
    return json.loads((directory / "index.json").read_text(encoding="utf-8"))["feeds"]


def post_text(out: Path) -> str:
    return (out / "content" / "posts" / f"{DAY}-ai-auto-summary.md").read_text(encoding="utf-8")


def test_fetch_writes_raw_bodies_and_an_index(run_cli, feeds_server, tmp_path):
    config = write_config(tmp_path / "digest.toml", feeds_server.base + "/topics.rss", feeds_server.base + "/trending.rss",
                          user_agent="digest-test/1 (+mailto:ops@example.invalid)")
    snap = tmp_path / "snap"
    result = run_cli("fetch", "--to", snap, "--config", config)
    assert result.exit_code == 0, describe(result)
    assert result.stdout.strip() == str(snap)

    assert (snap / "topics.xml").read_bytes() == TOPICS
    assert (snap / "trending.xml").read_bytes() == TRENDING
    index = index_of(snap)
    for name, body in (("topics", TOPICS), ("trending", TRENDING)):
        entry = index[name]
        assert entry["url"] == entry["final_url"] == feeds_server.base + f"/{name}.rss"
        assert entry["status"] == 200 and entry["size"] == len(body) and entry["sha256"] == sha(body)
        assert entry["last_modified"] == "Thu, 01 Jan 2026 00:00:00 GMT"
        assert entry["fetched_at"].endswith("Z")
    assert index["topics"]["etag"] == '"t1"'
    assert {s.headers["User-Agent"] for s in feeds_server.seen} == {"digest-test/1 (+mailto:ops@example.invalid)"}
    assert sorted(p.name for p in snap.iterdir()) == ["index.json", "topics.xml", "trending.xml"]


def test_second_fetch_is_conditional_and_304_keeps_the_body(run_cli, feeds_server, tmp_path):
    config = write_config(tmp_path / "digest.toml", feeds_server.base + "/topics.rss", feeds_server.base + "/trending.rss")
    snap = tmp_path / "snap"
    assert run_cli("fetch", "--to", snap, "--config", config).exit_code == 0
    feeds_server.seen.clear()

    again = run_cli("fetch", "--to", snap, "--config", config)
    assert again.exit_code == 0, describe(again)
    assert {s.path: s.headers.get("If-None-Match") for s in feeds_server.seen} == {"/topics.rss": '"t1"', "/trending.rss": '"n1"'}
    assert all(s.headers["If-Modified-Since"] == "Thu, 01 Jan 2026 00:00:00 GMT" for s in feeds_server.seen)
    assert "not modified" in again.stderr
    index = index_of(snap)
    assert index["topics"]["status"] == 304 and index["topics"]["sha256"] == sha(TOPICS)
    assert (snap / "topics.xml").read_bytes() == TOPICS

    # A changed feed comes back whole and replaces the file.
    newer = reddit_atom(titled(TOPIC_TITLES[::-1], "[R] "))
    feeds_server.handle("/topics.rss", etag_handler(newer, '"t2"'))
    assert run_cli("fetch", "--to", snap, "--config", config).exit_code == 0
    assert (snap / "topics.xml").read_bytes() == newer
    assert index_of(snap)["topics"]["etag"] == '"t2"' and index_of(snap)["topics"]["status"] == 200


def test_run_from_a_snapshot_never_touches_the_network(run_cli, feeds_server, tmp_path, write_feeds):
    good = write_config(tmp_path / "good.toml", feeds_server.base + "/topics.rss", feeds_server.base + "/trending.rss")
    snap = tmp_path / "snap"
    assert run_cli("fetch", "--to", snap, "--config", good).exit_code == 0
    # The same settings, but every URL now points at a port where nothing listens.
    closed = write_config(tmp_path / "closed.toml", closed_port_url("/topics.rss"), closed_port_url("/trending.rss"))
    live = run_cli("run", "--config", closed, "--out", tmp_path / "live", "--date", DAY)
    assert live.exit_code == EXIT_FEED, describe(live)  # proof that these URLs cannot be reached

    out = tmp_path / "site"
    result = run_cli("run", "--config", closed, "--snapshot", snap, "--strict-feeds", "--out", out, "--date", DAY)
    assert result.exit_code == 0, describe(result)
    from_files = run_cli("run", "--config", closed, "--feeds-from", write_feeds(), "--out", tmp_path / "files",
                         "--date", DAY)
    assert from_files.exit_code == 0, describe(from_files)
    assert post_text(out) == post_text(tmp_path / "files")  # the same feeds, the same post
    # No feed warning (the one line says the fake engine applies no prevention, which is not the feeds').
    assert [line for line in result.stderr.splitlines()
            if "warning" in line and "fake engine cannot apply" not in line] == []


@pytest.mark.parametrize("damage", ["edit", "delete"])
def test_a_tampered_snapshot_is_refused(run_cli, feeds_server, tmp_path, damage):
    config = write_config(tmp_path / "digest.toml", feeds_server.base + "/topics.rss", feeds_server.base + "/trending.rss")
    snap = tmp_path / "snap"
    assert run_cli("fetch", "--to", snap, "--config", config).exit_code == 0
    target = snap / "trending.xml"
    if damage == "edit":
        target.write_bytes(TRENDING.replace(b"Kestrel", b"Kestrel2"))
    else:
        target.unlink()

    out = tmp_path / "site"
    result = run_cli("run", "--config", config, "--snapshot", snap, "--out", out, "--date", DAY)
    assert result.exit_code == EXIT_FEED, describe(result)
    (message,) = [line for line in result.stderr.splitlines() if line.startswith("digest: error: ")]
    assert str(target) in message and sha(TRENDING) in message
    if damage == "edit":
        assert sha(target.read_bytes()) in message
    assert not list(out.rglob("*.md"))  # no post (the folder itself may be made early, to fail fast)


def test_missing_index_is_refused(run_cli, tmp_path, write_feeds):
    folder = write_feeds()
    result = run_cli("run", "--engine", "fake", "--snapshot", folder, "--out", tmp_path / "site", "--date", DAY)
    assert result.exit_code == EXIT_FEED, describe(result)
    assert str(folder / "index.json") in result.stderr and "digest fetch" in result.stderr


def test_a_failed_feed_is_filled_from_the_other_unless_strict(run_cli, feeds_server, tmp_path):
    gone = feeds_server.base + "/moved-away.rss"  # 404
    config = write_config(tmp_path / "digest.toml", feeds_server.base + "/topics.rss", gone)
    out = tmp_path / "site"
    result = run_cli("run", "--config", config, "--out", out, "--date", DAY)
    assert result.exit_code == 0, describe(result)
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert "feed 'trending'" in warnings[0] and gone in warnings[0] and "404" in warnings[0]
    assert "filled from feed 'topics'" in warnings[0]
    text = post_text(out)
    trending = text.split("## Currently trending topics")[1].split("##")[0]
    # Six topics from the topics feed, and its two stories left over as the trending headlines.
    assert [line[2:] for line in trending.split("\n") if line.startswith("- ")] == TOPIC_TITLES[6:8]

    strict_out = tmp_path / "strict"
    strict = run_cli("run", "--config", config, "--strict-feeds", "--out", strict_out, "--date", DAY)
    assert strict.exit_code == EXIT_FEED, describe(strict)
    assert gone in strict.stderr and "strict" in strict.stderr
    assert not list(strict_out.rglob("*.md"))  # no post


def test_a_failed_feed_recorded_in_a_snapshot_fails_the_same_way(run_cli, feeds_server, tmp_path):
    gone = feeds_server.base + "/moved-away.rss"
    news = feeds_server.add("/news.rss", news_rss(titled(TRENDING_TITLES + TOPIC_TITLES)))  # enough for both
    config = write_config(tmp_path / "digest.toml", gone, news)
    snap = tmp_path / "snap"
    fetched = run_cli("fetch", "--to", snap, "--config", config)
    assert fetched.exit_code == 0, describe(fetched)
    assert gone in fetched.stderr and "feed 'topics'" in fetched.stderr
    assert "error" in index_of(snap)["topics"] and not (snap / "topics.xml").exists()

    result = run_cli("run", "--config", config, "--snapshot", snap, "--out", tmp_path / "site", "--date", DAY)
    assert result.exit_code == 0, describe(result)
    assert "feed 'topics'" in result.stderr and gone in result.stderr
    assert "1. **Meet Kestrel" in post_text(tmp_path / "site")  # topics written from the trending feed
    strict = run_cli("run", "--config", config, "--snapshot", snap, "--strict-feeds", "--out", tmp_path / "s", "--date", DAY)
    assert strict.exit_code == EXIT_FEED and gone in strict.stderr

    strict_fetch = run_cli("fetch", "--to", tmp_path / "snap2", "--config", config, "--strict-feeds")
    assert strict_fetch.exit_code == EXIT_FEED and gone in strict_fetch.stderr
    assert not (tmp_path / "snap2").exists()


def test_every_feed_failing_is_a_feed_error(run_cli, tmp_path):
    config = write_config(tmp_path / "digest.toml", closed_port_url("/a"), closed_port_url("/b"))
    result = run_cli("fetch", "--to", tmp_path / "snap", "--config", config)
    assert result.exit_code == EXIT_FEED, describe(result)
    assert "/a" in result.stderr and "/b" in result.stderr


def test_a_mirror_stands_in_for_a_failing_url(run_cli, feeds_server, tmp_path):
    down = feeds_server.handle("/down.rss", lambda request: request.reply(503, b"maintenance"))
    config = write_config(tmp_path / "digest.toml", [down, feeds_server.base + "/topics.rss"],
                          feeds_server.base + "/trending.rss")
    result = run_cli("run", "--config", config, "--out", tmp_path / "site", "--date", DAY)
    assert result.exit_code == 0, describe(result)
    assert down in result.stderr and "503" in result.stderr
    assert "1. **Sparse experts halve pretraining compute**" in post_text(tmp_path / "site")
    (snap,) = (tmp_path / "site" / ".digest" / "snapshots").iterdir()
    assert index_of(snap)["topics"]["url"] == feeds_server.base + "/topics.rss"


def test_a_failed_run_leaves_no_snapshot_behind(run_cli, feeds_server, tmp_path):
    """The feeds are fetched into a new snapshot before the model loads; a run that then fails (here:
    no model) removes it, as it writes no post."""
    config = write_config(tmp_path / "digest.toml", feeds_server.base + "/topics.rss",
                          feeds_server.base + "/trending.rss")
    out = tmp_path / "site"
    result = run_cli("run", "--config", config, "--engine", "sequential", "--model", tmp_path / "missing.gguf",
                     "--out", out, "--date", DAY)
    assert result.exit_code == EXIT_MODEL, describe(result)
    assert [seen.path for seen in feeds_server.seen] == ["/topics.rss", "/trending.rss"]  # fetched, then failed
    assert list((out / ".digest" / "snapshots").glob("*")) == []
    assert not list(out.rglob("*.md"))
