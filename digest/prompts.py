"""Prompt templates (`prompts/*.txt`) and the engine requests built from them.

Templates are plain text with `${name}` placeholders (Python's string.Template), so a user can
edit them without touching code. There is one per section kind (`digest.sections`: its template and
the fields it may use) and the system prompt, which uses none.

`examples.txt` (optional) holds example exchanges, written for the purpose on made-up stories: each
becomes a user turn (made from the same template as a real request) and the assistant's answer, placed
between the system prompt and the real request. They are the same for every section, so they sit in
the shared prefix of requests. By default (`[generation] example_kinds = "own"`) a section is shown
the examples of its own kind only: a Benefits paragraph sees the Benefits example, a prediction the
prediction's. That is all a small model needs to imitate, and it keeps each sequence's context short,
which is what a batch of long contexts pays for on a CPU (docs/speed.md). The sections of one kind
share their prefix, which the batching engine decodes once. `"all"` shows every example to every
section (digest before 0.2); `[generation] examples = false` leaves them out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from string import Template
from typing import Sequence

from .engine.base import Message, Request, Sampling, derive_seed
from .errors import PromptError
from .files import sha256_bytes
from .select import Story
from .sections import DEFAULT_KINDS, KINDS, SectionKind, plan

SYSTEM = "system"
# Optional: example exchanges (see the module's docstring and prompts/examples.txt).
EXAMPLES = "examples"
EXAMPLE_YEARS_LATER = 6  # ${later} in an example prediction's answer: the post's year + this
EXAMPLE_FIELDS = frozenset({"later"})


def fields_of(kinds: Sequence[SectionKind] = DEFAULT_KINDS) -> dict[str, frozenset[str]]:
    """Each template's name and the fields it may use: the system prompt's, then each kind's."""
    return {SYSTEM: frozenset(), **{kind.template_name: kind.fields for kind in kinds}}




@dataclass(frozen=True)
class Templates:
    directory: Path
    texts: dict[str, str]
    kinds: tuple[SectionKind, ...] = field(default=DEFAULT_KINDS, compare=False)

    @classmethod
    def load(cls, directory: Path, kinds: tuple[SectionKind, ...] = DEFAULT_KINDS) -> "Templates":
        directory = Path(directory)
        if not directory.is_dir():
            raise PromptError(f"prompts folder not found: {directory}")
        texts = {}
        for name, allowed in [*fields_of(kinds).items(), (EXAMPLES, EXAMPLE_FIELDS)]:
            path = directory / f"{name}.txt"
            try:
                data = path.read_bytes()
                text = data.decode("utf-8").strip()
            except FileNotFoundError:
                if name == EXAMPLES:
                    continue
                raise PromptError(f"prompt template missing: {path}")
            except (OSError, UnicodeDecodeError) as exc:
                raise PromptError(f"cannot read prompt template {path}: {exc}") from exc
            for match in Template.pattern.finditer(text):
                if match.group("invalid") is not None:
                    raise PromptError(f"{path}: a '$' that starts no placeholder (write '$$' for a dollar sign)")
                used = match.group("named") or match.group("braced")
                if used is not None and used not in allowed:
                    known = ", ".join(sorted(allowed)) or "none"
                    raise PromptError(f"{path}: unknown placeholder ${{{used}}} (this template knows: {known})")
            texts[name] = text
        templates = cls(directory, texts, tuple(kinds))
        templates.examples()  # a malformed examples file fails here, before any model is loaded
        return templates

    def examples(self) -> list["Example"]:
        """The example exchanges of examples.txt, in order ([] without the file): those of any known
        kind (`digest.sections.KINDS`) are read, those of the kinds in this post kept."""
        if EXAMPLES not in self.texts:
            return []
        path = self.directory / f"{EXAMPLES}.txt"
        kinds = {kind.template_name: kind.example_fields for kind in (*self.kinds, *KINDS.values())}
        used = {kind.template_name for kind in self.kinds}
        out = []
        blocks = re.split(r"^==[ \t]*", self.texts[EXAMPLES], flags=re.M)
        if blocks[0].strip() and not all(line.startswith("#") for line in blocks[0].strip().splitlines()):
            raise PromptError(f"{path}: text before the first '== KIND' line")
        for block in blocks[1:]:
            head, sep, answer = block.partition("\n--\n")
            lines = head.strip().splitlines()
            kind = lines[0].strip() if lines else ""
            if kind not in kinds:
                raise PromptError(f"{path}: example kind {kind!r} is not one of {', '.join(kinds)}")
            fields = {}
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                if not colon or name.strip() not in kinds[kind]:
                    raise PromptError(f"{path}: in a '{kind}' example, expected "
                                      f"{' / '.join(f'{f}: ...' for f in kinds[kind])}, got {line!r}")
                fields[name.strip()] = value.strip()
            missing = [f for f in kinds[kind] if f not in fields]
            if not sep or not answer.strip() or (missing and missing != ["text"]):
                raise PromptError(f"{path}: a '{kind}' example needs {', '.join(kinds[kind])}, "
                                  "then a '--' line and its answer")
            if kind in used:
                out.append(Example(kind, fields.get("title", fields.get("subject", "")), fields.get("text", ""),
                                   " ".join(answer.split())))
        return out

    def fill(self, name: str, **values: str) -> str:
        return Template(self.texts[name]).substitute(values)


def template_sha256(path: Path) -> str:
    """A template file's sha256, of its bytes, not its stripped text: what a manifest records and
    `digest replay` checks."""
    return sha256_bytes(Path(path).read_bytes())


@dataclass(frozen=True)
class Example:
    kind: str  # the template of a section kind: "benefits", "ramifications" or "predictions" by default
    title: str  # the story's title, or the prediction's subject
    text: str  # the story's entry text ("" for a story without one, and for predictions)
    answer: str  # the assistant's turn (a prediction's may use ${later}: EXAMPLE_YEARS_LATER after the post's year)


EXAMPLE_KINDS = ("own", "all")  # which examples a section is shown (`[generation] example_kinds`)


def example_turns(templates: Templates, day: date, kind: SectionKind | None = None) -> tuple[Message, ...]:
    """The example exchanges as user/assistant messages, built as a real request would be: those of
    `kind` only, or all of them."""
    turns = []
    kinds = {kind.template_name: kind for kind in templates.kinds}
    for ex in templates.examples():
        if kind is not None and ex.kind != kind.template_name:
            continue
        user = fill_for(templates, kinds[ex.kind], ex.title, ex.text, day)
        answer = Template(ex.answer).substitute(later=str(day.year + EXAMPLE_YEARS_LATER))
        turns += [Message("user", user), Message("assistant", answer)]
    return tuple(turns)


def fill_for(templates: Templates, kind: SectionKind, title: str, text: str, day: date) -> str:
    """The user turn of `kind` for a topic (its title and entry text) or, for a kind placed in the
    post, a subject (`text` unused): the fields its kind gives (`SectionKind.values`)."""
    return templates.fill(kind.template_name, **kind.values(title, text, day))


def build_requests(
    topics: Sequence[Story],
    day: date,
    templates: Templates,
    *,
    run_seed: int,
    max_tokens: int,
    sampling: Sampling,
    examples: bool = True,
    example_kinds: str = "own",
) -> list[Request]:
    """One request per paragraph (each topic kind's, of each topic) and per post-level item (the
    predictions), for the section kinds of `templates`.

    Each request's seed comes from the run's seed and the request's key, which names its topic,
    so a section's text does not depend on its position in the post. With `examples`, the example
    exchanges of examples.txt come between the system prompt and the request: those of the request's
    own kind (`example_kinds` "own") or all of them ("all").
    """
    if example_kinds not in EXAMPLE_KINDS:
        raise ValueError(f"example_kinds must be one of {', '.join(EXAMPLE_KINDS)}, not {example_kinds!r}")
    system = Message("system", templates.fill("system"))
    shown: dict[str, tuple[Message, ...]] = {}

    def prefix(kind: SectionKind) -> tuple[Message, ...]:
        if kind.name not in shown:
            turns = example_turns(templates, day, kind if example_kinds == "own" else None) if examples else ()
            shown[kind.name] = (system, *turns)
        return shown[kind.name]

    requests = []

    def add(kind: SectionKind, key: str, user: str) -> None:
        requests.append(
            Request(key=key, messages=(*prefix(kind), Message("user", user)), seed=derive_seed(run_seed, key),
                    max_tokens=max_tokens, sampling=sampling, **({"grammar": kind.grammar(day)} if kind.grammar else {}))
        )

    for slot in plan([story.title for story in topics], templates.kinds):
        text = "" if slot.topic is None else topics[slot.topic].excerpt
        add(slot.kind, slot.key, fill_for(templates, slot.kind, slot.asked, text, day))
    return requests
