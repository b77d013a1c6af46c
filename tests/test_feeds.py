"""digest.feeds: parsing RSS 2.0 and Reddit-shaped Atom, reading feed files, fetching over HTTP."""

from __future__ import annotations

import re
import socket

import pytest

from conftest import Item, news_rss, reddit_atom
from digest import feeds, http, resources
from digest.errors import FeedError
from digest.feeds import fetch, parse_feed, read_feed_file

TAG = re.compile(r"<[^>]*>")


# ---------------------------------------------------------------------------------------------
# RSS 2.0


RSS_ITEMS = [
    Item(
        title="Robots & Humans: a <new> partnership",
        text="Robots now fold & iron laundry in 3 minutes.",
        link="https://news.example.com/a?x=1&y=2",
        id="news-guid-1",
    ),
    Item(title="AT&T's \"quiet\" AI lab opens up", text="The lab publishes its first papers.", link="https://news.example.com/b"),
]


def test_rss_titles_links_ids_and_plain_summaries():
    data = news_rss(RSS_ITEMS)
    # The document really carries the escaping we want to see decoded.
    assert b"Robots &amp; Humans: a &lt;new&gt; partnership" in data
    assert b"<![CDATA[<p>" in data

    feed = parse_feed(data, name="news", source="test://news")

    assert feed.name == "news" and feed.source == "test://news"
    assert [e.title for e in feed.entries] == [item.title for item in RSS_ITEMS]
    assert [e.link for e in feed.entries] == [item.link for item in RSS_ITEMS]
    assert feed.entries[0].id == "news-guid-1"
    assert feed.entries[1].id  # a guid is always there in our documents
    for entry, item in zip(feed.entries, RSS_ITEMS):
        assert not TAG.search(entry.summary), entry.summary
        # The CDATA held "<p>TEXT</p><p><a>Read more</a></p>": the text survives, the markup does not.
        assert entry.summary.startswith(item.text)
        assert "Read more" in entry.summary
        assert "\n" not in entry.summary and "  " not in entry.summary


def test_rss_entities_in_description_are_decoded_once():
    data = news_rss([Item(title="T", text="Fish &amp; chips")], cdata=False)
    (entry,) = parse_feed(data, name="n", source="s").entries
    # The description is HTML (escaped once more for XML): "Fish &amp; chips" is "Fish & chips".
    assert entry.summary == "Fish & chips"


def test_rss_item_without_guid_uses_link_as_id():
    data = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>'
        b"<item><title>Only a link</title><link>https://news.example.com/only</link></item>"
        b"</channel></rss>"
    )
    (entry,) = parse_feed(data, name="n", source="s").entries
    assert entry.link == "https://news.example.com/only"
    assert entry.id == entry.link
    assert entry.summary == ""


# ---------------------------------------------------------------------------------------------
# Reddit-shaped Atom


ATOM_ITEMS = [
    Item(title="[R] Sparse experts & dense models: <a> comparison", text="We train models & compare them.",
         author="moe_enjoyer", id="t3_abc001"),
    Item(title="[D] Link-only post", text="", author="lurker", id="t3_abc002"),
    Item(title="[P] Tool with a long description", text="First sentence. Second sentence with 2 < 3 in it.",
         author="builder_42", id="t3_abc003"),
]


def test_reddit_atom_entries():
    data = reddit_atom(ATOM_ITEMS)
    assert b"submitted by" in data and b"[comments]" in data

    feed = parse_feed(data, name="topics", source="test://topics")

    assert [e.title for e in feed.entries] == [i.title for i in ATOM_ITEMS]
    assert [e.id for e in feed.entries] == [i.id for i in ATOM_ITEMS]
    for entry in feed.entries:
        assert entry.link.startswith("https://www.reddit.com/r/MachineLearning/comments/")
    for entry, item in zip(feed.entries, ATOM_ITEMS):
        assert not TAG.search(entry.summary), entry.summary
        assert "submitted by" not in entry.summary
        assert "/u/" not in entry.summary
        assert "[link]" not in entry.summary and "[comments]" not in entry.summary
        assert "SC_OFF" not in entry.summary
        # What the poster wrote is all that is left.
        assert entry.summary == item.text


def test_bundled_sample_has_no_html_or_trailer():
    feed = read_feed_file(resources.samples_dir(), "topics")
    assert len(feed.entries) >= 6
    assert feed.source.endswith("topics.xml")
    for entry in feed.entries:
        assert entry.title and entry.id and entry.link.startswith("https://")
        assert not TAG.search(entry.summary)
        assert "submitted by" not in entry.summary
        assert "&#32;" not in entry.summary and "&amp;" not in entry.summary


# ---------------------------------------------------------------------------------------------
# Not a feed


@pytest.mark.parametrize(
    "data",
    [
        b"<!DOCTYPE html><html><head><title>Reddit</title></head><body><h1>Too many requests</h1>"
        b"<p>Please <a href='/'>try again</a>.</p></body></html>",
        b"<html><body>blocked</body></html>",
        b"this is not xml at all",
        b'{"kind": "Listing", "data": {}}',
    ],
    ids=["html-page", "html-minimal", "text", "json"],
)
def test_not_a_feed_raises(data):
    with pytest.raises(FeedError) as info:
        parse_feed(data, name="topics", source="https://example.invalid/top")
    message = str(info.value)
    assert "topics" in message and "https://example.invalid/top" in message


@pytest.mark.parametrize("data", [b"", b"   \n\t "])
def test_empty_body_raises(data):
    with pytest.raises(FeedError, match="empty"):
        parse_feed(data, name="topics", source="somewhere")


def test_feed_error_carries_feed_exit_code():
    from digest.errors import EXIT_FEED

    with pytest.raises(FeedError) as info:
        parse_feed(b"", name="x", source="y")
    assert info.value.exit_code == EXIT_FEED


# ---------------------------------------------------------------------------------------------
# Feed files


def test_read_feed_file_reads_name_dot_xml(tmp_path):
    (tmp_path / "topics.xml").write_bytes(reddit_atom(ATOM_ITEMS))
    feed = read_feed_file(tmp_path, "topics")
    assert feed.name == "topics"
    assert feed.source == str(tmp_path / "topics.xml")
    assert len(feed.entries) == len(ATOM_ITEMS)


def test_read_feed_file_missing_names_the_path(tmp_path):
    with pytest.raises(FeedError) as info:
        read_feed_file(tmp_path, "trending")
    assert str(tmp_path / "trending.xml") in str(info.value)


def test_read_feed_file_unreadable_names_the_path(tmp_path):
    # A folder where the file should be: exists, but cannot be read as a file.
    (tmp_path / "topics.xml").mkdir()
    with pytest.raises(FeedError) as info:
        read_feed_file(tmp_path, "topics")
    assert str(tmp_path / "topics.xml") in str(info.value)


def test_read_feed_file_with_html_content_raises(tmp_path):
    (tmp_path / "topics.xml").write_bytes(b"<html><body><p>Not a feed</p></body></html>")
    with pytest.raises(FeedError) as info:
        read_feed_file(tmp_path, "topics")
    assert str(tmp_path / "topics.xml") in str(info.value)


# ---------------------------------------------------------------------------------------------
# fetch over HTTP (a real server on 127.0.0.1)


def test_fetch_200_returns_bytes_and_sends_user_agent(http_server):
    body = news_rss(RSS_ITEMS)
    url = http_server.add("/feed.xml", body)
    agent = "digest-test/9.9 (+https://tests.invalid)"

    data = fetch(url, name="news", timeout=5, user_agent=agent).body

    assert data == body
    assert len(http_server.seen) == 1
    assert http_server.seen[0].path == "/feed.xml"
    assert http_server.seen[0].headers["User-Agent"] == agent


def test_fetch_default_user_agent_is_not_pythons(http_server):
    url = http_server.add("/feed.xml", b"<rss/>")
    fetch(url, name="news", timeout=5)
    agent = http_server.seen[0].headers["User-Agent"]
    assert agent == http.DEFAULT_USER_AGENT
    assert "Python-urllib" not in agent


@pytest.mark.parametrize("status", [404, 429, 500])
def test_fetch_http_error_names_url_and_code(http_server, status):
    url = http_server.add("/gone.rss", b"nope", status=status)
    with pytest.raises(FeedError) as info:
        fetch(url, name="topics", timeout=5, retries=0)
    message = str(info.value)
    assert url in message
    assert str(status) in message
    assert "topics" in message


def test_fetch_unknown_path_is_404(http_server):
    url = http_server.base + "/nothing-here"
    with pytest.raises(FeedError, match="404"):
        fetch(url, name="topics", timeout=5)


def test_fetch_connection_refused_raises_feed_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens there any more.
    url = f"http://127.0.0.1:{port}/feed.xml"
    with pytest.raises(FeedError) as info:
        fetch(url, name="topics", timeout=2, retries=0)
    assert url in str(info.value)


def test_fetch_timeout_raises_feed_error(http_server):
    url = http_server.add("/slow.xml", b"<rss/>", delay=1.0)
    with pytest.raises(FeedError) as info:
        fetch(url, name="topics", timeout=0.2, retries=0)
    assert url in str(info.value)


def test_fetch_refuses_oversized_body(http_server):
    """A feed's body is capped by digest.http (its MAX_BYTES, 32 MiB; here a smaller cap)."""
    url = http_server.add("/big.xml", b"x" * 5000)
    with pytest.raises(FeedError) as info:
        fetch(url, name="topics", timeout=5, max_bytes=1000)
    assert url in str(info.value)
    # Exactly at the limit is fine.
    url = http_server.add("/ok.xml", b"y" * 1000)
    assert fetch(url, name="topics", timeout=5, max_bytes=1000).body == b"y" * 1000


def test_a_fetched_feed_parses(http_server):
    url = http_server.add("/top/.rss", reddit_atom(ATOM_ITEMS))
    feed = parse_feed(fetch(url, name="topics", timeout=5).body, name="topics", source=url)
    assert feed.source == url
    assert [e.title for e in feed.entries] == [i.title for i in ATOM_ITEMS]
