"""Scoring the writing of one section, offline, with plain rules a reader would agree with.

Each check looks at the text that lands in the post (after `text.clean_paragraph`) and says pass or
fail with a short reason. `digest eval` runs them over many sections; the pipeline uses `score` to
keep the best of several tries of a section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Iterable, Sequence

from .select import content_words
from .text import MAX_WORDS, MIN_WORDS, clean_paragraph, parse_prediction

PARAGRAPH_CHECKS = ("length", "on_topic", "no_loops", "complete", "clean", "distinct")
PREDICTION_CHECKS = ("date", "reasoning", "no_loops", "clean")

# A paragraph is on topic when it uses at least this share of the title's content words (or close
# forms: the same first CLOSE_PREFIX letters).
ON_TOPIC_MIN = 0.25
CLOSE_PREFIX = 6
# A loop: a sentence said twice, or this share of the word 3-grams repeating earlier ones.
LOOP_MAX_REPEATS = 0.12
# Benefits and Ramifications are near-copies when this share of their word 3-grams is common.
DISTINCT_MAX_OVERLAP = 0.3
# An instruction echo: this many words in a row taken from a prompt template.
ECHO_WORDS = 5
REASONING_MIN_WORDS = 6

_WORDS = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
_SENTENCES = re.compile(r"[^.!?]+[.!?]+")
_ENDS_WELL = re.compile(r"[.!?][\"'”’)\]]*$")
# Markdown structure: a heading, list marker or quote at a line's start, emphasis, code, a link, a table.
_MARKDOWN = re.compile(r"(?:^|\n)\s*(?:#{1,6}\s|[-*+]\s|\d+\.\s|>)|\*\*|__|`|\[[^\]]*\]\(|\|\s*-{3}")
_URL = re.compile(r"\bhttps?://\S+|\bwww\.\S+", re.I)
_ROLE = re.compile(r"\b(?:assistant|user|system)\s*:|<\|?im_(?:start|end)\|?>|<\|[a-z_]+\|>", re.I)
_AS_AN_AI = re.compile(r"\bas an ai\b|\bas a (?:large )?language model\b|\bi(?:'m| am) (?:sorry|unable)\b|\bi cannot\b", re.I)
_LABEL = re.compile(r"\b(?:benefits?|ramifications?|prediction|paragraph)\s*:", re.I)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    why: str = ""


@dataclass
class Score:
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def value(self) -> int:
        return sum(c.passed for c in self.checks)


def words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def trigrams(text: str) -> list[tuple[str, str, str]]:
    w = words(text)
    return list(zip(w, w[1:], w[2:]))


def _close(word: str, others: Iterable[str]) -> bool:
    return any(word == o or (len(word) >= CLOSE_PREFIX and o[:CLOSE_PREFIX] == word[:CLOSE_PREFIX]) for o in others)


def check_length(text: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> Check:
    n = len(text.split())
    return Check("length", min_words <= n <= max_words, "" if min_words <= n <= max_words else f"{n} words")


def check_on_topic(text: str, title: str) -> Check:
    wanted = content_words(title)
    if not wanted:
        return Check("on_topic", True)
    have = content_words(text)
    share = sum(_close(w, have) for w in wanted) / len(wanted)
    ok = share >= ON_TOPIC_MIN
    return Check("on_topic", ok, "" if ok else f"uses {share:.0%} of the title's words")


def check_no_loops(text: str) -> Check:
    sentences = [" ".join(words(s)) for s in _SENTENCES.findall(text)]
    sentences = [s for s in sentences if s]
    if len(set(sentences)) < len(sentences):
        return Check("no_loops", False, "a sentence is repeated")
    grams = trigrams(text)
    if grams:
        repeats = len(grams) - len(set(grams))
        if repeats / len(grams) > LOOP_MAX_REPEATS:
            return Check("no_loops", False, f"{repeats} of {len(grams)} word 3-grams repeat")
    return Check("no_loops", True)


def check_complete(text: str) -> Check:
    text = text.strip()
    if not text:
        return Check("complete", False, "empty")
    if not _ENDS_WELL.search(text):
        return Check("complete", False, "does not end with a finished sentence")
    if re.search(r"(^|\n)\s*(#|[-*+]\s|\d+[.)]\s)", text):
        return Check("complete", False, "a dangling list marker or heading")
    return Check("complete", True)


def instruction_phrases(templates: Iterable[str]) -> set[tuple[str, ...]]:
    """Every ECHO_WORDS-word run of the templates' own words (placeholders left out)."""
    out: set[tuple[str, ...]] = set()
    for template in templates:
        for part in re.split(r"\$\{?\w+\}?", template):
            w = words(part)
            out.update(tuple(w[i:i + ECHO_WORDS]) for i in range(len(w) - ECHO_WORDS + 1))
    return out


def check_clean(text: str, instructions: set[tuple[str, ...]] = frozenset(), source: str = "") -> Check:
    """No role words, "As an AI", label echoes, Markdown structure, invented URLs or instruction echoes."""
    for pattern, why in ((_ROLE, "a chat role word"), (_AS_AN_AI, "an assistant disclaimer"),
                         (_LABEL, "a section label"), (_MARKDOWN, "Markdown structure")):
        match = pattern.search(text)
        if match:
            return Check("clean", False, f"{why}: {match.group(0).strip()!r}")
    for url in _URL.findall(text):
        if url.rstrip(".,);") not in source:
            return Check("clean", False, f"a URL from nowhere: {url!r}")
    w = words(text)
    for i in range(len(w) - ECHO_WORDS + 1):
        if tuple(w[i:i + ECHO_WORDS]) in instructions:
            return Check("clean", False, f"echoes the prompt: {' '.join(w[i:i + ECHO_WORDS])!r}")
    return Check("clean", True)


def check_distinct(text: str, other: str) -> Check:
    a, b = set(trigrams(text)), set(trigrams(other))
    if not a or not b:
        return Check("distinct", True)
    overlap = len(a & b) / min(len(a), len(b))
    ok = overlap <= DISTINCT_MAX_OVERLAP
    return Check("distinct", ok, "" if ok else f"{overlap:.0%} of its 3-grams are in the other paragraph")


def score_paragraph(text: str, title: str, *, instructions: set[tuple[str, ...]] = frozenset(), source: str = "",
                    other: str | None = None, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> Score:
    checks = [check_length(text, min_words, max_words), check_on_topic(text, title), check_no_loops(text),
              check_complete(text), check_clean(text, instructions, source)]
    if other is not None:
        checks.append(check_distinct(text, other))
    return Score(checks)


def score_prediction(raw: str, day: date, *, instructions: set[tuple[str, ...]] = frozenset()) -> Score:
    """A real future month and year after `day`, then a finished reasoning sentence."""
    parsed = parse_prediction(raw)
    if parsed is None:
        return Score([Check("date", False, "no 'Month YYYY:' at the start"),
                      Check("reasoning", False, "no reasoning"), Check("no_loops", True), Check("clean", True)])
    future = parsed.year > day.year
    reasoning = parsed.reasoning
    n = len(reasoning.split())
    reasoned = n >= REASONING_MIN_WORDS and check_complete(reasoning).passed
    return Score([
        Check("date", future, "" if future else f"{parsed.when} is not after {day.isoformat()}"),
        Check("reasoning", reasoned, "" if reasoned else f"reasoning of {n} words"),
        check_no_loops(reasoning),
        check_clean(reasoning, instructions),
    ])


def best(scores: Sequence[Score]) -> int:
    """Index of the best of several tries (the first among equals, so the choice is deterministic)."""
    return max(range(len(scores)), key=lambda i: (scores[i].value(), -i))


@dataclass(frozen=True)
class Section:
    """What the checks need to know of one request: its kind, its topic, what the model was told."""

    key: str
    kind: str  # "benefits", "ramifications" or "prediction"
    title: str  # the topic's title, or the prediction's subject
    source: str = ""  # the feed text the model saw (URLs found there are not invented)
    pair: str | None = None  # the topic's other paragraph, which this one must not copy


class Judge:
    """Scores tries of the sections of one or more posts."""

    def __init__(self, sections: Iterable[Section], day: date, templates: Iterable[str], *,
                 min_words: int = MIN_WORDS, max_words: int = MAX_WORDS):
        self.sections = {s.key: s for s in sections}
        self.day = day
        self.instructions = instruction_phrases(templates)
        self.min_words, self.max_words = min_words, max_words

    def text(self, key: str, raw: str) -> str:
        """What of `raw` lands in the post."""
        if self.sections[key].kind == "prediction":
            parsed = parse_prediction(raw)
            return f"{parsed.when}: {parsed.reasoning}" if parsed else ""
        return clean_paragraph(raw, self.min_words, self.max_words)

    def usable(self, key: str, raw: str) -> bool:
        return bool(self.text(key, raw))

    def score(self, key: str, raw: str, other: str | None = None) -> Score:
        """`other`: the text chosen for the section's pair, if any."""
        section = self.sections[key]
        if section.kind == "prediction":
            return score_prediction(raw, self.day, instructions=self.instructions)
        return score_paragraph(self.text(key, raw), section.title, instructions=self.instructions,
                               source=section.source, other=other, min_words=self.min_words,
                               max_words=self.max_words)
