"""The bench's workload: the requests of the digest `make run` writes (the bundled samples, the
default prompts, a fixed day), and prompts cut to an exact length as llama-batched-bench makes them."""

from __future__ import annotations

import dataclasses
from datetime import date

from ..config import Config
from ..engine.base import Request
from ..pipeline import judge_of, load_feeds, requests_of, select_stories, templates_of
from ..quality import Judge
from ..resources import samples_dir

BENCH_DAY = date(2026, 1, 1)


def bench_inputs(config: Config, examples: bool | None = None) -> tuple[list[Request], Judge]:
    """The requests of the digest that `make run` writes (bundled samples, default prompts), and the
    judge of their quality checks. `examples`: with or without the example exchanges (default: as
    the config says)."""
    feeds, _ = load_feeds(config, samples_dir())
    topics, _ = select_stories(config, feeds, [])
    templates = templates_of(config)
    return requests_of(config, topics, BENCH_DAY, templates, examples=examples), judge_of(config, topics, BENCH_DAY, templates)


def bench_requests(config: Config) -> list[Request]:
    return bench_inputs(config)[0]

def exact_prompt(engine, request: Request, n_tokens: int) -> Request:
    """`request` with its last message cut or padded so that its prompt is exactly `n_tokens` tokens,
    as llama-batched-bench's -npp makes them (padding: ' the', one token each)."""
    *head, last = request.messages
    words = last.content.split()

    def build(k: int, pad: int) -> Request:
        content = " ".join(words[:k]) + " the" * pad
        return dataclasses.replace(request, messages=(*head, dataclasses.replace(last, content=content)))

    lo, hi = 0, len(words)
    while lo < hi:  # the most words whose prompt still fits
        mid = (lo + hi + 1) // 2
        if len(engine.tokenize(build(mid, 0))) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    fitted = build(lo, 0)
    short = n_tokens - len(engine.tokenize(fitted))
    for pad in range(short, short + 8):
        padded = build(lo, pad)
        if len(engine.tokenize(padded)) == n_tokens:
            return padded
    return fitted
