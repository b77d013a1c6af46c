"""A fake engine: deterministic, instant, no model. For fast tests and for trying the pipeline.

Its text depends only on each request's own messages and seed, like a real engine should, and it
reads the words of the last user message so that paragraphs mention their topic.
"""

from __future__ import annotations

import calendar
import random
import re
from typing import Callable, Sequence

from .base import Engine, Generation, ProgressCallback, Request, Result, check_unique_keys, one_by_one

_FILLER = (
    "could help researchers move faster",
    "may change how teams build and test models",
    "raises questions about cost and access",
    "might make tools easier to use for small groups",
    "needs careful evaluation before wide use",
    "could lower the barrier for new practitioners",
    "may shift attention away from other open problems",
)
_MONTHS = calendar.month_name[1::2]  # January, March, ...
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9\-]{3,}")


def fake_text(request: Request) -> str:
    """A few plausible sentences, fixed by the request's messages and seed."""
    rng = random.Random(f"{request.seed}:{request.messages}")
    prompt = request.messages[-1].content if request.messages else ""
    if request.grammar:
        years = re.findall(r'"(\d{4})"', request.grammar) or ["2035"]
        return f"{rng.choice(_MONTHS)} {rng.choice(years)}: Progress in computing and research keeps a steady pace."
    words = _WORD.findall(prompt) or ["this", "work"]
    subject = " ".join(words[: rng.randint(2, 4)])
    sentences = [f"Work on {subject} {rng.choice(_FILLER)}."]
    for _ in range(rng.randint(2, 4)):
        sentences.append(f"The idea of {rng.choice(words).lower()} {rng.choice(_FILLER)}.")
    return " ".join(sentences)


class FakeEngine(Engine):
    name = "fake"
    # Canned text, written by tests, not sampled: there is nothing for a guard or a rollback to
    # prevent, and a config's prevention settings need no warning here.
    prevents = frozenset({"guard", "sentences", "bias"})

    def __init__(self, respond: Callable[[Request], str] = fake_text, model_name: str = "fake-model"):
        self._respond = respond
        self._model_name = model_name
        self.calls: list[list[Request]] = []

    @property
    def model_name(self) -> str:
        return self._model_name

    def generate(self, requests: Sequence[Request], progress: ProgressCallback | None = None) -> Generation:
        check_unique_keys(requests)
        self.calls.append(list(requests))
        return one_by_one(requests, self._one, progress)

    def _one(self, request: Request) -> Result:
        words = self._respond(request).split()
        finish = "length" if len(words) > request.max_tokens else "stop"
        text = " ".join(words[: request.max_tokens])
        prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        return Result(request.key, text, prompt_tokens, len(text.split()), finish)
