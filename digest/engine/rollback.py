"""The sentence machine: one row's sentences under a sentence rule (digest.prevention.SentenceRule), the
keep / undo / end decisions that both engines take the same way, each driving it with its own decode.

The batching engine (batched.py) feeds it token by token and undoes a refused sentence in the row's
own KV stream; the sequential loop (sequential.py) writes one sentence per completion and writes a
refused one again with a new completion. Either way the machine holds what the decisions depend on:
the sentences kept so far, the attempt at the sentence being written, the seed of that attempt, and
how many sentences were undone. It knows nothing of tokens, logits or the model, and is tested on its
own with scripted sentences (tests/test_sentence_machine.py).

The decisions:
- a finished sentence (`finished`) is kept when the rule finds no problem in it; when it would take a
  paragraph that is long enough already past its word limit, the paragraph ends before it ("end");
  when it fails, it is undone and written again ("undo"), until its attempts are spent: then the
  paragraph ends before it where it is long enough, else this last attempt stands ("kept"). A failing
  sentence the model ended the paragraph after (`last`) ends the paragraph before it where it is long
  enough.
- a sentence that cannot be finished (`broken`: the fact guard left it no token, it already runs past
  the sentence limit, or the model ends the paragraph inside it) is undone, or, where the paragraph is
  long enough or its attempts are spent, the paragraph ends before it;
- while a sentence is being written: whether the model may end the paragraph here (`may_end`, the hold
  to min_words), how much to lean it to its end (`lean`), whether it is a runaway already (`runaway`);
- after a kept one: whether the paragraph has all it needs (`stops`), and, out of tokens inside a
  sentence, whether it ends at its last finished one (`ends_early`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from .base import derive_seed

if TYPE_CHECKING:
    from ..prevention import SentenceRule

Verdict = Literal["kept", "undo", "end"]


class SentenceMachine:
    def __init__(self, rule: "SentenceRule", seed: int):
        """`rule`: the request's sentence rule; `seed`: the request's seed (each attempt's is derived from it)."""
        self.rule = rule
        self.seed = seed
        self.kept: list[str] = []
        self.attempt = 0  # of the sentence being written: 0 for its first try
        self.rollbacks = 0  # sentences undone

    def attempt_seed(self) -> int:
        """The seed of the attempt at the sentence being written: from the request's seed, the
        sentence's number and the attempt."""
        return derive_seed(self.seed, f"sentence {len(self.kept)} attempt {self.attempt}")

    def long_enough(self) -> bool:
        """Whether the paragraph may end after the sentences kept (it has one, and min_words)."""
        return bool(self.kept) and self.rule.long_enough(self.kept)

    # -- while a sentence is being written ---------------------------------------------------------

    def may_end(self, unfinished: str) -> bool:
        """Whether the model may end the paragraph with the sentence being written as it stands."""
        return self.rule.may_end([*self.kept, unfinished])

    def lean(self, unfinished: str) -> float:
        """How much more logit the tokens that end a sentence get (a long one is led to its end)."""
        return self.rule.end_bias(unfinished)

    def runaway(self, unfinished: str) -> bool:
        """Whether the sentence being written is already too long to pass (then it is `broken`)."""
        return self.rule.runaway(unfinished)

    # -- the decisions -----------------------------------------------------------------------------

    def finished(self, sentence: str, *, last: bool = False) -> Verdict:
        """A sentence just finished (`last`: the model ended the paragraph after it)."""
        if self.long_enough() and self.rule.too_long(sentence, self.kept):
            return "end"
        if self.rule.problem(sentence, self.kept) is None:
            self._keep(sentence)
            return "kept"
        self.attempt += 1
        if last and self.long_enough():
            return "end"
        if self.attempt >= self.rule.attempts:
            if self.long_enough():
                self.attempt = 0
                return "end"
            self._keep(sentence)
            return "kept"  # the last attempt stands
        self.rollbacks += 1
        return "undo"

    def broken(self) -> Verdict:
        """The sentence being written cannot be finished: "undo" or "end" (never "kept")."""
        self.attempt += 1
        if self.long_enough() or self.attempt >= self.rule.attempts:
            self.attempt = 0
            return "end"
        self.rollbacks += 1
        return "undo"

    def stops(self, new_paragraph: bool) -> bool:
        """After a kept sentence: whether the paragraph ends there (it has every sentence it needs, or
        the model begins a new paragraph after a long enough one: the post shows one)."""
        return self.rule.done(self.kept) or (new_paragraph and self.rule.long_enough(self.kept))

    def ends_early(self) -> bool:
        """Out of tokens inside a sentence: whether the paragraph ends at its last finished sentence
        (else the unfinished one stays, and the checks see it)."""
        return self.long_enough()

    def _keep(self, sentence: str) -> None:
        self.kept.append(sentence)
        self.attempt = 0
