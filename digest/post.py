"""The post: a plain data model of one "[Daily Automated AI Summary]" post, and its layout's names:
the front matter's keys and types (`FRONT_KEYS`, which render.py writes and check.py checks) and the
section headings.

Every string held here is Markdown-ready inline text: the pipeline escapes feed and model text
(`digest.markdown.escape_inline`) before it builds a `Post`, and `digest.check` keeps the text as it
finds it in a file, so that parsing a post and rendering it again gives back the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

DEFAULT_NOTICE = (
    "This post has been automatically generated and does not reflect the views of the site owner, "
    "nor does it claim to be accurate."
)
DEFAULT_TOPICS_HEADING = "Possible consequences of current developments"
DEFAULT_TRENDING_HEADING = "Currently trending topics"
# `[blog] predictions_heading` is free text; a post's predictions heading is known by this ending.
PREDICTIONS_HEADING_END = "predicts future events"
DEFAULT_PREDICTIONS_HEADING = f"AI {PREDICTIONS_HEADING_END}"
# The months a prediction's date is written with (English, whatever the locale).
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


@dataclass
class Cover:
    image: str = ""
    alt: str = ""
    hidden: bool = True


@dataclass
class FrontMatter:
    title: str
    date: datetime
    author: str
    tags: list[str]
    draft: bool = False
    show_toc: bool = True
    toc_open: bool = False
    show_reading_time: bool = True
    show_word_count: bool = True
    cover: Cover = field(default_factory=Cover)


@dataclass(frozen=True)
class Key:
    """One front-matter key: its name in the file, the attribute that holds it, the type YAML gives
    its value and, for an error, what the value must be."""

    name: str
    attr: str
    type: type
    wanted: str


# The front matter, in the order the file writes it (the published series' keys).
FRONT_KEYS = (
    Key("title", "title", str, "a string"),
    Key("date", "date", datetime, "a timestamp like 2023-11-30T05:32:19Z"),
    Key("draft", "draft", bool, "true or false"),
    Key("author", "author", str, "a string"),
    Key("tags", "tags", list, "a list of strings"),
    Key("showToc", "show_toc", bool, "true or false"),
    Key("tocOpen", "toc_open", bool, "true or false"),
    Key("showReadingTime", "show_reading_time", bool, "true or false"),
    Key("showWordCount", "show_word_count", bool, "true or false"),
    Key("cover", "cover", dict, "a mapping with image, alt and hidden"),
)
COVER_KEYS = (
    Key("image", "image", str, "a string"),
    Key("alt", "alt", str, "a string"),
    Key("hidden", "hidden", bool, "true or false"),
)


@dataclass
class Topic:
    title: str
    # Each paragraph under its label ("Benefits": ...), in the post's order: the topic kinds of
    # digest.sections, as the config's `[generation] sections` lists them.
    paragraphs: dict[str, str] = field(default_factory=dict)


@dataclass
class Prediction:
    subject: str
    when: str
    reasoning: str


@dataclass
class Post:
    front: FrontMatter
    topics: list[Topic]
    trending: list[str]
    predictions: list[Prediction]
    notice: str = DEFAULT_NOTICE
    topics_heading: str = DEFAULT_TOPICS_HEADING
    trending_heading: str = DEFAULT_TRENDING_HEADING
    predictions_heading: str = DEFAULT_PREDICTIONS_HEADING


def format_date(value: datetime) -> str:
    """UTC ISO 8601 with a `Z`, to the second, as the published series writes it."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
