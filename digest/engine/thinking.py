"""Reasoning blocks of thinking models (Qwen3, SmolLM3, DeepSeek-R1 distills): `<think>...</think>`
before the answer. Every engine returns only the answer as a Result's text; the block's length is
counted apart (`Result.thinking_tokens`), and a block still open when its budget ran out is the
finish reason "thinking" with no text at all, never a paragraph of reasoning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .chat import THINK_CLOSE, THINK_OPEN

_BLOCK = re.compile(re.escape(THINK_OPEN) + r".*?" + re.escape(THINK_CLOSE), re.DOTALL)


@dataclass(frozen=True)
class Split:
    answer: str
    thought: str | None  # the block's text; None when there was none
    closed: bool = True  # False: the block never ended (the answer is then empty)


def split_thinking(text: str, *, inside: bool = False) -> Split:
    """The answer of a generated `text` and its reasoning block, if any.

    `inside`: the prompt itself opened the block (the text starts in it, with no `<think>`). A block
    may only open the text (after white space); any later complete block is cut out too, and a
    `<think>` never closed cuts the answer there."""
    body = text
    if not inside:
        stripped = text.lstrip()
        if not stripped.startswith(THINK_OPEN):
            return Split(_without_blocks(text), None)
        body = stripped[len(THINK_OPEN):]
    end = body.find(THINK_CLOSE)
    if end < 0:
        return Split("", body, closed=False)
    return Split(_without_blocks(body[end + len(THINK_CLOSE):]).lstrip(), body[:end])


def _without_blocks(text: str) -> str:
    text = _BLOCK.sub("", text)
    at = text.find(THINK_OPEN)
    return text[:at] if at >= 0 else text


class ThinkingState:
    """Where one sequence is, token by token: before any text ("maybe" a block comes), in a block, or
    in the answer; how many tokens the block took. For an engine that samples token by token."""

    def __init__(self, inside: bool = False):
        self.inside = inside
        self.mode = "think" if inside else "maybe"
        self.thinking_tokens = 0

    def update(self, text: str, tokens: int) -> None:
        """After a token: `text` is everything generated so far, `tokens` how many tokens that is."""
        if self.mode == "maybe":
            stripped = text.lstrip()
            if stripped.startswith(THINK_OPEN):
                self.mode = "think"
            elif stripped and not THINK_OPEN.startswith(stripped):
                self.mode = "answer"
        if self.mode == "think":
            self.thinking_tokens = tokens
            if THINK_CLOSE in text:
                self.mode = "answer"

    @property
    def in_block(self) -> bool:
        return self.mode == "think"
