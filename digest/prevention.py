"""Prevention: what an engine applies while the model writes, so that fewer tries fail the checks after
the fact. One home for how it is built from a section (its kind, title and source):

- the fact guard (digest.facts.Guard): no number or name its source does not give;
- the biases (`Bias`): toward the words of its kind's point and away from the opposite's (the point
  lexicons, which the `on_the_point` check counts too), and toward its title's words (the topic lean);
- the sentence rule (`SentenceRule`): what a sentence must be the moment it is finished (the checks'
  verdict on one sentence, which digest.quality gives as `checks`), when the paragraph may end, and how
  a long sentence is led to its end.

This module sits below both the checks (digest.quality) and the engines (digest.engine): both import
it, it imports neither.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from . import sections, sentences
from .facts import Guard
from .sections import SectionKind
from .select import content_words

if TYPE_CHECKING:
    import numpy as np

# The topic bias leans toward the title's content words of at least this many letters (shorter ones,
# "new", "lab", begin too many other words).
TOPIC_MIN_LETTERS = 4
# A sentence of more words than this is refused (at once, while it is still being written).
SENTENCE_MAX_WORDS = 45
# From this many words on, a sentence being written is led toward its end: END_BIAS_STEP more logit on
# the tokens that end a sentence for each word past it (7.5 at the limit).
SENTENCE_SOFT_WORDS = 30
END_BIAS_STEP = 0.5


# -- the biases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bias:
    """Words to lean the sampler toward and away from: `amount` is added to (taken from) the logit of
    every token that begins a word of `toward` (`away`), and `topic_amount` to that of every token that
    begins a word of `topic` (see `deltas`): a token of a space and letters that start with one of the stems, or are
    four or more of its first letters."""

    toward: tuple[str, ...] = ()
    away: tuple[str, ...] = ()
    amount: float = 0.0
    topic: tuple[str, ...] = ()
    topic_amount: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.amount and (self.toward or self.away) or self.topic_amount and self.topic)

    def deltas(self, pieces: Sequence[bytes], *, topic: bool, words: "Words | None" = None) -> "tuple[np.ndarray, np.ndarray]":
        """What the bias adds to the logits: (tokens, amounts), tokens as indexes of a vocabulary's
        `pieces`, each once. `topic`: with the topic lean, which an engine applies from a paragraph's
        second sentence on (where it tells sentences apart: a sentence rule), since a first sentence
        leaning to the title's words copies the title. `words`: the vocabulary's `Words` (made from
        `pieces` where not given)."""
        import numpy as np

        index = words if words is not None else Words.of(pieces)
        # A word begins a stem's word where it starts with the stem, or is four or more of its first letters.
        hits = [index.matching(stems, {s[:k] for s in stems for k in range(4, len(s) + 1)})
                for stems in (self.toward, self.away, self.topic)]
        delta = np.where(hits[0], self.amount, np.where(hits[1], -self.amount, 0.0))
        if topic:
            delta = delta + np.where(hits[2], self.topic_amount, 0.0)
        keep = np.flatnonzero(delta)
        order = np.argsort(index.tokens[keep], kind="stable")  # in token order, as the vocabulary is
        return index.tokens[keep][order], delta[keep][order].astype(np.float32)


@dataclass(frozen=True)
class Words:
    """The pieces of a vocabulary that a bias can lean on (a space and three or more letters), as their
    lowercased words sorted, with their tokens: the words that start with a stem are then one range
    found by bisection, not a pass over every piece (a 262k vocabulary: 1.35 s a bias in Python). An
    engine makes it once per model (engine.vocabulary.Vocabulary.words)."""

    words: tuple[str, ...]
    tokens: "np.ndarray"

    @classmethod
    def of(cls, pieces: Sequence[bytes]) -> "Words":
        import numpy as np

        found = []
        for token, piece in enumerate(pieces):
            if not piece.startswith(b" "):
                continue
            word = piece[1:].decode("utf-8", errors="ignore").lower()
            if len(word) >= 3 and word.isalpha():
                found.append((word, token))
        found.sort()
        return cls(tuple(w for w, _ in found), np.array([t for _, t in found], dtype=np.int64))

    def matching(self, stems: Sequence[str], words: set[str]) -> "np.ndarray":
        """Which words (a mask, in this order) start with one of `stems` or are one of `words`."""
        import numpy as np

        mask = np.zeros(len(self.words), dtype=bool)
        for stem in stems:  # the words that start with it: the sorted ones from it to it + the last character
            mask[bisect_left(self.words, stem):bisect_left(self.words, stem + "\U0010ffff")] = True
        for word in words:
            mask[bisect_left(self.words, word):bisect_right(self.words, word)] = True
        return mask


def stem_pattern(text: str) -> str:
    """A pattern of the stems of `text` (white space between them), each at a word's start."""
    return r"\b(?:" + "|".join(text.split()) + r")"


# The point lexicons: who gains, what is gained, what is risked (stems; a few with a pattern). The
# `on_the_point` check counts them (digest.quality); the point bias leans toward and away from them.
WHO_STEMS = ("""
    researcher scientist developer engineer compan firm business startup start-up lab user people person
    patient doctor clinician nurse hospital student teacher school reader customer consumer citizen resident
    government agenc team owner shop farmer worker staff communit famil child public societ organi industr
    educator practitioner beginner hobbyist newcomer anyone everyone author reviewer journalist lawyer bank
    insurer regulator operator technician volunteer speaker viewer listener driver cit countr universit
    institution editor shopper buyer provider maker manufacturer hospital analyst employee employer
    individual learner creator artist writer caller client member group venue conference publisher
    community deaf blind smaller small\\s+(?:lab|team|compan|business|shop) \\w+ists\\b \\w+ians\\b
    """)
WHO = re.compile(stem_pattern(WHO_STEMS), re.I)
GAIN_STEMS = ("""
    help benefit save saving cheap faster easier better improv allow let enabl gain access boost protect
    support speed efficien affordab useful valuable opportunit empower reliab fairer clearer safer simpler
    quicker more\\s+accurate accura free\\b freed avoid prevent catch spot trust confiden transparen
    open\\s+(?:up|source|weights|data) share learn understand plan scale reach lower reduc cut\\b cuts\\b
    fewer\\s+(?:errors|mistakes|failures) less\\s+(?:waste|time|energy|memory|compute) advantage
    valu win\\b wins\\b gets?\\b chance fix detect sav
    """)
GAIN = re.compile(stem_pattern(GAIN_STEMS), re.I)
RISK_STEMS = ("""
    risk cost costl expensiv lose\\b loses losing loss\\b losses loser harm danger concern worr bias
    error mistak misus abus privac surveil job\\s+loss fail unfair threat downside worse limit drawback
    problem struggl burden exclud left\\s+behind miss\\b misses missed wrong mislead false fraud
    overconfiden securit attack vulnerab uncertain doubt unreliab hard\\b harder difficult slow waste
    dependen lock-in displac pressur strain challeng hidden inaccura confus overlook ignor bad\\b
    complain penalt critic weak fragil danger leak expos flaw restrict unequal inequal scrutin backlash
    delay downtime outag crash spoof deceiv manipul
    """)
RISK = re.compile(stem_pattern(RISK_STEMS), re.I)


def lexicon(point: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The plain stems (no pattern) that `on_the_point` counts for `point`, and those it counts
    against it: a GAIN paragraph's who and gain words against its risk words; a RISK paragraph's risk
    words against its gain words. What the point bias leans the sampler toward (and away from)."""
    def plain(text: str) -> tuple[str, ...]:
        return tuple(w for w in text.split() if re.fullmatch(r"[a-z-]+", w))
    if point == sections.GAIN:
        return plain(WHO_STEMS) + plain(GAIN_STEMS), plain(RISK_STEMS)
    if point == sections.RISK:
        return plain(RISK_STEMS), plain(GAIN_STEMS)
    return (), ()


def bias(kind: SectionKind, title: str, amount: float, topic_amount: float = 0.0) -> Bias | None:
    """The biases of a section's request: the point bias (`amount`), toward its kind's point and away
    from the opposite; the topic bias (`topic_amount`), toward its title's words where its kind is
    checked on topic. None: neither."""
    toward, away = lexicon(kind.point)
    topic = tuple(sorted(w for w in content_words(title) if len(w) >= TOPIC_MIN_LETTERS and w.isalpha())) \
        if topic_amount and "on_topic" in kind.checks else ()
    made = Bias(toward, away, amount if toward else 0.0, topic, topic_amount if topic else 0.0)
    return made if made else None


# -- the fact guard ---------------------------------------------------------------------------------


def guard(kind: SectionKind, source: str, rule: int) -> Guard:
    """The fact guard of a section's request (digest.facts; `rule`: its version), from what it may
    draw its facts from; its numbers are guarded where its kind is checked `faithful`."""
    return Guard.of(source, guard_numbers="faithful" in kind.checks, rule=rule)


# -- the sentence rule ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SentenceRule:
    """What an engine that can undo a sentence asks of each one the moment it is finished, and of the
    paragraph as it grows. A sentence of more than SENTENCE_MAX_WORDS words is refused, and so is one
    the `checks` refuse (digest.quality: the checks of one sentence, given the paragraph's sentences
    before it); a refused sentence is undone and written again, up to `attempts` tries in all."""

    checks: Callable[[str, Sequence[str]], "str | None"] = lambda sentence, before: None
    min_words: int = 0
    max_words: int = 0  # 0: no limit
    attempts: int = 4  # tries of a sentence, the first included, before the last one is kept
    most: int = 0  # sentences the post shows of it (a one-sentence kind's: 1); 0: no limit
    hold: bool = False  # the model may end the paragraph only after a finished sentence and min_words
    # ([generation] hold_to_min_words)

    def problem(self, sentence: str, before: Sequence[str]) -> str | None:
        """Why `sentence` (after the paragraph's `before` sentences) must be written again, or None."""
        n = len(sentence.split())
        if n > SENTENCE_MAX_WORDS:
            return f"a sentence of {n} words"
        return self.checks(sentence, before)

    def long_enough(self, before: Sequence[str]) -> bool:
        """Whether the paragraph may end after `before` (a last sentence that keeps failing is dropped)."""
        return sum(len(s.split()) for s in before) >= self.min_words

    def may_end(self, before: Sequence[str]) -> bool:
        """Whether the model may end the paragraph after `before` (the sentences so far, the one being
        written last, finished or not): where not, its end-of-text tokens are refused (a request
        without a grammar). With `hold`: only after a finished sentence, once it has `min_words`."""
        if not self.hold:
            return True
        text = " ".join(s for s in before if s.strip())
        return self.long_enough(before) and (not text or bool(sentences.ends(text)))

    def done(self, before: Sequence[str]) -> bool:
        """Whether the paragraph has every sentence the post will show of it (then it ends there)."""
        return bool(self.most) and len(before) >= self.most

    def too_long(self, sentence: str, before: Sequence[str]) -> bool:
        """Whether `sentence` would take the paragraph past its word limit (then, if `before` is long
        enough, the paragraph ends before it)."""
        return bool(self.max_words) and sum(len(s.split()) for s in (*before, sentence)) > self.max_words

    def runaway(self, unfinished: str) -> bool:
        """Whether a sentence still being written is already too long to pass (then it is refused at
        once, not at its end)."""
        return len(unfinished.split()) > SENTENCE_MAX_WORDS

    def end_bias(self, unfinished: str) -> float:
        """How much to add to the logits of the tokens that end a sentence, while this one is being
        written (0: none): a long sentence is led to its end before it runs past the limit."""
        return max(0, len(unfinished.split()) - SENTENCE_SOFT_WORDS) * END_BIAS_STEP


def sentence_rule(kind: SectionKind, checks: Callable[[str, Sequence[str]], "str | None"], *, min_words: int,
                  max_words: int, attempts: int, hold: bool = False) -> SentenceRule:
    """The sentence rule of a section's request: `checks` (digest.quality's of one sentence of it); the
    paragraph's `min_words` for a topic's paragraph, its `max_words` where its kind is checked for
    length, one sentence for a post-level kind's item."""
    return SentenceRule(checks, min_words if kind.holds_min_words else 0,
                        max_words if "length" in kind.checks else 0, attempts, most=kind.most_sentences, hold=hold)
