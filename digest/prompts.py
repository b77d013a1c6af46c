"""Prompt templates (`prompts/*.txt`) and the engine requests built from them.

Templates are plain text with `${name}` placeholders (Python's string.Template), so a user can
edit them without touching code. Each template may use only the fields listed in `FIELDS`.

`examples.txt` (optional) holds example exchanges, written for the purpose on made-up stories: each
becomes a user turn (made from the same template as a real request) and the assistant's answer, placed
between the system prompt and the real request. They are the same for every section, so they sit in
the prefix that all requests share (the batching engine decodes it once). `[generation] examples =
false` leaves them out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from string import Template
from typing import Sequence

from .engine.base import Message, Request, Sampling, derive_seed
from .errors import PromptError
from .files import sha256_bytes
from .post import MONTHS, PREDICTION_SUBJECTS
from .select import Story

FIELDS: dict[str, frozenset[str]] = {
    "system": frozenset(),
    "benefits": frozenset({"title", "context"}),
    "ramifications": frozenset({"title", "context"}),
    "predictions": frozenset({"subject", "date", "year"}),
}
# Optional: example exchanges (see the module's docstring and prompts/examples.txt).
EXAMPLES = "examples"
EXAMPLE_FIELDS = frozenset({"later"})  # in an example prediction's answer: a year after the post's year
EXAMPLE_KINDS = {"benefits": ("title", "text"), "ramifications": ("title", "text"), "predictions": ("subject",)}
SECTIONS = ("benefits", "ramifications")
PREDICTION_YEARS = 75


@dataclass(frozen=True)
class Templates:
    directory: Path
    texts: dict[str, str]

    @classmethod
    def load(cls, directory: Path) -> "Templates":
        directory = Path(directory)
        if not directory.is_dir():
            raise PromptError(f"prompts folder not found: {directory}")
        texts = {}
        for name, allowed in [*FIELDS.items(), (EXAMPLES, EXAMPLE_FIELDS)]:
            path = directory / f"{name}.txt"
            try:
                text = path.read_text(encoding="utf-8").strip()
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
        templates = cls(directory, texts)
        templates.examples()  # a malformed examples file fails here, before any model is loaded
        return templates

    def examples(self) -> list["Example"]:
        """The example exchanges of examples.txt, in order ([] without the file)."""
        if EXAMPLES not in self.texts:
            return []
        path = self.directory / f"{EXAMPLES}.txt"
        out = []
        blocks = re.split(r"^==[ \t]*", self.texts[EXAMPLES], flags=re.M)
        if blocks[0].strip() and not all(line.startswith("#") for line in blocks[0].strip().splitlines()):
            raise PromptError(f"{path}: text before the first '== KIND' line")
        for block in blocks[1:]:
            head, sep, answer = block.partition("\n--\n")
            lines = head.strip().splitlines()
            kind = lines[0].strip() if lines else ""
            if kind not in EXAMPLE_KINDS:
                raise PromptError(f"{path}: example kind {kind!r} is not one of {', '.join(EXAMPLE_KINDS)}")
            fields = {}
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                if not colon or name.strip() not in EXAMPLE_KINDS[kind]:
                    raise PromptError(f"{path}: in a '{kind}' example, expected "
                                      f"{' / '.join(f'{f}: ...' for f in EXAMPLE_KINDS[kind])}, got {line!r}")
                fields[name.strip()] = value.strip()
            missing = [f for f in EXAMPLE_KINDS[kind] if f not in fields]
            if not sep or not answer.strip() or (missing and missing != ["text"]):
                raise PromptError(f"{path}: a '{kind}' example needs {', '.join(EXAMPLE_KINDS[kind])}, "
                                  "then a '--' line and its answer")
            out.append(Example(kind, fields.get("title", fields.get("subject", "")), fields.get("text", ""),
                               " ".join(answer.split())))
        return out

    def fill(self, name: str, **values: str) -> str:
        return Template(self.texts[name]).substitute(values)

    def sha256(self) -> dict[str, str]:
        return {name: sha256_bytes(text.encode("utf-8")) for name, text in self.texts.items()}


@dataclass(frozen=True)
class Example:
    kind: str  # "benefits", "ramifications" or "predictions"
    title: str  # the story's title, or the prediction's subject
    text: str  # the story's entry text ("" for a story without one, and for predictions)
    answer: str  # the assistant's turn (a prediction's may use ${later}: a year after the post's)


def example_turns(templates: Templates, day: date) -> tuple[Message, ...]:
    """The example exchanges as user/assistant messages, built as a real request would be."""
    turns = []
    for ex in templates.examples():
        if ex.kind == "predictions":
            user = templates.fill("predictions", subject=ex.title, date=day.strftime("%B %d, %Y"), year=str(day.year))
        else:
            user = templates.fill(ex.kind, title=ex.title, context=context_of(ex.text))
        answer = Template(ex.answer).substitute(later=str(day.year + 6))
        turns += [Message("user", user), Message("assistant", answer)]
    return tuple(turns)


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


def context_of(text: str) -> str:
    """What a template's ${context} says of a story's entry text."""
    return f"What it says: {text}" if text else "(The feed gives no text beyond the title.)"


def section_key(kind: str, title: str) -> str:
    return f"{kind}:{title}"


def build_requests(
    topics: Sequence[Story],
    day: date,
    templates: Templates,
    *,
    run_seed: int,
    max_tokens: int,
    sampling: Sampling,
    examples: bool = True,
) -> list[Request]:
    """One request per paragraph (Benefits and Ramifications of each topic) and per prediction.

    Each request's seed comes from the run's seed and the request's key, which names its topic,
    so a section's text does not depend on its position in the post. With `examples`, the example
    exchanges of examples.txt come between the system prompt and the request, the same for all.
    """
    prefix = (Message("system", templates.fill("system")), *(example_turns(templates, day) if examples else ()))
    requests = []

    def add(key: str, user: str, **extra) -> None:
        requests.append(
            Request(key=key, messages=(*prefix, Message("user", user)), seed=derive_seed(run_seed, key),
                    max_tokens=max_tokens, sampling=sampling, **extra)
        )

    for story in topics:
        for kind in SECTIONS:
            add(section_key(kind, story.title), templates.fill(kind, title=story.title, context=context_of(story.excerpt)))
    grammar = prediction_grammar(day)
    for subject in PREDICTION_SUBJECTS:
        user = templates.fill("predictions", subject=subject.lower(), date=day.strftime("%B %d, %Y"),
                              year=str(day.year))
        add(section_key("prediction", subject), user, grammar=grammar)
    return requests
