"""Prompt templates (`prompts/*.txt`) and the engine requests built from them.

Templates are plain text with `${name}` placeholders (Python's string.Template), so a user can
edit them without touching code. Each template may use only the fields listed in `FIELDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from string import Template
from typing import Sequence

from .engine.base import Message, Request, Sampling, derive_seed
from .errors import PromptError
from .files import sha256_bytes
from .post import PREDICTION_SUBJECTS
from .select import Story

FIELDS: dict[str, frozenset[str]] = {
    "system": frozenset(),
    "benefits": frozenset({"title", "context"}),
    "ramifications": frozenset({"title", "context"}),
    "predictions": frozenset({"subject", "date", "year"}),
}
SECTIONS = ("benefits", "ramifications")
PREDICTION_YEARS = 75
_MONTHS = "January February March April May June July August September October November December".split()


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
        for name, allowed in FIELDS.items():
            path = directory / f"{name}.txt"
            try:
                text = path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
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
        return cls(directory, texts)

    def fill(self, name: str, **values: str) -> str:
        return Template(self.texts[name]).substitute(values)

    def sha256(self) -> dict[str, str]:
        return {name: sha256_bytes(text.encode("utf-8")) for name, text in self.texts.items()}


def prediction_grammar(day: date) -> str:
    """GBNF for "Month YYYY: reasoning", the year after the post's year."""
    months = " | ".join(f'"{m}"' for m in _MONTHS)
    years = " | ".join(f'"{y}"' for y in range(day.year + 1, day.year + 1 + PREDICTION_YEARS))
    return (
        'root ::= month " " year ": " reason\n'
        f"month ::= {months}\n"
        f"year ::= {years}\n"
        "reason ::= [A-Z] [^\\n]+\n"
    )


def _context(story: Story) -> str:
    return f"What it says: {story.excerpt}" if story.excerpt else ""


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
) -> list[Request]:
    """One request per paragraph (Benefits and Ramifications of each topic) and per prediction.

    Each request's seed comes from the run's seed and the request's key, which names its topic,
    so a section's text does not depend on its position in the post.
    """
    system = Message("system", templates.fill("system"))
    requests = []

    def add(key: str, user: str, **extra) -> None:
        requests.append(
            Request(key=key, messages=(system, Message("user", user)), seed=derive_seed(run_seed, key),
                    max_tokens=max_tokens, sampling=sampling, **extra)
        )

    for story in topics:
        for kind in SECTIONS:
            add(section_key(kind, story.title), templates.fill(kind, title=story.title, context=_context(story)))
    grammar = prediction_grammar(day)
    for subject in PREDICTION_SUBJECTS:
        user = templates.fill("predictions", subject=subject.lower(), date=day.strftime("%B %d, %Y"),
                              year=str(day.year))
        add(section_key("prediction", subject), user, grammar=grammar)
    return requests
