"""Cleaning feed titles and picking the day's topics and trending headlines."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from .feeds import Entry
from .markdown import one_line

# "[R]", "[D]", "[P]", "[N]" and their longer forms ("[Research]", "[D][R]"), at either end.
_LEADING_TAGS = re.compile(r"^(?:\s*\[\s*[A-Za-z]{1,12}\s*\])+(?=[\s:\-–—]|$)\s*[:\-–—]?\s*")
_TRAILING_TAGS = re.compile(r"(?:^|(?<=\s))(?:\[\s*[A-Za-z]{1,12}\s*\]\s*)+$")
_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_STOPWORDS = frozenset(
    """a an and are as at be by can do does for from has have how i in into is it its of on or our
    the their this to using via was we what when which who why will with you your new""".split()
)
# Near-duplicate rule: titles that share at least this many content words, covering at least this
# share of the shorter title's content words, are the same story told twice.
MIN_SHARED_WORDS = 3
MIN_OVERLAP = 0.6
EXCERPT_WORDS = 60
# A title longer than this is cut at a word boundary and ends with "…".
MAX_TITLE_CHARS = 180


@dataclass(frozen=True)
class Story:
    """A cleaned feed item: the title as the post shows it, plus context for the prompt."""

    title: str
    link: str = ""
    id: str = ""
    excerpt: str = ""


@dataclass(frozen=True)
class Covered:
    """Stories already written up (on other days): their feed item ids and normalised titles."""

    ids: frozenset[str] = frozenset()
    titles: frozenset[str] = frozenset()

    def __contains__(self, story: Story) -> bool:
        return bool(story.id) and story.id in self.ids or normalise_title(story.title) in self.titles

    def __len__(self) -> int:
        """About the number of stories (each has an id, a title or both)."""
        return max(len(self.ids), len(self.titles))


def normalise_title(title: str) -> str:
    """A title as compared with history: tags dropped, lower case, only its words and numbers."""
    return " ".join(_WORD.findall(clean_title(title).lower()))


def clean_title(raw: str) -> str:
    """Drop `[R]`-style tags at either end, collapse whitespace, shorten a very long title.

    `raw` is plain text (the feed's entities were decoded once, in `feeds.parse_feed`)."""
    title = one_line(raw)
    previous = None
    while previous != title:
        previous = title
        title = _LEADING_TAGS.sub("", title)
        title = _TRAILING_TAGS.sub("", title).strip()
    return shorten(title, MAX_TITLE_CHARS)


def shorten(text: str, limit: int) -> str:
    """`text` when it has at most `limit` characters, else cut at the last word boundary that
    leaves room for "…" (or mid-word when its first word alone is too long) and "…" added."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:.-–—") + "…"


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_words(title: str) -> frozenset[str]:
    words = _WORD.findall(title.lower())
    return frozenset(_stem(w) for w in words if w not in _STOPWORDS)


def near_duplicate(a: str, b: str) -> bool:
    """True when two titles tell the same story (same words, or most content words shared)."""
    wa, wb = content_words(a), content_words(b)
    if not wa or not wb:
        return " ".join(a.lower().split()) == " ".join(b.lower().split())
    if wa == wb:
        return True
    shared = len(wa & wb)
    return shared >= MIN_SHARED_WORDS and shared / min(len(wa), len(wb)) >= MIN_OVERLAP


def excerpt(text: str, words: int = EXCERPT_WORDS) -> str:
    parts = one_line(text).split()
    if len(parts) <= words:
        return " ".join(parts)
    return " ".join(parts[:words]) + " …"


def _stories(entries: Iterable[Entry]) -> Iterable[Story]:
    for entry in entries:
        title = clean_title(entry.title)
        if title:
            yield Story(title=title, link=entry.link, id=entry.id, excerpt=excerpt(entry.summary))


def pick(entries: Iterable[Entry], count: int, *, avoid: Sequence[Story] = (),
         covered: Covered = Covered()) -> list[Story]:
    """The first `count` stories in feed order, skipping untitled items, near-duplicates of an
    earlier pick, near-duplicates of anything in `avoid`, and stories in `covered`."""
    chosen: list[Story] = []
    for story in _stories(entries):
        if len(chosen) >= count:
            break
        if story in covered or any(near_duplicate(story.title, other.title) for other in (*avoid, *chosen)):
            continue
        chosen.append(story)
    return chosen
