"""A feed that fails is filled from the other, both ways (docs/configuration.md, docs/air-gapped.md):
a live run and a run from a snapshot, against a real HTTP server on 127.0.0.1, with the fake engine."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from conftest import TOPIC_TITLES, TRENDING_TITLES, describe, news_rss, reddit_atom, titled
from digest.errors import EXIT_FEED

DAY = "2026-01-02"
HTML = (b"<!doctype html><html><head><title>Log in</title></head>"
        b"<body><p>Please log in to see this page.</p></body></html>")


@pytest.fixture(autouse=True)
def pinned_time(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767312000")  # 2026-01-02T00:00:00Z


def closed_port_url(path: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def failing_url(server, how: str) -> tuple[str, str]:
    """A URL that fails `how`, and the words its failure is told in."""
    if how == "404":
        return server.base + "/moved-away.rss", "404"
    if how == "html":
        return server.add("/login.rss", HTML, headers={"Content-Type": "text/html"}), "not an RSS or Atom feed"
    return closed_port_url("/refused.rss"), "cannot connect"


def write_config(path: Path, topics: str, trending: str) -> Path:
    path.write_text("[feeds]\ntimeout = 5\nretries = 0\nbackoff = 0.0\n"
                    f"[feeds.topics]\nurl = {json.dumps(topics)}\n[feeds.trending]\nurl = {json.dumps(trending)}\n"
                    # The fake engine; no model file, which the manifest would otherwise hash.
                    '[generation]\nengine = "fake"\n[model]\npath = "no-model.gguf"\n', encoding="utf-8")
    return path


def sections(out: Path) -> tuple[list[str], list[str]]:
    """The topic titles and the trending headlines of the post for DAY."""
    text = (out / "content" / "posts" / f"{DAY}-ai-auto-summary.md").read_text(encoding="utf-8")
    topics = [line.split("**")[1] for line in text.splitlines() if line[:1].isdigit() and ". **" in line]
    trending = text.split("## Currently trending topics")[1].split("##")[0]
    return topics, [line[2:] for line in trending.splitlines() if line.startswith("- ")]


def warnings_of(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "warning" in line]


@pytest.mark.parametrize("how", ["404", "html", "refused"])
def test_a_failed_topics_feed_is_filled_from_the_trending_feed(run_cli, http_server, tmp_path, how):
    """The trending feed alone (five stories) fills both sections: topics first, one story kept for the
    headlines; the warning names the feed that failed and why."""
    gone, why = failing_url(http_server, how)
    news = http_server.add("/news.rss", news_rss(titled(TRENDING_TITLES)))
    config = write_config(tmp_path / "digest.toml", gone, news)
    out = tmp_path / "site"
    result = run_cli("run", "--config", config, "--out", out, "--date", DAY)
    assert result.exit_code == 0, describe(result)
    first = warnings_of(result)[0]
    assert "feed 'topics'" in first and gone in first and why in first, first
    assert "the topics section is filled from feed 'trending'" in first, first
    assert sections(out) == (TRENDING_TITLES[:4], TRENDING_TITLES[4:])
    if how != "404":
        return  # (--strict-feeds: once is enough)
    strict_out = tmp_path / "strict"
    strict = run_cli("run", "--config", config, "--strict-feeds", "--out", strict_out, "--date", DAY)
    assert strict.exit_code == EXIT_FEED, describe(strict)
    assert "feed 'topics'" in strict.stderr and gone in strict.stderr and "strict" in strict.stderr
    assert not list(strict_out.rglob("*.md"))


def test_a_snapshot_whose_topics_feed_failed_is_run_from_the_trending_feed(run_cli, http_server, tmp_path):
    gone, _ = failing_url(http_server, "404")
    news = http_server.add("/news.rss", news_rss(titled(TRENDING_TITLES)))
    config = write_config(tmp_path / "digest.toml", gone, news)
    snap = tmp_path / "snap"
    assert run_cli("fetch", "--to", snap, "--config", config).exit_code == 0
    out = tmp_path / "site"
    result = run_cli("run", "--config", config, "--snapshot", snap, "--out", out, "--date", DAY)
    assert result.exit_code == 0, describe(result)
    assert "feed 'topics'" in warnings_of(result)[0] and gone in warnings_of(result)[0]
    assert sections(out) == (TRENDING_TITLES[:4], TRENDING_TITLES[4:])
    strict = run_cli("run", "--config", config, "--snapshot", snap, "--strict-feeds", "--out", tmp_path / "s",
                     "--date", DAY)
    assert strict.exit_code == EXIT_FEED, describe(strict)
    assert "feed 'topics'" in strict.stderr and gone in strict.stderr


def test_a_failed_trending_feed_takes_the_headline_from_a_short_topics_feed(run_cli, http_server, tmp_path):
    """Six stories for six topics and the headlines: five topics, and the sixth story as the headline."""
    gone, _ = failing_url(http_server, "404")
    topics = http_server.add("/topics.rss", reddit_atom(titled(TOPIC_TITLES[:6], "[R] ")))
    out = tmp_path / "site"
    result = run_cli("run", "--config", write_config(tmp_path / "digest.toml", topics, gone), "--out", out,
                     "--date", DAY)
    assert result.exit_code == 0, describe(result)
    assert sections(out) == (TOPIC_TITLES[:5], TOPIC_TITLES[5:6])
    assert any("gave 5 usable topics, fewer than the 6 wanted" in line for line in warnings_of(result))


@pytest.mark.parametrize("failing", ["topics", "trending"])
def test_nothing_left_for_a_failed_feeds_section_names_the_feed_that_failed(run_cli, http_server, tmp_path, failing):
    gone, _ = failing_url(http_server, "404")
    single = http_server.add("/one.rss", news_rss(titled(TRENDING_TITLES[:1])))  # one story: not enough for both
    urls = {"topics": single, "trending": single, failing: gone}
    out = tmp_path / "site"
    result = run_cli("run", "--config", write_config(tmp_path / "digest.toml", urls["topics"], urls["trending"]),
                     "--out", out, "--date", DAY)
    assert result.exit_code == EXIT_FEED, describe(result)
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("digest: error:")]
    assert f"feed '{failing}'" in error and gone in error and "404" in error, error
    assert "no usable entries left for the trending headlines after the 1 topic" in error, error
    assert not list(out.rglob("*.md")), error
