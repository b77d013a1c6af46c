"""Token sampling in numpy, for all sequences of a decode step at once.

llama.cpp's sampler API rebuilds a candidate array of the whole vocabulary (49k entries for
SmolLM2) on every call, which cost more than a fifth of each step at a batch of 16. Here one
vectorized top-k over the step's logits matrix narrows every row to `top_k` candidates, and the rest
of the chain runs per row on those few: repetition penalty, top-p, min-p, temperature, and a draw
from the sequence's own seeded generator. A row only ever sees its own logits, so a sequence's
tokens stay independent of the batch. A request with a grammar takes its top-k among the tokens its
grammar allows (`top_k_allowed`), then the same chain.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np

from ..errors import GenerationError
from .base import Sampling



class RowSampler:
    """The sampling state of one sequence: its settings, its generator, its recent tokens."""

    def __init__(self, sampling: Sampling, seed: int):
        self.sampling = sampling
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.recent: deque[int] = deque(maxlen=max(sampling.repeat_last_n, 0) or None)

    def choose(self, tokens: np.ndarray, logits: np.ndarray) -> int:
        """Pick one of `tokens` (the row's top-k candidates) given their `logits`; remember it."""
        s = self.sampling
        logits = logits.astype(np.float64, copy=True)
        if s.repeat_penalty != 1.0 and self.recent:
            recent = set(self.recent)
            seen = np.fromiter((t in recent for t in tokens.tolist()), dtype=bool, count=len(tokens))
            logits[seen] = np.where(logits[seen] > 0, logits[seen] / s.repeat_penalty, logits[seen] * s.repeat_penalty)
        # Highest logit first; equal logits by token id, so the order never depends on the batch.
        order = np.lexsort((tokens, -logits))
        tokens, logits = tokens[order], logits[order]
        if s.temperature <= 0:
            token = int(tokens[0])
        else:
            probs = np.exp(logits - logits[0])
            probs /= probs.sum()
            keep = len(probs)
            if s.top_p < 1.0:
                keep = min(keep, int(np.searchsorted(np.cumsum(probs), s.top_p)) + 1)
            if s.min_p > 0.0:
                keep = min(keep, max(1, int(np.count_nonzero(probs >= s.min_p * probs[0]))))
            scaled = np.exp((logits[:keep] - logits[0]) / s.temperature)
            cumulative = np.cumsum(scaled)
            pick = int(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right"))
            token = int(tokens[min(pick, keep - 1)])
        self.recent.append(token)
        return token


def top_k_allowed(logits: np.ndarray, k: int, allowed: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One row's candidates for a request with a grammar: the tokens among the row's `k` best that the
    grammar (`allowed`) accepts.

    Only when none of them is allowed is the grammar shown more, in widening windows up to the whole
    vocabulary, until some are. The grammar usually checks a few dozen tokens instead of 49k, which
    cost ~9 ms a token. (Top-k before the grammar, as llama.cpp's own samplers try first.)
    """
    n_vocab = len(logits)
    window = n_vocab if k <= 0 else k
    while True:
        tokens = np.arange(n_vocab) if window >= n_vocab else np.argpartition(logits, n_vocab - window)[n_vocab - window:]
        mask = allowed(tokens)
        if mask.any():
            tokens = tokens[mask]
            return tokens, logits[tokens]
        if window >= n_vocab:
            raise GenerationError("the grammar allows no token here")
        window *= 8


def top_k_rows(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` largest logits of each row and their token ids (unordered within a row)."""
    n_vocab = logits.shape[1]
    if k <= 0 or k >= n_vocab:
        tokens = np.broadcast_to(np.arange(n_vocab), logits.shape)
        return tokens, logits
    tokens = np.argpartition(logits, n_vocab - k, axis=1)[:, n_vocab - k:]
    return tokens, np.take_along_axis(logits, tokens, axis=1)
