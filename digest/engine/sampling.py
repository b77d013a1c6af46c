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
from typing import Callable, Sequence

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
        return choose_rows([self], tokens[None, :], logits[None, :])[0]


def choose_rows(samplers: Sequence[RowSampler], tokens: np.ndarray, logits: np.ndarray) -> list[int]:
    """One token for each row of candidates (`tokens`, `logits`: rows x k), every row with its own
    sampler, all rows sharing one `Sampling`: the chain of `RowSampler` as array operations over the
    rows. Each row's arithmetic is the same as alone (the same operations, in the same order, on
    that row's values only), so its token does not depend on the other rows."""
    s = samplers[0].sampling
    logits = logits.astype(np.float64, copy=True)
    if s.repeat_penalty != 1.0:
        width = max((len(r.recent) for r in samplers), default=0)
        if width:
            recent = np.full((len(samplers), width), -1, dtype=np.int64)
            for i, r in enumerate(samplers):
                recent[i, : len(r.recent)] = r.recent
            seen = (tokens[:, :, None] == recent[:, None, :]).any(axis=2)
            logits = np.where(seen, np.where(logits > 0, logits / s.repeat_penalty, logits * s.repeat_penalty), logits)
    # Highest logit first; equal logits by token id, so the order never depends on the batch.
    order = np.lexsort((tokens, -logits), axis=1)
    tokens, logits = np.take_along_axis(tokens, order, axis=1), np.take_along_axis(logits, order, axis=1)
    if s.temperature <= 0:
        chosen = tokens[:, 0].tolist()
    else:
        k = logits.shape[1]
        probs = np.exp(logits - logits[:, :1])
        probs /= probs.sum(axis=1, keepdims=True)
        keep = np.full(len(samplers), k)
        if s.top_p < 1.0:
            # searchsorted(cumsum, top_p) on each row: the count of cumulative values below top_p.
            keep = np.minimum(keep, (np.cumsum(probs, axis=1) < s.top_p).sum(axis=1) + 1)
        if s.min_p > 0.0:
            keep = np.minimum(keep, np.maximum(1, (probs >= s.min_p * probs[:, :1]).sum(axis=1)))
        scaled = np.exp((logits - logits[:, :1]) / s.temperature)
        scaled[np.arange(k)[None, :] >= keep[:, None]] = 0.0
        cumulative = np.cumsum(scaled, axis=1)
        total = cumulative[np.arange(len(samplers)), keep - 1]
        draws = np.array([r.rng.random() for r in samplers]) * total
        # searchsorted(..., side="right") on each row's kept part: the count of values <= the draw.
        picks = np.minimum((cumulative <= draws[:, None]).sum(axis=1), keep - 1)
        chosen = tokens[np.arange(len(samplers)), picks].tolist()
    for r, token in zip(samplers, chosen):
        r.recent.append(token)
    return [int(t) for t in chosen]


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


GROUPS_OF = 64  # top-k by groups: the k best tokens lie in the k groups with the highest maxima


def top_k_rows(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` largest logits of each row and their token ids (unordered within a row).

    A partition over the whole vocabulary (49k) of every row cost ~0.5 ms a row. Instead each row's
    tokens are dealt into groups of 64 (token t into group t mod G), and only the k groups with the
    highest maxima are searched: each of the row's k best tokens is at most its group's maximum, so
    it lies in one of those groups. The group maxima are one elementwise maximum over 64 slices of
    the row. Each row is narrowed on its own: its candidates never depend on the other rows."""
    rows, n_vocab = logits.shape
    if k <= 0 or k >= n_vocab:
        tokens = np.broadcast_to(np.arange(n_vocab), logits.shape)
        return tokens, logits
    groups = -(-n_vocab // GROUPS_OF)
    if groups <= k or rows == 0:
        tokens = np.argpartition(logits, n_vocab - k, axis=1)[:, n_vocab - k:]
        return tokens, np.take_along_axis(logits, tokens, axis=1)
    if n_vocab % GROUPS_OF:
        padded = np.full((rows, groups * GROUPS_OF), -np.inf, dtype=logits.dtype)
        padded[:, :n_vocab] = logits
    else:
        padded = logits
    # dealt[r, i, g] is token i * groups + g; the maximum over i is one pass of elementwise maxima.
    maxima = np.maximum.reduce(padded.reshape(rows, GROUPS_OF, groups), axis=1)
    best = np.argpartition(maxima, groups - k, axis=1)[:, groups - k:]
    ids = (np.arange(GROUPS_OF)[None, :, None] * groups + best[:, None, :]).reshape(rows, GROUPS_OF * k)
    # (one `take` on the flat matrix, each row's ids offset by its start: faster than numpy's fancy
    # indexing over the whole matrix, and than a take row by row)
    flat = np.ascontiguousarray(padded).reshape(-1)
    within = flat.take(ids + (np.arange(rows) * padded.shape[1])[:, None])
    pick = np.argpartition(within, GROUPS_OF * k - k, axis=1)[:, GROUPS_OF * k - k:]
    return np.take_along_axis(ids, pick, axis=1), np.take_along_axis(within, pick, axis=1)
