"""Bad feed documents: each is either read with the bad part skipped and a warning naming the feed,
or refused with a FeedError that names the feed, its file or URL, and what the parser said."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TOPIC_TITLES, Item, describe, news_rss, reddit_atom, titled
from digest import feeds
from digest.errors import EXIT_FEED
from digest.feeds import parse_feed, read_feed_file
from test_cli import DAY, assert_one_error, no_post_written, post_file, topic_titles

SOURCE = "https://feeds.example/top.rss"


def parse(data: bytes):
    return parse_feed(data, name="topics", source=SOURCE)


def rss(items: str, *, declaration: str = '<?xml version="1.0" encoding="UTF-8"?>') -> bytes:
    return f'{declaration}<rss version="2.0"><channel><title>News</title>{items}</channel></rss>'.encode()


def item(title: str, guid: str, description: str = "") -> str:
    return f"<item><title>{title}</title><guid>{guid}</guid><description>{description}</description></item>"


# ---------------------------------------------------------------------------------------------
# Malformed XML


def test_malformed_xml_with_entries_is_read_with_a_warning():
    # An unescaped "&" in the third title: expat stops there, feedparser's loose parser goes on.
    data = rss(item("First", "1") + item("Second", "2") + item("Fish & chips", "3"))
    feed = parse(data)
    assert [e.title for e in feed.entries] == ["First", "Second", "Fish & chips"]
    (warning,) = feed.warnings
    assert "not well-formed" in warning and SOURCE in warning and "topics" in warning
    assert "invalid token" in warning  # the parser's own message
    assert "3 entries" in warning


@pytest.mark.parametrize(
    "data",
    [
        rss("<ite"),
        rss("</chanel>"),
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><entry',
    ],
    ids=["unclosed-item", "mismatched-tag", "atom-cut"],
)
def test_malformed_xml_without_entries_is_a_feed_error(data):
    with pytest.raises(feeds.FeedError) as info:
        parse(data)
    message = str(info.value)
    assert "topics" in message and SOURCE in message
    assert "not well-formed" in message
    assert "<unknown>:1:" in message, "the parser's message, with its position, is passed on"


def test_malformed_feed_file_error_names_the_file(tmp_path):
    (tmp_path / "topics.xml").write_bytes(rss("</chanel>"))
    with pytest.raises(feeds.FeedError) as info:
        read_feed_file(tmp_path, "topics")
    assert str(tmp_path / "topics.xml") in str(info.value)


def test_html_page_error_says_what_to_do():
    with pytest.raises(feeds.FeedError, match="not an RSS or Atom feed.*check the URL"):
        parse(b"<!DOCTYPE html><html><head><title>Blocked</title></head><body>nope</body></html>")


def test_valid_feed_without_entries_has_no_entries_and_no_warning():
    feed = parse(rss(""))
    assert feed.entries == () and feed.warnings == ()


# ---------------------------------------------------------------------------------------------
# Entries without a title, repeated entries


def test_untitled_and_whitespace_titled_entries_are_skipped_with_a_warning():
    data = rss(item("Kept one", "1") + item("", "2") + item(" \t\n ", "3") + "<item><guid>4</guid></item>"
               + item("Kept two", "5"))
    feed = parse(data)
    assert [e.title for e in feed.entries] == ["Kept one", "Kept two"]
    (warning,) = feed.warnings
    assert "skipped 3 entries without a title" in warning and SOURCE in warning


def test_repeated_entries_are_read_once_with_a_warning():
    data = rss(item("Story A", "a") + item("Story B", "b") + item("Story A again", "a") + item("Story A", "a"))
    feed = parse(data)
    assert [e.title for e in feed.entries] == ["Story A", "Story B"]
    (warning,) = feed.warnings
    assert "skipped 2 entries that repeat" in warning


def test_entries_without_id_fall_back_to_link_for_repeats():
    data = rss("<item><title>One</title><link>https://x.example/1</link></item>"
               "<item><title>One more time</title><link>https://x.example/1</link></item>")
    assert [e.title for e in parse(data).entries] == ["One"]


# ---------------------------------------------------------------------------------------------
# Encodings, mojibake, entities


def test_windows_1252_declared_correctly():
    text = rss(item("Café “quoted” € AI’s", "1"), declaration='<?xml version="1.0" encoding="windows-1252"?>')
    feed = parse(text.decode("utf-8").encode("windows-1252"))  # the bytes a Windows-1252 server sends
    assert [e.title for e in feed.entries] == ["Café “quoted” € AI’s"]
    assert feed.warnings == ()


def test_iso_8859_1_declared_correctly():
    text = rss(item("Café naïve façade", "1"), declaration='<?xml version="1.0" encoding="ISO-8859-1"?>')
    feed = parse(text.decode("utf-8").encode("latin-1"))
    assert [e.title for e in feed.entries] == ["Café naïve façade"]
    assert feed.warnings == ()


def test_wrong_declared_encoding_is_read_with_a_warning():
    # Declared UTF-8, but the bytes are Windows-1252 (0x92 and 0xe9 are not valid UTF-8 there).
    feed = parse(rss(item("AI’s café", "1")).decode("utf-8").encode("windows-1252"))
    assert [e.title for e in feed.entries] == ["AI’s café"]
    (warning,) = feed.warnings
    assert "declared as utf-8" in warning.lower() and SOURCE in warning


def test_mojibake_in_title_and_summary_is_repaired():
    # UTF-8 text that was once decoded as Windows-1252 and encoded again: "AI’s" became "AIâ€™s".
    broken = "AI’s new model — café".encode("utf-8").decode("windows-1252")
    assert broken == "AIâ€™s new model â€” cafÃ©"
    feed = parse(rss(item(broken, "1", description=broken)))
    assert feed.entries[0].title == "AI’s new model — café"
    assert feed.entries[0].summary == "AI’s new model — café"


def test_entities_are_decoded_once_in_plain_text_titles():
    # An Atom title is plain text unless it says otherwise: "&amp;amp;" is the text "&amp;".
    data = (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
            b"<entry><id>1</id><title>Writing &amp;amp; and &amp;lt;b&amp;gt; in HTML</title></entry>"
            b'<entry><id>2</id><title type="html">A &amp;amp; B &lt;b&gt;bold&lt;/b&gt;</title></entry></feed>')
    titles = [e.title for e in parse(data).entries]
    assert titles == ["Writing &amp; and &lt;b&gt; in HTML", "A & B bold"]


def test_entities_are_decoded_once_in_html_titles_of_rss():
    # RSS titles are HTML by feedparser's reading: one decode of that layer, tags dropped.
    data = rss(item("AT&amp;amp;T &amp;lt;3 and &lt;i&gt;italics&lt;/i&gt;", "1") + item("AI&#8217;s plan", "2"))
    assert [e.title for e in parse(data).entries] == ["AT&T <3 and italics", "AI’s plan"]


def test_entities_decoded_once_reach_the_post(run_cli, tmp_path, write_feeds):
    feeds_dir = write_feeds(topics=None)
    data = (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
            b"<entry><id>1</id><title>Escaping &amp;amp; in templates</title></entry></feed>")
    (feeds_dir / "topics.xml").write_bytes(data)
    result = run_cli("run", "--engine", "fake", "--feeds-from", feeds_dir, "--out", tmp_path, "--date", DAY)
    assert result.exit_code == 0, describe(result)
    assert topic_titles(post_file(tmp_path).read_text(encoding="utf-8")) == ["Escaping &amp; in templates"]


# ---------------------------------------------------------------------------------------------
# Through `digest run`: warnings on stderr, or one error line


def test_run_with_malformed_feed_warns_and_writes(run_cli, tmp_path, write_feeds):
    feeds_dir = write_feeds()
    data = (feeds_dir / "topics.xml").read_bytes().replace(b"</feed>", b"")  # the root never closes
    (feeds_dir / "topics.xml").write_bytes(data)
    result = run_cli("run", "--engine", "fake", "--feeds-from", feeds_dir, "--out", tmp_path, "--date", DAY)
    assert result.exit_code == 0, describe(result)
    warnings = [line for line in result.stderr.splitlines()
                if line.startswith("digest: warning:") and "fake engine" not in line]  # (it applies no prevention)
    assert len(warnings) == 1 and str(feeds_dir / "topics.xml") in warnings[0], describe(result)
    assert topic_titles(post_file(tmp_path).read_text(encoding="utf-8")) == TOPIC_TITLES[:6]


def test_run_with_empty_feed_fails_with_one_line(run_cli, tmp_path, write_feeds):
    feeds_dir = write_feeds()
    (feeds_dir / "topics.xml").write_bytes(reddit_atom([]))
    out = tmp_path / "site"
    result = run_cli("run", "--engine", "fake", "--feeds-from", feeds_dir, "--out", out, "--date", DAY)
    assert_one_error(result, EXIT_FEED, "topics", str(feeds_dir / "topics.xml"), "no usable entries")
    assert no_post_written(out)


def test_run_with_malformed_feed_beyond_repair_fails_with_one_line(run_cli, tmp_path, write_feeds):
    feeds_dir = write_feeds()
    (feeds_dir / "trending.xml").write_bytes(rss("</chanel>"))
    out = tmp_path / "site"
    result = run_cli("run", "--engine", "fake", "--feeds-from", feeds_dir, "--out", out, "--date", DAY)
    assert_one_error(result, EXIT_FEED, str(feeds_dir / "trending.xml"), "mismatched tag")
    assert no_post_written(out)


def test_run_with_untitled_and_repeated_entries_warns(run_cli, tmp_path, write_feeds):
    feeds_dir = write_feeds()
    items = titled(TOPIC_TITLES[:3], "[R] ")
    items[1] = Item(title="   ", text="nothing")
    items.append(Item(title=items[0].title, text="again", id="t3_1t0000"))
    (feeds_dir / "topics.xml").write_bytes(reddit_atom(items))
    result = run_cli("run", "--engine", "fake", "--feeds-from", feeds_dir, "--out", tmp_path, "--date", DAY)
    assert result.exit_code == 0, describe(result)
    said = result.stderr
    assert "skipped 1 entry without a title" in said and "skipped 1 entry that repeat" in said, describe(result)
    assert "fewer than the 6 wanted" in said
    assert topic_titles(post_file(tmp_path).read_text(encoding="utf-8")) == [TOPIC_TITLES[0], TOPIC_TITLES[2]]


# ---------------------------------------------------------------------------------------------
# Big feeds: bounded work and memory. The time a parse takes depends on the machine; what the code
# enforces is how much feedparser is given: the first MAX_ENTRIES entries of a longer feed.


MEASURE = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import feedparser
from conftest import Item, reddit_atom
from digest.feeds import parse_feed
given = []
real_parse = feedparser.parse
def spy(data, *args, **kwargs):
    given.append(data)
    return real_parse(data, *args, **kwargs)
feedparser.parse = spy
kind = sys.argv[2]
if kind == "many":
    data = reddit_atom([Item(title=f"Story number {n}", text="word " * 30) for n in range(10_000)])
else:
    data = reddit_atom([Item(title=f"Long story {n}", text="lorem ipsum " * 12_000) for n in range(150)])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
feed = parse_feed(data, name="topics", source="big.xml")
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
(parsed,) = given
print(json.dumps({"bytes": len(data), "entries": len(feed.entries), "seconds": seconds,
                  "parsed_bytes": len(parsed), "parsed_entries": parsed.count(b"<entry>"),
                  "rss_growth_mib": (after - before) / 1024, "warnings": list(feed.warnings),
                  "first": feed.entries[0].title, "summary_chars": max(len(e.summary) for e in feed.entries)}))
"""


def measure(kind: str) -> dict:
    # The timeout only stops a hung parse from hanging the suite; the seconds are printed, not judged.
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(Path(__file__).parent), kind],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    print(f"{kind}: {result}")
    return result


def test_feed_with_10000_entries_is_cut_before_it_is_parsed():
    result = measure("many")
    assert result["entries"] == feeds.MAX_ENTRIES
    assert result["first"] == "Story number 0"
    assert any(f"more than {feeds.MAX_ENTRIES} entries" in w for w in result["warnings"])
    # feedparser (about a millisecond an entry) is handed the first MAX_ENTRIES entries only.
    assert result["parsed_entries"] == feeds.MAX_ENTRIES, result
    assert result["parsed_bytes"] < result["bytes"] / 10, result
    assert result["rss_growth_mib"] < 400, result


def test_20_mb_feed_is_read_in_bounded_memory():
    result = measure("large")
    assert result["bytes"] > 20 * 1024 * 1024
    assert result["entries"] == 150 and result["warnings"] == []
    assert result["summary_chars"] <= feeds.MAX_SUMMARY_CHARS
    assert result["rss_growth_mib"] < 400, result


def test_cut_feed_keeps_the_first_entries_and_stays_well_formed(monkeypatch):
    monkeypatch.setattr(feeds, "MAX_ENTRIES", 3)
    for data in (reddit_atom(titled(TOPIC_TITLES)), news_rss(titled(TOPIC_TITLES))):
        feed = parse(data)
        assert [e.title for e in feed.entries] == [t for t in TOPIC_TITLES[:3]]
        assert len(feed.warnings) == 1 and "more than 3 entries" in feed.warnings[0]
    # Exactly at the limit: nothing is cut, no warning.
    feed = parse(news_rss(titled(TOPIC_TITLES[:3])))
    assert len(feed.entries) == 3 and feed.warnings == ()
