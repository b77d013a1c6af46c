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
from .chat import TemplateTraits
from .thinking import split_thinking

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
    # Canned text, not sampled: it applies none of a request's prevention (a run says so).
    prevents = frozenset()

    def __init__(self, respond: Callable[[Request], str] = fake_text, model_name: str = "fake-model",
                 thinking_tokens: int = 0, thinking: bool = False):
        """`respond` may answer as a thinking model does (`<think>...</think>` first): the block is cut
        from the text as every engine cuts it, its words counted as its tokens, at most the budget of
        its template's traits (a template that cannot be told not to think: `thinking_tokens`; 0: the
        block counts against max_tokens)."""
        self._respond = respond
        self.traits = TemplateTraits(thinks=True, takes_enable_thinking=False, thinking=thinking,
                                     thinking_tokens=thinking_tokens)
        self.thinking_budget = self.traits.budget
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
        split = split_thinking(self._respond(request))
        prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        thought = (split.thought or "").split()
        if split.thought is not None:
            limit = self.thinking_budget or request.max_tokens
            if not split.closed or len(thought) + 2 > limit:
                spent = min(len(thought) + 1, limit)
                return Result(request.key, "", prompt_tokens, spent, "thinking", thinking_tokens=spent)
        thinking = len(thought) + 2 if split.thought is not None else 0  # with <think> and </think>
        room = request.max_tokens - (0 if self.thinking_budget else thinking)
        words = split.answer.split()
        finish = "length" if len(words) > room else "stop"
        text = " ".join(words[: max(room, 0)])
        return Result(request.key, text, prompt_tokens, len(text.split()) + thinking, finish, thinking_tokens=thinking)
