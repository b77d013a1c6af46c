"""`[blog] source_links`: each topic's title and each trending headline a link to its story (issue 26,
section 3). Only safe http(s) URLs become links; the checker reads both layouts; replay gives the same
bytes. With the fake engine (no model)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import describe
from digest.check import check_text
from digest.markdown import MAX_URL_CHARS, escape_inline, link, safe_url

DAY = "2026-01-02"


@pytest.mark.parametrize("url, expected", [
    ("https://www.reddit.com/r/x/comments/1/post_1/", "https://www.reddit.com/r/x/comments/1/post_1/"),
    ("HTTP://example.com/a", "HTTP://example.com/a"),
    ("https://example.com/a_(b)?q={{<x>}}", "https://example.com/a_%28b%29?q=%7B%7B%3Cx%3E%7D%7D"),
    ("https://example.com/[1]`c`\\", "https://example.com/%5B1%5D%60c%60%5C"),
    ("https://example.com/?a=1&amp;b=2&c", "https://example.com/?a=1%26amp;b=2&c"),  # no entity for Markdown to read
    ("https://例え.jp/ü", "https://%E4%BE%8B%E3%81%88.jp/%C3%BC"),
    ("javascript:alert(1)", None),
    ("data:text/html,<b>x</b>", None),
    ("ftp://example.com/x", None),
    ("https://", None),
    ("/relative/path", None),
    ("https://example.com/a b", None),
    ('https://example.com/"x"', None),
    ("https://example.com/'x'", None),
    ("https://example.com/\nx", None),
    ("https://example.com/" + "a" * MAX_URL_CHARS, None),
    ("", None),
])
def test_only_safe_http_urls_become_links_and_are_escaped(url, expected):
    assert safe_url(url) == expected
    title = escape_inline("A [new] model")
    assert link(title, url) == (f"[{title}]({expected})" if expected else title)


def _run(run_cli, out: Path, *extra):
    return run_cli("run", "--engine", "fake", "--sample-feeds", "--out", out, "--date", DAY, *extra)


def test_source_links_make_titles_and_headlines_links_that_check_and_replay(run_cli, tmp_path, monkeypatch):
    config = tmp_path / "links.toml"
    config.write_text("[blog]\nsource_links = true\n", encoding="utf-8")
    plain, linked = tmp_path / "plain", tmp_path / "linked"
    assert _run(run_cli, plain).exit_code == 0
    result = _run(run_cli, linked, "-c", config)
    assert result.exit_code == 0, describe(result)
    post = linked / "content" / "posts" / f"{DAY}-ai-auto-summary.md"
    text = post.read_text(encoding="utf-8")
    titles = re.findall(r"^\d+\. \*\*\[(.+?)\]\((https://[^)\s]+)\)\*\*$", text, re.M)
    assert len(titles) == 6
    headlines = re.findall(r"^- \[(.+?)\]\((https://[^)\s]+)\)$", text, re.M)
    assert len(headlines) == 3
    # the same post as without links, once the links are taken out
    unlinked = re.sub(r"\[(.+?)\]\(https://[^)\s]+\)", r"\1", text)
    def undated(text: str) -> str:
        return re.sub(r"^date: .*$", "", text, count=1, flags=re.M)
    assert undated(unlinked) == undated((plain / "content" / "posts" / post.name).read_text(encoding="utf-8"))
    assert "](" not in unlinked
    assert check_text(text, strict=True) == [] and check_text(unlinked, strict=True) == []
    assert run_cli("check", "--strict", post).exit_code == 0
    monkeypatch.chdir(tmp_path)
    replayed = run_cli("replay", linked / ".digest" / "manifests" / f"{DAY}.json")
    assert replayed.exit_code == 0 and "identical" in replayed.stdout, describe(replayed)
