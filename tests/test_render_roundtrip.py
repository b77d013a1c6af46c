"""render(parse(text)) == text: the checker's reader and digest's writer agree on the layout."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from digest.check import check_text, parse_post
from digest.markdown import escape_inline
from digest.post import Cover, FrontMatter, Post, Prediction, Topic
from digest.render import render

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"


def seed_path(prefix: str) -> Path:
    if not SEEDS.is_dir():
        pytest.skip(f"no seeds folder at {SEEDS}")
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return path


def test_seed_000_renders_back_byte_identical():
    data = seed_path("000").read_bytes()
    post, problems = parse_post(data.decode("utf-8"))
    assert problems == []
    assert post is not None
    assert render(post).encode("utf-8") == data


def built_post() -> Post:
    """A post as the pipeline builds it: every text escaped, some with Markdown-looking text."""
    paragraph = (
        "Paragraph {n} about {what}: it uses *stars*, _underscores_, [links](x) & {{{{sc}}}}."
    )
    topics = [
        Topic(
            title=escape_inline(f"Topic {n}: a [R] *bold* claim #{n}"),
            paragraphs={"Benefits": escape_inline(paragraph.format(n=n, what="benefits")),
                        "Ramifications": escape_inline(paragraph.format(n=n, what="ramifications"))},
        )
        for n in range(1, 6)
    ]
    # Model text that looks like a label or a bullet must stay paragraph text.
    topics[1].paragraphs["Benefits"] = escape_inline("Benefits: the model repeated the label.")
    topics[2].paragraphs["Ramifications"] = escape_inline("- a dash and \u2022 a bullet")
    topics[3].paragraphs["Benefits"] = escape_inline("2030. A year that looks like a list number.")
    return Post(
        front=FrontMatter(
            title="[Daily Automated AI Summary]",
            date=datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
            author="Blog Agent",
            tags=["daily ai summary", "automated content", "qwen2.5-1.5b-instruct"],
            cover=Cover(image="https://example.org/cover.png", alt='singing "birds"', hidden=True),
        ),
        topics=topics,
        trending=[
            escape_inline(t) for t in ("First <b>headline</b>", "Second | headline", "+ third")
        ],
        predictions=[
            Prediction(
                "Artificial general intelligence",
                "March 2035",
                escape_inline("Because (reasons): *yes*."),
            ),
            Prediction("Technological singularity", "July 2050", escape_inline("It follows AGI.")),
        ],
        predictions_heading="Qwen predicts future events",
    )


def test_built_post_passes_strict_check():
    assert check_text(render(built_post()), strict=True) == []


def test_built_post_parses_back_to_equal_fields():
    post = built_post()
    parsed, problems = parse_post(render(post))
    assert problems == []
    assert parsed == post
    assert parsed.front.date.tzinfo is not None


def test_ten_or_more_topics_keep_their_labels_inside_the_item():
    # "10. " is four characters wide: the labels move to column 4, or Markdown would end the list.
    post = built_post()
    post.topics = [Topic(escape_inline(f"Topic {n}"), {"Benefits": "Some benefits.", "Ramifications": "Some ramifications."}) for n in range(1, 13)]
    text = render(post)
    assert "9. **Topic 9**\n\n   - *Benefits:*\n\n     Some benefits.\n" in text
    assert "10. **Topic 10**\n\n    - *Benefits:*\n\n      Some benefits.\n" in text
    assert check_text(text, strict=True) == []
    parsed, problems = parse_post(text)
    assert problems == [] and parsed == post
