"""Hostile titles and model text, which land on a public page: nothing a feed or the model writes
becomes markup, a script, a shortcode or front matter, and the front matter always reads back.

The real proof that Hugo renders all of this as plain text is tests/test_hugo.py; these tests pin
each protection on its own, plus `digest run` on the hostile sample feeds (tests/data/hostile/)."""

from __future__ import annotations

import re
from pathlib import Path

import frontmatter
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import describe
from digest import engine as engine_pkg  # engine_of builds every engine through its create_engine
from digest.check import check_text, parse_post
from digest.engine.fake import FakeEngine, fake_text
from digest.feeds import read_feed_file
from digest.markdown import escape_inline, one_line, unescape_inline
from digest.render import yaml_str
from digest.select import pick
from test_cli import DAY, post_file, topic_titles, trending_items

HOSTILE_FEEDS = Path(__file__).parent / "data" / "hostile"
ESCAPE_PAIR = re.compile(r"\\.")

# What the model might write when a hostile title leaks into its prompt.
HOSTILE_MODEL_TEXT = (
    'Sure! Here is the paragraph:\n---\ntitle: "pwned"\n---\n'
    "<script>alert(1)</script> It adds {{< pwned >}} and {{% pwned %}} to the page. "
    "See [this link](https://evil.example/) or ![an image](https://evil.example/x.png) at https://evil.example/ "
    "and www.evil.example or write to someone@evil.example for more. "
    "\u202eReversed text\u202c and zero\u200bwidth characters hide things. "
    ": A definition line.\n1) A list item.\n# A heading\n> A quote with | pipes | and ~~strike~~ and `code` here."
)


def residue(escaped: str) -> str:
    """What is left of escaped text once every backslash escape pair is taken out: raw text."""
    return ESCAPE_PAIR.sub("", escaped)


# ---------------------------------------------------------------------------------------------
# one_line: control, bidi and zero-width characters


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("Right-to-left \u202eexe.txt\u202c override", "Right-to-left exe.txt override"),
        ("isolates \u2066a\u2069 \u2067b\u2069 \u2068c\u2069 marks \u200e\u200f\u061c", "isolates a b c marks"),
        ("zero\u200bwidth space, word\u2060joiner, bom\ufeff", "zerowidth space, wordjoiner, bom"),
        ("soft\u00adhyphen and tag\U000e0041\U000e0042 characters", "softhyphen and tag characters"),
        ("controls\x00\x07\x1b[31m and C1 \x85\x9b too", "controls[31m and C1 too"),
        ("line\nbreaks\r\nand\ttabs\u2028and separators", "line breaks and tabs and separators"),
    ],
    ids=["rlo", "isolates-marks", "zero-width", "soft-hyphen-tags", "controls", "breaks"],
)
def test_one_line_drops_invisible_and_control_characters(raw, clean):
    assert one_line(raw) == clean


@pytest.mark.parametrize(
    "text",
    ["\U0001F469\u200d\U0001F4BB developers", "Persian \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 text",
     "family \U0001F468\u200d\U0001F469\u200d\U0001F467"],
    ids=["emoji-zwj", "persian-zwnj", "emoji-family"],
)
def test_one_line_keeps_joiners_between_visible_characters(text):
    assert one_line(text) == text


@pytest.mark.parametrize("text", ["\u200dstart", "end\u200c", "a \u200d b", "a\u200d\u200d\u200cb", "\u200c"])
def test_one_line_drops_joiners_that_join_nothing(text):
    out = one_line(text)
    assert out.count("\u200c") + out.count("\u200d") <= 1
    assert not re.search(r"(^|\s)[\u200c\u200d]|[\u200c\u200d](\s|$)", out)


# ---------------------------------------------------------------------------------------------
# escape_inline: each kind of markup stays text


CASES = {
    "front-matter-fence": "---",
    "yaml-breakers": 'title: "x" # y',
    "markdown-link": "[a link](https://evil.example/)",
    "markdown-image": "![an image](https://evil.example/x.png)",
    "raw-html": '<img src=x onerror="alert(1)">',
    "script": "<script>alert(1)</script>",
    "html-comment": "<!-- hidden -->",
    "shortcode-angle": "{{< youtube dQw4w9WgXcQ >}}",
    "shortcode-percent": "{{% notice %}}",
    "attribute-list": "Heading {.class #id}",
    "bare-url": "see https://evil.example/path",
    "www-link": "see www.evil.example",
    "email": "write to someone@evil.example",
    "ordered-list-dot": "1. first",
    "ordered-list-paren": "2030) year",
    "definition": ": a definition",
    "bullet": "- a bullet",
    "setext": "=== underline",
    "heading": "# heading",
    "quote": "> quote",
    "table": "| a | b |",
    "strike": "~~strike~~",
    "code": "`code`",
    "emphasis": "*em* _em_ **strong**",
    "entity": "&copy; &#169; &#xA9;",
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_escape_inline_keeps_markup_as_text(text):
    escaped = escape_inline(text)
    assert unescape_inline(escaped) == text
    raw = residue(escaped)
    for char in "<>[]!*_`~|#{}@":
        assert char not in raw, (char, escaped)
    assert not re.match(r"[-+=:>#]|\d+[.)](\s|$)", escaped), escaped
    assert "://" not in raw and not re.search(r"www\.", raw, re.I)
    assert not re.search(r"&(?!amp;)(#\d+|#[xX][0-9a-fA-F]+|[A-Za-z]+);", escaped)


def test_escape_inline_leaves_ordinary_text_alone():
    for text in ("AT&T's 3.5 model: 12.5% faster", "2030. A year", "Version 1.2 of (it)", "a-b + c = d"):
        escaped = escape_inline(text)
        assert unescape_inline(escaped) == text
    assert escape_inline("AT&T's 3.5 model: 12.5% faster") == "AT&T's 3.5 model: 12.5% faster"
    assert escape_inline("Version 1.2 of (it)") == "Version 1.2 of (it)"


# ---------------------------------------------------------------------------------------------
# yaml_str: every string reads back as itself


@pytest.mark.parametrize(
    "value",
    ['---\ntitle: "pwned"\n---', "key: value # comment", "'single' \"double\" \\back", "- list", "[a, b]",
     "{a: b}", "&anchor *alias !tag", "@at `tick` %pct", "yes", "null", "~", "1e3", "0x1F", "2026-01-02",
     "DEL\x7f C1\x80\x85\x9f", "LS\u2028PS\u2029BOM\ufeff", "nonchars \ufffe\uffff", "lone \ud800 surrogate",
     "tab\tnewline\ncr\r", "\u202eright-to-left", ""],
)
def test_yaml_str_reads_back_as_the_same_string(value):
    text = yaml_str(value)
    assert "\n" not in text
    assert yaml.safe_load(f"key: {text}\n") == {"key": value}


@settings(deadline=None, max_examples=200)
@given(st.text(alphabet=st.characters(codec=None, categories=None, exclude_categories=())))
def test_yaml_str_property(value):
    assert yaml.safe_load(f"key: {yaml_str(value)}\n") == {"key": value}


# ---------------------------------------------------------------------------------------------
# `digest run` on the hostile sample feeds, with hostile model text and hostile settings


def hostile_respond(request):
    text = fake_text(request)
    if request.grammar:  # "Month YYYY: reasoning"
        return text.split(":")[0] + ": " + HOSTILE_MODEL_TEXT
    return HOSTILE_MODEL_TEXT + " " + text


@pytest.fixture
def hostile_engine(monkeypatch):
    monkeypatch.setattr(engine_pkg, "create_engine",
                        lambda name, model_path, **kw: FakeEngine(respond=hostile_respond, model_name=Path(model_path).stem))


HOSTILE_TITLE = '---\ntitle: "pwned" # not a comment\ndraft: true\n---'
HOSTILE_AUTHOR = "Mallory: <script>alert(1)</script> {{< pwned >}}"
HOSTILE_MODEL = 'ev"il: #{{< pwned >}}, [x] [bold]'  # a file name: no slash


def run_hostile(run_cli, out: Path, *extra):
    return run_cli("run", "--feeds-from", HOSTILE_FEEDS, "--out", out, "--date", DAY, "--topics", 9,
                   "--trending", 4, "--title", HOSTILE_TITLE, "--author", HOSTILE_AUTHOR,
                   "--model", out / f"{HOSTILE_MODEL}.gguf", *extra)


def test_hostile_run_front_matter_reads_back_as_intended(run_cli, tmp_path, hostile_engine):
    result = run_hostile(run_cli, tmp_path)
    assert result.exit_code == 0, describe(result)
    text = post_file(tmp_path).read_text(encoding="utf-8")
    meta = frontmatter.loads(text).metadata
    assert meta["title"] == HOSTILE_TITLE
    assert meta["author"] == HOSTILE_AUTHOR
    assert meta["tags"][-1] == HOSTILE_MODEL
    assert meta["draft"] is False
    # The front matter is exactly the program's 15 lines: nothing else opened or closed it.
    assert [n for n, line in enumerate(text.split("\n")) if line == "---"] == [0, 14]


def test_hostile_run_passes_strict_check_and_titles_read_back(run_cli, tmp_path, hostile_engine):
    result = run_hostile(run_cli, tmp_path)
    assert result.exit_code == 0, describe(result)
    text = post_file(tmp_path).read_text(encoding="utf-8")
    assert check_text(text, strict=True) == []
    expected_topics = [s.title for s in pick(read_feed_file(HOSTILE_FEEDS, "topics").entries, 9)]
    assert len(expected_topics) == 9
    assert topic_titles(text) == expected_topics
    topics = pick(read_feed_file(HOSTILE_FEEDS, "topics").entries, 9)
    expected_trending = [s.title for s in pick(read_feed_file(HOSTILE_FEEDS, "trending").entries, 4, avoid=topics)]
    assert trending_items(text) == expected_trending
    # The warnings name what was skipped in the hostile feeds.
    assert "without a title" in result.stderr and "an earlier entry's id" in result.stderr
    # Status lines name the model as it is: its brackets are not rich markup.
    assert f"with {HOSTILE_MODEL} (fake engine)" in result.stderr


def test_hostile_run_body_has_no_raw_markup(run_cli, tmp_path, hostile_engine):
    result = run_hostile(run_cli, tmp_path)
    assert result.exit_code == 0, describe(result)
    text = post_file(tmp_path).read_text(encoding="utf-8")
    body = frontmatter.loads(text).content
    raw = residue(body)
    assert "<" not in raw and ">" not in raw.replace("> *Notice:*", "")
    assert "{{" not in body and "{" not in raw
    assert "[" not in raw and "`" not in raw and "@" not in raw and "://" not in raw
    assert "\u202e" not in text and "\u200b" not in text
    post, problems = parse_post(text)
    assert problems == []
    paragraphs = [p for t in post.topics for p in t.paragraphs.values()]
    assert paragraphs and all("pwned" in unescape_inline(p) for p in paragraphs)  # the text survives, as text
    for paragraph in paragraphs + [p.reasoning for p in post.predictions]:
        assert not re.match(r"[-+=:>#]|\d+[.)](\s|$)", paragraph), paragraph
