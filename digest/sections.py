"""The kinds of section the model writes, each defined once (Benefits, Ramifications, the predictions),
and the plan of a post's sections.

A `SectionKind` says everything the rest of digest needs to know of one kind and brings its own
behaviour: its name (the key of each request, hence each section's seed), its label in the post, its
prompt template and the fields it fills in (`values`), the grammar its answers must follow (if any),
how its raw text is cleaned (`clean`), how it is scored (`scorer` names digest.quality's scorer, and
`checks` the quality checks that apply), how the sentence rule of prevention holds it (`holds_min_words`,
`most_sentences`), and where and how its text goes in the post (`put`: a paragraph under its label of
every topic, in the configured order, or an item of the list at the post's end, one per subject, made
by its `item`). `plan` orders a post's sections once: the requests (prompts.py), the checks
(pipeline.py, evaluate.py), the post (pipeline.assemble) and `digest check` read it. None of those
modules names a kind, a label or a subject, or asks where a kind goes.

To add a kind: define it here (in `KINDS`), write its prompt template (`prompts/<template>.txt`)
and, for a topic kind, list its name in the config's `[generation] sections` (a post-level kind is in
every post). To add a prediction subject: add it to PREDICTION_SUBJECTS (and the word `digest check`
knows it by in a post digest did not write). tests/test_section_kinds.py adds both kinds so.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Callable, Iterable, Sequence

from .errors import ConfigError
from .post import MONTHS, Post, Prediction
from .text import clean_paragraph, clean_prediction, split_prediction

TOPIC, POST = "topic", "post"  # a paragraph of every topic; a list of its own at the post's end
TOPIC_FIELDS = frozenset({"title", "context"})  # what a topic kind's template may use
SUBJECT_FIELDS = frozenset({"subject", "date", "year"})  # ... and a post-level kind's, one item per subject
# The quality checks (digest.quality), by the shape of the text they look at.
PARAGRAPH_CHECKS = ("length", "on_topic", "no_loops", "complete", "clean", "faithful", "no_title_echo",
                    "on_the_point", "distinct")
PREDICTION_CHECKS = ("date", "reasoning", "no_loops", "clean")
# How digest.quality scores a kind's answer (its scorer, by this name), and the checks each knows: a
# paragraph, or a dated item "Month YYYY: reasoning".
PARAGRAPH, DATED = "paragraph", "dated"
SCORER_CHECKS = {PARAGRAPH: PARAGRAPH_CHECKS, DATED: PREDICTION_CHECKS}
GAIN, RISK = "gain", "risk"  # what `on_the_point` asks of a paragraph (its lexicons are in prevention.py)
PREDICTION_YEARS = 75
_LABEL_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9 '’-]*")
# The predictions' subjects, in the post's order, each with the word `digest check` knows it by in a
# post it did not write (the published series wrote "Artificial General Intelligence (AGI)", "The Singularity").
PREDICTION_SUBJECTS = ("Artificial general intelligence", "Technological singularity")
PREDICTION_NEEDLES = ("general intelligence", "singularity")
DEFAULT_SECTIONS = ("benefits", "ramifications")  # the config's `[generation] sections` unless it says


def context_of(text: str) -> str:
    """What a template's ${context} says of a story's entry text."""
    return f"What it says: {text}" if text else "(The feed gives no text beyond the title.)"


def dated_item(subject: str, text: str, escape: Callable[[str], str]) -> Prediction:
    """A post-level item of "Month YYYY: reasoning" (what `clean_prediction` returned), its
    reasoning escaped: the predictions' line "- **subject** (when): reasoning"."""
    when, reasoning = split_prediction(text)
    assert reasoning  # generate() retried until usable
    return Prediction(subject, when, escape(reasoning))


def prediction_grammar(day: date) -> str:
    """GBNF for "Month YYYY: reasoning", the year after the post's year."""
    months = " | ".join(f'"{m}"' for m in MONTHS)
    years = " | ".join(f'"{y}"' for y in range(day.year + 1, day.year + 1 + PREDICTION_YEARS))
    return (
        'root ::= month " " year ": " reason\n'
        f"month ::= {months}\n"
        f"year ::= {years}\n"
        "reason ::= [A-Z] [^\\n]+\n"
    )


@dataclass(frozen=True)
class SectionKind:
    """One kind of section the model writes. See the module's docstring."""

    name: str  # request keys are "<name>:<topic title or subject>", and seeds derive from them: never rename
    label: str  # topic kinds: the post's "- *<label>:*" line
    template: str = ""  # prompts/<template>.txt (default: the name)
    place: str = TOPIC  # TOPIC or POST
    fields: frozenset[str] = TOPIC_FIELDS  # the placeholders its template may use
    subjects: tuple[str, ...] = ()  # POST kinds: one section per subject, in this order
    # ... and for each subject, the (lower-case) words a post's subject must hold to be it (`digest
    # check` of a post digest did not write); none given: the subject itself
    needles: tuple[str, ...] = ()
    grammar: Callable[[date], str] | None = None  # GBNF its answers must follow, for the post's day
    # (raw text, min_words, max_words, labels to strip) -> the text the post shows ("" if unusable)
    clean: Callable[[str, int, int, Sequence[str]], str] = clean_paragraph
    # The scorer of digest.quality that scores its answers (PARAGRAPH or DATED), and the quality checks
    # that apply, in report order: some of that scorer's (SCORER_CHECKS).
    scorer: str = PARAGRAPH
    checks: tuple[str, ...] = PARAGRAPH_CHECKS
    # POST kinds: (subject, cleaned text, escape) -> the post's item (default: "Month YYYY: reasoning")
    item: Callable[[str, str, Callable[[str], str]], Prediction] = dated_item
    point: str | None = None  # GAIN or RISK: what `on_the_point` asks of it (None: nothing)
    pair: str | None = None  # the topic kind it must not copy (`distinct`), when the post has it: before this one

    @property
    def template_name(self) -> str:
        return self.template or self.name

    def key(self, title: str) -> str:
        """The key of its request for a topic's title or a subject (its seed derives from it)."""
        return f"{self.name}:{title}"

    def cleaned(self, raw: str, min_words: int, max_words: int) -> str:
        """The text the post shows: any kind's label the model starts with is removed too."""
        return self.clean(raw, min_words, max_words, labels())

    @property
    def example_fields(self) -> tuple[str, ...]:
        """What an example of it gives in examples.txt: a story's title and text, or a subject."""
        return ("title", "text") if self.place == TOPIC else ("subject",)

    def values(self, title: str, text: str, day: date) -> dict[str, str]:
        """Its template's fields for a topic (its title and entry text) or a subject (`text` unused)."""
        if self.place == TOPIC:
            return {"title": title, "context": context_of(text)}
        return {"subject": title, "date": day.strftime("%B %d, %Y"), "year": str(day.year)}

    @property
    def holds_min_words(self) -> bool:
        """Whether its text is held open to `min_words` (a topic's paragraph; not a post's one-line item)."""
        return self.place == TOPIC

    @property
    def most_sentences(self) -> int:
        """The sentences the post shows of it at most: a post-level item's one; 0: no limit."""
        return 1 if self.place == POST else 0

    def put(self, post: Post, slot: "Slot", text: str, escape: Callable[[str], str]) -> None:
        """Its cleaned `text` into the post: the paragraph under its label of the slot's topic, or an
        item of the post's list at its end (`item`)."""
        if self.place == TOPIC:
            post.topics[slot.topic].paragraphs[self.label] = escape(text)
        else:
            post.predictions.append(self.item(slot.title, text, escape))

    def is_subject(self, written: str, subject: str) -> bool:
        """Whether a post's prediction subject as `written` is `subject`, one of this kind's."""
        needles = dict(zip(self.subjects, self.needles))
        return needles.get(subject, subject).lower() in written.lower()

    def validate(self) -> None:
        """A bad definition is one ConfigError line naming the kind and what is wrong."""
        where = f"section kind {self.name!r}"
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ConfigError(f"{where}: the name must be lower-case letters, digits and '_', starting with a letter")
        if self.place not in (TOPIC, POST):
            raise ConfigError(f"{where}: place {self.place!r} is not {TOPIC!r} or {POST!r}")
        if not _LABEL_TEXT.fullmatch(self.label) or self.label != self.label.strip():
            raise ConfigError(f"{where}: label {self.label!r} must be words (letters, digits, spaces, ' and -)")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.template_name):
            raise ConfigError(f"{where}: template {self.template_name!r} is not a plain file name")
        if self.place == POST and not self.subjects:
            raise ConfigError(f"{where}: a kind placed in the post needs its subjects")
        if self.needles and len(self.needles) != len(self.subjects):
            raise ConfigError(f"{where}: {len(self.needles)} needles for {len(self.subjects)} subjects")
        given = TOPIC_FIELDS if self.place == TOPIC else SUBJECT_FIELDS
        if not self.fields <= given:
            raise ConfigError(f"{where}: field {sorted(self.fields - given)[0]!r} is not one digest fills in "
                              f"(a {self.place} kind's: {', '.join(sorted(given))})")
        if self.scorer not in SCORER_CHECKS:
            raise ConfigError(f"{where}: scorer {self.scorer!r} is not {' or '.join(map(repr, SCORER_CHECKS))}")
        unknown = [c for c in self.checks if c not in SCORER_CHECKS[self.scorer]]
        if unknown:
            raise ConfigError(f"{where}: unknown quality check {unknown[0]!r}")
        if self.point not in (None, GAIN, RISK):
            raise ConfigError(f"{where}: point {self.point!r} is not {GAIN!r}, {RISK!r} or None")


BENEFITS = SectionKind("benefits", "Benefits", point=GAIN)
RAMIFICATIONS = SectionKind("ramifications", "Ramifications", point=RISK, pair="benefits")
PREDICTION = SectionKind("prediction", "Prediction", template="predictions", place=POST, fields=SUBJECT_FIELDS,
                         subjects=PREDICTION_SUBJECTS, needles=PREDICTION_NEEDLES, grammar=prediction_grammar,
                         clean=clean_prediction, scorer=DATED, checks=PREDICTION_CHECKS)

# Every kind digest knows, by name: the config's `[generation] sections` picks topic kinds from it.
KINDS: dict[str, SectionKind] = {k.name: k for k in (BENEFITS, RAMIFICATIONS, PREDICTION)}


def labels() -> tuple[str, ...]:
    """Every known kind's label: what cleaning removes and the quality check `clean` rejects (digest.text)."""
    return tuple(k.label for k in KINDS.values())


def check_kinds(kinds: Iterable[SectionKind]) -> None:
    """Each kind well defined, and no two sharing a name, a label or a template."""
    seen: dict[tuple[str, str], str] = {}
    for kind in kinds:
        kind.validate()
        for what, value in (("name", kind.name), ("label", kind.label.lower()), ("template", kind.template_name)):
            if (what, value) in seen:
                raise ConfigError(f"section kind {kind.name!r}: its {what} {value!r} is already "
                                  f"kind {seen[what, value]!r}'s")
            seen[what, value] = kind.name


def kinds_of(sections: Sequence[str] = DEFAULT_SECTIONS) -> tuple[SectionKind, ...]:
    """The kinds of a post: the topic kinds named (the config's `[generation] sections`), in that
    order, then every post-level kind."""
    if not sections:
        raise ConfigError("[generation] sections is empty: name at least one topic section")
    out = []
    for name in sections:
        kind = KINDS.get(name)
        if kind is None or kind.place != TOPIC:
            known = ", ".join(k.name for k in KINDS.values() if k.place == TOPIC)
            raise ConfigError(f"[generation] sections: unknown section kind {name!r} (known: {known})")
        if kind in out:
            raise ConfigError(f"[generation] sections: {name!r} is named twice")
        out.append(kind)
    for kind in out:
        if kind.pair in sections[sections.index(kind.name):]:
            raise ConfigError(f"[generation] sections: {kind.name!r} must come after {kind.pair!r}, "
                              "the paragraph it must not copy")
    kinds = (*out, *(k for k in KINDS.values() if k.place == POST))
    check_kinds(kinds)
    return kinds


def topic_kinds(kinds: Iterable[SectionKind]) -> tuple[SectionKind, ...]:
    return tuple(k for k in kinds if k.place == TOPIC)


def post_kinds(kinds: Iterable[SectionKind]) -> tuple[SectionKind, ...]:
    return tuple(k for k in kinds if k.place == POST)


DEFAULT_KINDS = kinds_of()


@dataclass(frozen=True)
class Slot:
    """One section of a post, as the plan orders them: the request digest makes for it, the checks it
    is scored by and the place its text takes in the post."""

    key: str  # its request's key (`SectionKind.key`)
    kind: SectionKind
    title: str  # the topic's title, or the subject
    topic: int | None = None  # a topic kind's: the index of its topic
    pair: str | None = None  # the key of the topic's paragraph it must not copy (its kind's `pair`)

    @property
    def asked(self) -> str:
        """What its prompt is given for the title: the topic's title, or the subject in lower case."""
        return self.title if self.kind.place == TOPIC else self.title.lower()


def plan(titles: Sequence[str], kinds: Sequence[SectionKind] = DEFAULT_KINDS) -> tuple[Slot, ...]:
    """The sections of a post on topics of these `titles`, in the post's (and the requests') order:
    each topic kind's paragraph of each topic, then each post-level kind's item of each subject.
    The prompts, the checks, the post and `digest check` all read the post's sections from here."""
    out = []
    for index, title in enumerate(titles):
        for kind in topic_kinds(kinds):
            pair = next((k.key(title) for k in kinds if k.name == kind.pair), None)
            out.append(Slot(kind.key(title), kind, title, index, pair))
    out += [Slot(kind.key(subject), kind, subject) for kind in post_kinds(kinds) for subject in kind.subjects]
    return tuple(out)
