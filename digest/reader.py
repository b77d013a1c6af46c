"""Coherence, measured by a reader model (`digest eval --reader MODEL`): each paragraph's mean negative
log-likelihood per token under a model of another family than the writer, after a fixed neutral
one-line prefix (prompt evaluation only: every position's logits from one decode, nothing sampled).
Lower is easier to follow. Beside it, the same figure for the published posts (the reference) and for
the paragraphs with their words shuffled (the floor: the same words with no order).

An instrument of the eval only: nothing here chooses, ranks or changes any text.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ModelError
from .files import sha256_file

# What every paragraph is read after: one neutral line, the same for every text and every reader.
PREFIX = "Here is a paragraph from a blog post about machine learning.\n\n"
# Tokens of a paragraph read at most (a longer one is cut there).
MAX_TOKENS = 1024
SHUFFLE_SEED = 0  # the floor's word order: a fixed shuffle of each paragraph's words


@dataclass(frozen=True)
class Coherence:
    """Mean NLL per token (nats), averaged over paragraphs: `written` (the eval's paragraphs),
    `reference` (the published posts' paragraphs, None where none were given), `floor` (the eval's
    paragraphs, words shuffled)."""

    reader: str
    written: float
    paragraphs: int
    reference: float | None
    reference_paragraphs: int
    floor: float

    def to_dict(self) -> dict:
        return {"reader": self.reader, "nll_per_token": round(self.written, 4), "paragraphs": self.paragraphs,
                "reference": None if self.reference is None else round(self.reference, 4),
                "reference_paragraphs": self.reference_paragraphs, "floor": round(self.floor, 4)}


class Reader:
    """A reader model, loaded once; `nll(text)` is a text's mean negative log-likelihood per token."""

    def __init__(self, path: Path, *, writer: Path | None = None, threads: int = 0):
        from .engine.native import Batch, Context, Model

        path = Path(path)
        if writer is not None and Path(writer).is_file() and path.is_file() and \
                (path.resolve() == Path(writer).resolve() or sha256_file(path) == sha256_file(Path(writer))):
            raise ModelError(f"the reader model {path} is the writer itself: a reader must be another model "
                             "(of another family)")
        self.model = Model(path)
        try:
            if self.model.n_vocab <= 0 or not self.model.tokenize("a paragraph"):
                raise ModelError(f"the reader model {path} has no tokenizer")
            self.name = path.stem
            bos = self.model._model.token_bos()
            add_bos = str(self.model.metadata.get("tokenizer.ggml.add_bos_token", "true")).lower() != "false"
            self._prefix = ([bos] if add_bos and bos >= 0 else []) + self.model.tokenize(PREFIX)
            n_ctx = len(self._prefix) + MAX_TOKENS
            self.context = Context(self.model, n_ctx_seq=n_ctx, n_seq_max=1, n_batch=n_ctx,
                                   threads=threads or max(1, min(8, os.cpu_count() or 1)))
            self.batch = Batch(n_ctx)
        except BaseException:
            self.model.close()
            raise

    def nll(self, text: str) -> float | None:
        """`text`'s mean negative log-likelihood per token after PREFIX, in nats (None: no tokens)."""
        body = self.model.tokenize(text)[:MAX_TOKENS]
        if not body:
            return None
        tokens = self._prefix + body
        first = len(self._prefix) - 1  # the position whose logits predict the body's first token
        self.context.clear_sequence(0)
        self.batch.clear()
        for pos, token in enumerate(tokens):
            self.batch.add(token, pos, 0, pos >= first and pos < len(tokens) - 1)
        self.context.decode(self.batch)
        logits = self.context.logits(len(body), self.model.n_vocab)  # a view: read before the next decode
        top = logits.max(axis=1, keepdims=True)
        log_z = top[:, 0].astype(np.float64) + np.log(np.exp(logits - top).sum(axis=1, dtype=np.float64))
        chosen = logits[np.arange(len(body)), body].astype(np.float64)
        return float(np.mean(log_z - chosen))

    def mean(self, texts: Sequence[str]) -> tuple[float, int]:
        """The mean of `nll` over `texts` that have tokens, and how many they are."""
        values = [v for v in (self.nll(t) for t in texts) if v is not None]
        return (float(np.mean(values)) if values else 0.0), len(values)

    def close(self) -> None:
        for part in ("batch", "context"):
            if getattr(self, part, None) is not None:
                getattr(self, part).close()
        self.model.close()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def shuffled(text: str, seed: int = SHUFFLE_SEED) -> str:
    """`text`'s words in a fixed random order (the floor)."""
    words = text.split()
    random.Random(seed).shuffle(words)
    return " ".join(words)


def published_paragraphs(folder: Path) -> list[str]:
    """The topic paragraphs of the published posts in `folder` (*.md and *.txt, read as posts), their
    Markdown escapes undone."""
    from .check import parse_post
    from .markdown import unescape_inline

    out = []
    for path in sorted([*Path(folder).glob("*.md"), *Path(folder).glob("*.txt")]):
        post, _ = parse_post(path.read_text(encoding="utf-8"))
        if post is not None:
            out += [unescape_inline(p) for topic in post.topics for p in topic.paragraphs.values() if p.strip()]
    return out


def coherence(reader: Reader, paragraphs: Sequence[str], reference: Sequence[str] = ()) -> Coherence:
    """The coherence figures of `paragraphs` (the eval's), beside `reference` (published) and the floor."""
    written, n = reader.mean(paragraphs)
    ref, n_ref = reader.mean(reference) if reference else (None, 0)
    floor, _ = reader.mean([shuffled(p) for p in paragraphs])
    return Coherence(reader.name, written, n, ref, n_ref, floor)
