"""Scoring the writing of one section, offline, with plain rules a reader would agree with.

Which checks apply to a section, and what on_the_point asks of it, is part of its kind's definition
(`digest.sections`). Each check looks at the text that lands in the post (after its kind's cleaner), except length and
completeness, which look at everything the model wrote (`text.written`), so that a paragraph the
cleaning had to cut fails. Each says pass or fail with a short reason. `digest eval` runs them over
many sections; the pipeline uses `Judge.score` and `best` to keep the best of several tries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Iterable, Sequence

from . import sections
from . import sentences
from .sections import DATED, PARAGRAPH, PARAGRAPH_CHECKS, PREDICTION_CHECKS, SectionKind
from .facts import RULE, other_year, unfaithful
from .prevention import GAIN, RISK, WHO, stem_pattern
from .select import content_words
from .text import Labels, label_echo, parse_prediction, written

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
REASONING_MIN_WORDS = 8
# ... of which at least this many content words are not the subject's own (a reason, not a restatement).
REASONING_MIN_NEW_WORDS = 3
# Title echo: the first sentence holds a run of the title's words this long (share of the title, and
# at least TITLE_RUN_MIN words); the whole title verbatim may appear at most TITLE_MAX_REPEATS times.
TITLE_RUN_SHARE = 0.5
TITLE_RUN_MIN = 4
TITLE_MAX_REPEATS = 1

_WORDS = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
# Markdown structure: a heading, list marker or quote at a line's start, emphasis, code, a link, a table.
_MARKDOWN = re.compile(r"(?:^|\n)\s*(?:#{1,6}\s|[-*+]\s|\d+\.\s|>)|\*\*|__|`|\[[^\]]*\]\(|\|\s*-{3}")
_URL = re.compile(r"\bhttps?://\S+|\bwww\.\S+", re.I)
_ROLE = re.compile(r"\b(?:assistant|user|system)\s*:|<\|?im_(?:start|end)\|?>|<\|[a-z_]+\|>", re.I)
_AS_AN_AI = re.compile(r"\bas an ai\b|\bas a (?:large )?language model\b|\bi(?:'m| am) (?:sorry|unable)\b|\bi cannot\b", re.I)


def _labels(labels: Labels | None) -> tuple[str, ...]:
    """The section labels a check looks for: `labels`, or every kind's (None)."""
    return sections.labels() if labels is None else tuple(labels)


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


def check_length(text: str, min_words: int, max_words: int, wrote: str | None = None) -> Check:
    """`text`: what the post shows; `wrote`: all the model wrote (the upper limit is checked on it,
    so a paragraph the cleaning cut to fit fails). The limits: `[generation] min_words`, `max_words`."""
    n = len(text.split())
    if n < min_words:
        return Check("length", False, f"{n} words")
    total = len((wrote if wrote is not None else text).split())
    if total > max_words:
        return Check("length", False, f"{total} words written, cut to {n}")
    return Check("length", True)


def check_on_topic(text: str, title: str) -> Check:
    wanted = content_words(title)
    if not wanted:
        return Check("on_topic", True)
    have = content_words(text)
    share = sum(_close(w, have) for w in wanted) / len(wanted)
    ok = share >= ON_TOPIC_MIN
    return Check("on_topic", ok, "" if ok else f"uses {share:.0%} of the title's words")


def check_no_loops(text: str) -> Check:
    said = [" ".join(words(s)) for s in sentences.split(text)]
    said = [s for s in said if s]
    if len(set(said)) < len(said):
        return Check("no_loops", False, "a sentence is repeated")
    grams = trigrams(text)
    if grams:
        repeats = len(grams) - len(set(grams))
        if repeats / len(grams) > LOOP_MAX_REPEATS:
            return Check("no_loops", False, f"{repeats} of {len(grams)} word 3-grams repeat")
    return Check("no_loops", True)


def check_complete(text: str) -> Check:
    """`text`: all the model wrote; a last sentence left unfinished fails even though the post drops it."""
    text = text.strip()
    if not text:
        return Check("complete", False, "empty")
    if not sentences.ends(text):
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


def check_clean(text: str, instructions: set[tuple[str, ...]] = frozenset(), source: str = "",
                labels: Labels | None = None) -> Check:
    """No role words, "As an AI", label echoes (`labels`: section labels, default every kind's, and
    the usual words), Markdown structure, invented URLs or instruction echoes."""
    for pattern, why in ((_ROLE, "a chat role word"), (_AS_AN_AI, "an assistant disclaimer"),
                         (label_echo(_labels(labels)), "a section label"), (_MARKDOWN, "Markdown structure")):
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


# -- faithful: no invented numbers or names -----------------------------------------------------------

def check_faithful(text: str, source: str, rule: int = RULE) -> Check:
    """Every number of the paragraph is in the source (its title and entry text), and so is every
    capitalised name or acronym, or it is a common term of the field: the rule of digest.facts, which
    the fact guard also applies while the model writes (`rule`: its version)."""
    why = unfaithful(text, source, rule=rule)
    return Check("faithful", why is None, why or "")


# -- no title echo ------------------------------------------------------------------------------------

def _longest_run(a: Sequence[str], b: Sequence[str]) -> int:
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


def check_no_title_echo(text: str, title: str) -> Check:
    """The paragraph does not open with the title (its first sentence holds no long run of the title's
    words) and repeats the whole title at most once."""
    t = words(title)
    if len(t) < TITLE_RUN_MIN:
        return Check("no_title_echo", True)
    finished = sentences.split(text)
    first = words(finished[0] if finished else text)
    run = _longest_run(first, t)
    if run >= max(TITLE_RUN_MIN, TITLE_RUN_SHARE * len(t)):
        return Check("no_title_echo", False, f"opens with {run} of the title's {len(t)} words")
    w, n = words(text), len(t)
    repeats = sum(w[i:i + n] == t for i in range(len(w) - n + 1))
    if repeats > TITLE_MAX_REPEATS:
        return Check("no_title_echo", False, f"repeats the title {repeats} times")
    return Check("no_title_echo", True)


# -- on the point: Benefits name a gain and who gets it; Ramifications name a risk, cost or loser ----

# A cost or time that goes down is a gain, not a risk ("lower costs", "cuts the time").
_GAIN_PHRASE = re.compile(r"\b(?:lower|lowers|lowering|cut|cuts|cutting|reduc\w*|sav\w*|fewer|less|smaller|"
                          r"cheaper|avoid\w*|prevent\w*)\s+(?:\w+\s+){0,2}?(?:costs?|bills?|waste|errors?|"
                          r"mistakes?|risks?|failures?|time|energy|downtime|loss(?:es)?|harm)\b", re.I)


def lexicon_counts(text: str) -> tuple[int, int, int]:
    """(who, gain, risk) hits in `text`."""
    gains_phrases = len(_GAIN_PHRASE.findall(text))
    rest = _GAIN_PHRASE.sub(" ", text)
    return len(WHO.findall(text)), len(GAIN.findall(rest)) + gains_phrases, len(RISK.findall(rest))


def check_on_the_point(text: str, point: str | None) -> Check:
    """`point` is a section kind's (digest.sections). GAIN (Benefits): someone who gains, and gains
    that outweigh risks in its words (the lexicons WHO, GAIN, RISK); RISK (Ramifications): a risk, cost or loss, outweighing its gains. (Two words of each were asked at first: on the sample
    post that failed 10 of 12 paragraphs of a 135M model, most of which do name a weak gain or risk,
    and every retry then cost time for nothing.)"""
    who, gain, risk = lexicon_counts(text)
    if point == sections.GAIN:
        if not who:
            return Check("on_the_point", False, "names no one who gains")
        if gain < 1 or gain <= risk:
            return Check("on_the_point", False, f"{gain} words of gain against {risk} of risk")
    elif point == sections.RISK:
        if risk < 1 or risk <= gain:
            return Check("on_the_point", False, f"{risk} words of risk or cost against {gain} of gain")
    return Check("on_the_point", True)


# -- predictions' reasoning ------------------------------------------------------------------------

_VERB = re.compile(stem_pattern("""
    is\\b are\\b was\\b were\\b be\\b been\\b being\\b will\\b would\\b can\\b could\\b may\\b might\\b must\\b
    should\\b shall\\b has\\b have\\b had\\b does\\b do\\b did\\b need keep make take grow improv continu
    become get reach allow let show seem remain require depend come go give mean lead help drive push
    \\w+ed\\b \\w+s\\b
    """), re.I)
_NOT_VERBS_S = frozenset("""its is this has was as us his its thus plus yes less news always perhaps
    series species means analysis basis process progress access""".split())


def has_verb(sentence: str) -> bool:
    for match in _VERB.finditer(sentence):
        word = match.group(0).lower()
        if word.endswith("s") and not word.endswith("ss") and len(word) > 3 and word not in _NOT_VERBS_S:
            # A plural noun looks the same as a verb: count it only after a noun-like word or a pronoun.
            before = sentence[:match.start()].split()
            if before and before[-1].lower() not in ("the", "a", "an", "of", "and", "or", "for", "in", "on",
                                                      "with", "to", "by", "from", "more", "many", "most", "all"):
                return True
            continue
        return True
    return False


def check_reasoning(reasoning: str, subject: str) -> Check:
    """One finished sentence with a verb, REASONING_MIN_WORDS words or more, that says more than the
    subject's own words."""
    n = len(reasoning.split())
    if n < REASONING_MIN_WORDS:
        return Check("reasoning", False, f"reasoning of {n} words")
    if not check_complete(reasoning).passed or len(sentences.split(reasoning)) != 1:
        return Check("reasoning", False, "not one finished sentence")
    if not has_verb(reasoning):
        return Check("reasoning", False, "no verb: not a sentence")
    new = content_words(reasoning) - content_words(subject)
    new = {w for w in new if not any(_close(w, [s]) for s in content_words(subject))}
    if len(new) < REASONING_MIN_NEW_WORDS:
        return Check("reasoning", False, "restates the subject")
    return Check("reasoning", True)


def score_paragraph(text: str, title: str, *, min_words: int, max_words: int,
                    instructions: set[tuple[str, ...]] = frozenset(), source: str = "", other: str | None = None,
                    point: str | None = None, wrote: str | None = None, checks: Sequence[str] = PARAGRAPH_CHECKS,
                    labels: Labels | None = None, fact_rule: int = RULE) -> Score:
    """`text`: what the post shows; `wrote`: all the model wrote (default: `text`); `source`: the
    story's title and entry text; `point`: what on_the_point asks (GAIN, RISK or None); `checks`:
    those that apply (a section kind's); `distinct` only with the `other` paragraph; `fact_rule`: the
    fact rule's version (digest.facts)."""
    wrote = text if wrote is None else wrote
    run = {
        "length": lambda: check_length(text, min_words, max_words, wrote),
        "on_topic": lambda: check_on_topic(text, title),
        "no_loops": lambda: check_no_loops(text),
        "complete": lambda: check_complete(wrote),
        "clean": lambda: check_clean(text, instructions, source, labels),
        "faithful": lambda: check_faithful(text, f"{title} {_URL.sub(' ', source)}", fact_rule),
        "no_title_echo": lambda: check_no_title_echo(text, title),
        "on_the_point": lambda: check_on_the_point(text, point),
        "distinct": lambda: check_distinct(text, other),
    }
    return Score([run[name]() for name in checks if name != "distinct" or other is not None])


def score_prediction(raw: str, day: date, *, min_words: int, max_words: int,
                     instructions: set[tuple[str, ...]] = frozenset(), subject: str = "",
                     labels: Labels | None = None, checks: Sequence[str] = PREDICTION_CHECKS) -> Score:
    """A real future month and year after `day`, named by no other year in the reason, then a finished
    reasoning sentence (cleaned within the same word limits as a paragraph); `checks`: those that apply
    (a section kind's)."""
    parsed = parse_prediction(raw, min_words, max_words, _labels(labels))
    if parsed is None:
        unread = {"date": Check("date", False, "no 'Month YYYY:' at the start"),
                  "reasoning": Check("reasoning", False, "no reasoning")}
        return Score([unread.get(name, Check(name, True)) for name in checks])
    future = parsed.year > day.year
    reasoning = parsed.reasoning
    # the reason may name no year but its own date's (digest.facts)
    other = other_year(f"{parsed.when}: {reasoning}")
    run = {
        "date": lambda: Check("date", future and not other,
                              f"{parsed.when} is not after {day.isoformat()}" if not future
                              else f"its reason names another year: {other}" if other else ""),
        "reasoning": lambda: check_reasoning(reasoning, subject),
        "no_loops": lambda: check_no_loops(reasoning),
        "clean": lambda: check_clean(reasoning, instructions, labels=labels),
    }
    return Score([run[name]() for name in checks])


# -- one sentence, the moment it is written: what the sentence rule of prevention asks ---------------


@dataclass(frozen=True, eq=False)
class SentenceChecks:
    """The checks of one sentence the moment it is written (the `checks` of a digest.prevention
    SentenceRule): it keeps to its source (the rule of digest.facts, numbers and number words included
    where `numbers`), does not open the paragraph with the title, does not repeat an earlier sentence,
    and holds no role word, label, Markdown, stray URL or five words of a prompt template."""

    source: str
    title: str = ""
    instructions: frozenset = frozenset()
    labels: Labels = None  # section labels (None: every kind's)
    numbers: bool = True  # False: a prediction's reason, whose numbers are not its subject's
    rule: int = RULE  # the fact rule's version

    def __call__(self, sentence: str, before: Sequence[str]) -> str | None:
        """Why `sentence` (after the paragraph's `before` sentences) fails, or None."""
        why = unfaithful(sentence, self.source, numbers=self.numbers, rule=self.rule)
        if why:
            return why
        if not before and self.title and not check_no_title_echo(sentence, self.title).passed:
            return "opens with the title"
        said = " ".join(words(sentence))
        if said and any(said == " ".join(words(b)) for b in before):
            return "repeats an earlier sentence"
        clean = check_clean(sentence, self.instructions, self.source, self.labels)
        return None if clean.passed else clean.why


def best(scores: Sequence[Score]) -> int:
    """Index of the best of several tries: the one passing most checks, the first among equals, so
    the choice depends only on the tries' order (their seeds), never on timing or slots."""
    return max(range(len(scores)), key=lambda i: (scores[i].value(), -i))


@dataclass(frozen=True)
class Section:
    """What the checks need to know of one request: its kind, its topic, what the model was told."""

    key: str
    kind: SectionKind  # digest.sections: its cleaner, its checks and what they ask of it
    title: str  # the topic's title, or the prediction's subject
    source: str = ""  # the feed text the model saw: names, numbers and URLs found there are not invented
    pair: str | None = None  # the topic's other paragraph, which this one must not copy


class Judge:
    """Scores tries of the sections of one or more posts."""

    def __init__(self, sections: Iterable[Section], day: date, templates: Iterable[str], *,
                 min_words: int, max_words: int, fact_rule: int = RULE):
        self.sections = {s.key: s for s in sections}
        self.fact_rule = fact_rule  # the fact rule's version (digest.facts): the checks' and the guard's
        self.day = day
        self.instructions = instruction_phrases(templates)
        self.min_words, self.max_words = min_words, max_words

    def text(self, key: str, raw: str) -> str:
        """What of `raw` lands in the post: its kind's cleaner, within the word limits."""
        return self.sections[key].kind.cleaned(raw, self.min_words, self.max_words)

    def source(self, key: str) -> str:
        """What a section may draw its facts from: its title and the entry text (no URL), or a
        prediction's subject."""
        section = self.sections[key]
        return f"{section.title} {_URL.sub(' ', section.source)}"

    def sentence_checks(self, key: str) -> SentenceChecks:
        """The checks of one sentence of a section's request, the moment it is written."""
        section = self.sections[key]
        return SentenceChecks(self.source(key), section.title if "no_title_echo" in section.kind.checks else "",
                              frozenset(self.instructions), None, numbers="faithful" in section.kind.checks,
                              rule=self.fact_rule)

    def usable(self, key: str, raw: str) -> bool:
        return bool(self.text(key, raw))

    def score(self, key: str, raw: str, other: str | None = None) -> Score:
        """`other`: the text chosen for the section's pair, if any. Its kind names the scorer
        (`SectionKind.scorer`) and the checks it runs."""
        return SCORERS[self.sections[key].kind.scorer](self, key, raw, other)


def _paragraph(judge: Judge, key: str, raw: str, other: str | None) -> Score:
    section = judge.sections[key]
    return score_paragraph(judge.text(key, raw), section.title, instructions=judge.instructions,
                           source=section.source, other=other, min_words=judge.min_words,
                           max_words=judge.max_words, point=section.kind.point, wrote=written(raw, sections.labels()),
                           checks=section.kind.checks, fact_rule=judge.fact_rule)


def _dated(judge: Judge, key: str, raw: str, other: str | None) -> Score:
    section = judge.sections[key]
    return score_prediction(raw, judge.day, instructions=judge.instructions, subject=section.title,
                            min_words=judge.min_words, max_words=judge.max_words, checks=section.kind.checks)


# The scorers a kind names (`SectionKind.scorer`): the text of a paragraph, or "Month YYYY: reasoning".
SCORERS = {PARAGRAPH: _paragraph, DATED: _dated}
