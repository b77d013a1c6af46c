"""What an engine derives once from its model's vocabulary, made when first asked: each token's piece
sorted for the fact guard (digest.facts.PieceTable), the tokens that end a sentence, and what each
bias adds to the logits. The batching engine and the sequential loop share it, so both lean, end and
guard by the very same tokens."""

from __future__ import annotations

from functools import cached_property
from typing import Callable

import numpy as np

from typing import TYPE_CHECKING

from .. import sentences
from ..facts import PieceTable
from ..prevention import Words

if TYPE_CHECKING:
    from ..prevention import Bias


class Vocabulary:
    def __init__(self, pieces: Callable[[], list[bytes]]):
        """`pieces`: every token's bytes, in token order (called once, when first needed)."""
        self._read = pieces
        self._biases: dict[tuple[Bias, bool], tuple[np.ndarray, np.ndarray]] = {}

    @cached_property
    def table(self) -> PieceTable:
        return PieceTable(self._read())

    @property
    def pieces(self) -> list[bytes]:
        return self.table.pieces

    @cached_property
    def words(self) -> Words:
        """The pieces a bias can lean on, sorted by word once (prevention.Words)."""
        return Words.of(self.pieces)

    @cached_property
    def enders(self) -> np.ndarray:
        """The tokens that are only the end of a sentence (digest.sentences.is_ender)."""
        return np.array([t for t, piece in enumerate(self.pieces) if sentences.is_ender(piece)], dtype=np.int64)

    def bias(self, bias: Bias, *, topic: bool) -> tuple[np.ndarray, np.ndarray]:
        """What `bias` adds to the logits: (tokens, amounts) (see `Bias.deltas`)."""
        if (bias, topic) not in self._biases:
            self._biases[bias, topic] = bias.deltas(self.pieces, topic=topic, words=self.words)
        return self._biases[bias, topic]
