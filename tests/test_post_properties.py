"""Property tests: for arbitrary titles, paragraphs and front-matter values (hostile characters
included), the post that digest renders passes `digest check --strict`, its front matter parses
back to the same values, and its titles and texts read back unchanged."""

from __future__ import annotations

from datetime import datetime, timezone

import frontmatter
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from digest.check import check_text, parse_post
from digest.config import Config
from digest.engine.base import Result
from digest.markdown import escape_inline, one_line, unescape_inline
from digest.pipeline import assemble
from digest.sections import PREDICTION_SUBJECTS
from digest.post import Cover, FrontMatter, Post, Prediction, Topic
from digest.sections import DEFAULT_KINDS, PREDICTION, labels, topic_kinds
from digest.render import render
from digest.select import Story, clean_title
from digest.text import clean_paragraph, parse_prediction

# Markdown, Hugo and YAML specials, quotes, colons, line breaks, bidi and zero-width characters.
HOSTILE = list("*_[]<>!|~#{}%-+=.:;()&@/\\`'\"\n\r\t ") + ["---", "{{<", ">}}", "{{%", "%}}", "https://", "www.",
                                                              "&amp;", "&#169;", "1. ", "2) ", "\u202e", "\u2066",
                                                              "\u200b", "\u200d", "\ufeff", "\x00", "\x85", "é", "’"]
hostile_text = st.lists(st.sampled_from(HOSTILE) | st.text(min_size=1, max_size=4), max_size=25).map("".join)
any_text = hostile_text | st.text(max_size=60)
line_text = any_text.filter(lambda t: one_line(t) != "")
SETTINGS = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def front(title: str, author: str, tags: list[str], alt: str) -> FrontMatter:
    return FrontMatter(title=title, date=WHEN, author=author, tags=tags, cover=Cover(image=alt[:10], alt=alt))


@SETTINGS
@given(titles=st.lists(line_text, min_size=1, max_size=4), paragraphs=st.lists(line_text, min_size=2, max_size=2),
       trending=st.lists(line_text, min_size=1, max_size=3), reasoning=line_text,
       fm_title=any_text, author=any_text, tags=st.lists(any_text, max_size=3), alt=any_text)
def test_rendered_post_is_valid_and_reads_back(titles, paragraphs, trending, reasoning, fm_title, author, tags, alt):
    post = Post(
        front=front(fm_title, author, tags, alt),
        topics=[Topic(escape_inline(t), {"Benefits": escape_inline(paragraphs[0]), "Ramifications": escape_inline(paragraphs[1])})
                for t in titles],
        trending=[escape_inline(t) for t in trending],
        predictions=[Prediction(subject, "March 2040", escape_inline(reasoning)) for subject in PREDICTION_SUBJECTS],
    )
    text = render(post)

    assert check_text(text, strict=True) == []

    meta = frontmatter.loads(text).metadata
    assert meta["title"] == fm_title and meta["author"] == author and meta["tags"] == tags
    assert meta["cover"] == {"image": alt[:10], "alt": alt, "hidden": True}

    parsed, problems = parse_post(text)
    assert problems == []
    assert [unescape_inline(t.title) for t in parsed.topics] == [one_line(t) for t in titles]
    assert [unescape_inline(t.paragraphs["Benefits"]) for t in parsed.topics] == [one_line(paragraphs[0])] * len(titles)
    assert [unescape_inline(t) for t in parsed.trending] == [one_line(t) for t in trending]
    assert [unescape_inline(p.reasoning) for p in parsed.predictions] == [one_line(reasoning)] * 2
    assert parsed == post


@SETTINGS
@given(raw_titles=st.lists(any_text, min_size=1, max_size=4, unique=True), model_text=any_text)
def test_pipeline_assembled_post_is_valid(raw_titles, model_text):
    # Through the pipeline's own assembly: feed titles cleaned, model text cleaned and escaped.
    titles = list(dict.fromkeys(clean_title(t) for t in raw_titles if clean_title(t)))
    assume(titles)
    stories = [Story(title=t) for t in titles]
    text = "A plain sentence opens. " + model_text + " It ends with a finished sentence."
    g = Config().generation
    # else the pipeline retries
    assume(clean_paragraph(text, g.min_words, g.max_words, labels()) and parse_prediction(f"May 2041: {text}", g.min_words, g.max_words, labels()))
    results = {}
    for story in stories:
        for kind in topic_kinds(DEFAULT_KINDS):
            key = kind.key(story.title)
            results[key] = Result(key, text, 0, 0, "stop")
    for subject in PREDICTION_SUBJECTS:
        key = PREDICTION.key(subject)
        results[key] = Result(key, f"May 2041: {text}", 0, 0, "stop")
    post = assemble(Config(), WHEN, "model", stories, stories[:1], results)
    rendered = render(post)
    assert check_text(rendered, strict=True) == []
    parsed, problems = parse_post(rendered)
    assert problems == []
    assert [unescape_inline(t.title) for t in parsed.topics] == titles
