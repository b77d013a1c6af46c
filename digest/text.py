"""Cleaning what the model wrote into one plain paragraph, and reading its predictions.

The model writes only paragraph text and the predictions' date and reasoning; whatever structure
it adds (labels, headings, list markers, front-matter fences, emphasis) is removed here, and an
unfinished last sentence is cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from . import sentences
from .markdown import one_line
from .post import MONTHS

# The labels a model puts before its answer besides the section kinds' own (digest.sections gives those).
LABEL_WORDS = ("paragraph", "answer", "response", "summary", "topic")
Labels = Sequence[str]  # the section kinds' labels (digest.sections.labels(): every kind's)


def label_words(labels: Labels) -> str:
    """A regex alternation of LABEL_WORDS and the section `labels`, each with or without a plural s:
    the one list that cleaning (here) and the quality check `clean` (digest.quality) both use."""
    return _label_words(tuple(labels))


@lru_cache(maxsize=64)
def _label_words(labels: tuple[str, ...]) -> str:
    spelled = [r"\s+".join(map(re.escape, label.lower().split())) for label in labels]
    words = [*LABEL_WORDS, *(w[:-1] if w.endswith("s") else w for w in spelled)]
    return "|".join(dict.fromkeys(f"{w}s?" for w in words))


@lru_cache(maxsize=64)
def label_echo(labels: tuple[str, ...]) -> re.Pattern[str]:
    """A label (`label_words`) followed by a colon anywhere in a text: the echo that the quality check
    `clean` rejects (the cleaner removes one only where the text starts with it)."""
    return re.compile(r"\b(?:" + label_words(labels) + r")\s*:", re.I)


@lru_cache(maxsize=64)
def _label(words: str) -> re.Pattern[str]:
    return re.compile(
        r"^\s*(?:[-*+•>#]+\s*)?(?:\*\*|\*|__|_)?\s*"
        r"(?:" + words + r")"
        r"\s*(?:\*\*|\*|__|_)?\s*[:\-–—]\s*(?:\*\*|\*|__|_)?\s*",
        re.I,
    )
_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|here is|here's)\b[^.:!\n]*:|(?:sure|certainly|of course|absolutely)\s*[.!])\s*",
    re.I,
)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s.*$", re.M)
_FENCE = re.compile(r"^\s*(?:---+|\+\+\+|```.*|===+)\s*$", re.M)
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+", re.M)
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")
# HTML a model writes for emphasis or layout (Gemma 3 270M: "<i>many</i>"): the tags go, their text
# stays; a script or style element goes whole. Only HTML's own element names, so that "x<y and z>w"
# or "<3" is left as written (the post escapes it).
_HTML_ELEMENTS = ("a abbr b big blockquote br cite code del dfn div em font hr i ins kbd mark p pre q s "
                  "samp small span strike strong sub sup tt u var wbr").split()
_HTML_TAG = re.compile(r"</?(" + "|".join(_HTML_ELEMENTS) + r")(?:\s[^<>]*)?/?>", re.I)
_BLOCK_ELEMENTS = frozenset("blockquote br div hr p pre".split())  # these part words: a space, not nothing
_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?(?:</\1\s*>|$)", re.I | re.S)
_PREDICTION = re.compile(
    r"^\s*\(?\s*(" + "|".join(MONTHS) + r")\s+(\d{4})(?!\d)\s*\)?\s*[:\-–—,.]?\s*(.*)$", re.S | re.I
)


def complete_sentences(text: str) -> str:
    """`text` up to the end of its last finished sentence ("" when it has none: digest.sentences)."""
    return sentences.complete(text)


_BLANK_LINE = re.compile(r"\n\s*\n")


def shape(text: str, min_words: int, max_words: int) -> str:
    """Keep whole paragraphs until `min_words` is reached, then whole sentences up to `max_words`
    (the config's `[generation] min_words` and `max_words`: their one home)."""
    kept: list[str] = []
    for paragraph in _BLANK_LINE.split(text):
        if sum(len(p.split()) for p in kept) >= min_words:
            break
        kept.append(paragraph)
    text = one_line(" ".join(kept))
    chosen, words = [], 0
    for sentence in sentences.split(text):
        count = len(sentence.split())
        if chosen and words + count > max_words:
            break
        chosen.append(sentence)
        words += count
    return " ".join(chosen) if chosen else text


def _strip(raw: str, shaped: bool, min_words: int, max_words: int, labels: Labels) -> str:
    label = _label(label_words(labels))
    text = raw.replace("\r", "\n")
    text = _HTML_TAG.sub(lambda m: " " if m.group(1).lower() in _BLOCK_ELEMENTS else "", _SCRIPT.sub(" ", text))
    text = _FENCE.sub(" ", text)
    text = _HEADING.sub(" ", text)
    text = _LIST_MARKER.sub(" ", text)
    text = shape(text, min_words, max_words) if shaped else one_line(text)
    previous = None
    while previous != text:
        previous = text
        text = _PREAMBLE.sub("", text)
        text = label.sub("", text)
    text = _EMPHASIS.sub("", text)
    return balance_quotes(one_line(text))


def clean_paragraph(raw: str, min_words: int, max_words: int, labels: Labels) -> str:
    """One paragraph of plain sentences from the model's raw text ("" when nothing usable is left);
    a section label (`labels`) where the model starts with one is removed."""
    return complete_sentences(_strip(raw, True, min_words, max_words, labels))


def written(raw: str, labels: Labels) -> str:
    """All the prose the model wrote, its markup and labels removed but nothing cut: what the
    length and completeness checks look at, so that a cut paragraph or an unfinished last
    sentence shows even though the post never prints it."""
    return _strip(raw, False, 0, 0, labels)


def balance_quotes(text: str) -> str:
    """Drop a dangling double quote at either end (the model often opens a quote it never closes)."""
    if text.count('"') % 2 == 1:
        if text.startswith('"'):
            text = text[1:].lstrip()
        elif text.endswith('"'):
            text = text[:-1].rstrip()
    return text


@dataclass(frozen=True)
class ParsedPrediction:
    month: str
    year: int
    reasoning: str

    @property
    def when(self) -> str:
        return f"{self.month} {self.year}"


def parse_prediction(raw: str, min_words: int, max_words: int, labels: Labels) -> ParsedPrediction | None:
    """Read "Month YYYY: reasoning" (the predictions grammar's shape); None when it does not fit.
    The reasoning is cleaned as a paragraph is, within the same word limits."""
    match = _PREDICTION.match(one_line(raw))
    if not match:
        return None
    month = match.group(1).capitalize()
    # One sentence of reasoning, as the prompt asks: what the model adds after it is dropped.
    reasoning = first_sentence(clean_paragraph(match.group(3), min_words, max_words, labels))
    if not reasoning:
        return None
    return ParsedPrediction(month, int(match.group(2)), reasoning)


def clean_prediction(raw: str, min_words: int, max_words: int, labels: Labels) -> str:
    """The cleaner of a dated kind: "Month YYYY: reasoning" as the post shows it ("" when unusable);
    `split_prediction` gives its two parts back."""
    parsed = parse_prediction(raw, min_words, max_words, labels)
    return f"{parsed.when}: {parsed.reasoning}" if parsed else ""


def split_prediction(text: str) -> tuple[str, str]:
    """(when, reasoning) of what `clean_prediction` returned (no month name holds ': ')."""
    when, _, reasoning = text.partition(": ")
    return when, reasoning


def first_sentence(text: str) -> str:
    """The first finished sentence of `text` (digest.sentences), or `text` where it has none."""
    return sentences.first(text)
