"""The numpy sampling of the batching engine, without a model."""

import numpy as np
import pytest

from digest.engine.base import Sampling
from digest.engine.sampling import RowSampler, top_k_allowed, top_k_rows
from digest.errors import GenerationError


def row(n=1000, seed=0):
    return np.random.default_rng(seed).normal(size=n).astype(np.float32)


def test_top_k_rows_are_each_rows_largest():
    logits = np.stack([row(seed=1), row(seed=2)])
    tokens, values = top_k_rows(logits, 5)
    for r in range(2):
        assert sorted(tokens[r]) == sorted(np.argsort(-logits[r])[:5])
        assert np.array_equal(values[r], logits[r][tokens[r]])


def test_grammar_candidates_are_the_allowed_among_the_top_k():
    logits = row()
    best = np.argsort(-logits)
    allowed_set = set(best[[1, 3, 50]].tolist())  # two in the top 10, one far below
    seen = []

    def allowed(tokens):
        seen.append(len(tokens))
        return np.array([t in allowed_set for t in tokens.tolist()])

    tokens, values = top_k_allowed(logits, 10, allowed)
    assert sorted(tokens.tolist()) == sorted(best[[1, 3]].tolist())
    assert np.array_equal(values, logits[tokens])
    assert seen == [10]  # the grammar was shown only the top 10, not the vocabulary


def test_grammar_candidates_widen_until_something_is_allowed():
    logits = row()
    target = int(np.argsort(-logits)[500])
    shown = []

    def allowed(tokens):
        shown.append(len(tokens))
        return tokens == target

    tokens, _ = top_k_allowed(logits, 10, allowed)
    assert tokens.tolist() == [target]
    assert shown == [10, 80, 640]


def test_grammar_that_allows_nothing_is_an_error():
    with pytest.raises(GenerationError):
        top_k_allowed(row(), 10, lambda tokens: np.zeros(len(tokens), dtype=bool))


def test_row_sampler_is_seeded_and_greedy_at_zero_temperature():
    tokens, values = np.arange(5), np.array([0.1, 2.0, 0.5, 1.9, -1.0], dtype=np.float32)
    greedy = RowSampler(Sampling(temperature=0.0), seed=1)
    assert greedy.choose(tokens, values) == 1

    def draws(seed: int) -> tuple[int, ...]:
        """Fifty draws in a row from one sampler (no repeat penalty: the same odds at every draw)."""
        sampler = RowSampler(Sampling(temperature=1.0, top_p=1.0, min_p=0.0, repeat_penalty=1.0), seed)
        return tuple(sampler.choose(tokens, values) for _ in range(50))

    assert [draws(s) for s in range(20)] == [draws(s) for s in range(20)]  # a seed gives the same run
    assert len({draws(s) for s in range(40)}) == 40  # each seed its own run
    assert all(len(set(draws(s))) > 1 for s in range(20))  # the generator moves on from draw to draw
    counts = np.bincount(np.concatenate([draws(s) for s in range(40)]), minlength=5)
    assert counts[1] > counts[2] > counts[4] and counts[3] > counts[2]  # drawn by the logits' odds


def test_repeat_penalty_lowers_recent_tokens():
    tokens, values = np.arange(3), np.array([2.0, 1.9, 0.0], dtype=np.float32)
    sampler = RowSampler(Sampling(temperature=0.0, repeat_penalty=1.5), seed=0)
    assert sampler.choose(tokens, values) == 0
    assert sampler.choose(tokens, values) == 1  # 0 was just used: 2.0 / 1.5 < 1.9


@pytest.mark.parametrize("n_vocab", [49152, 50257, 300])
@pytest.mark.parametrize("k", [1, 40, 100])
def test_top_k_rows_by_groups_finds_each_rows_largest(n_vocab, k):
    """The grouped search (only the k groups with the highest maxima) gives the same sets as a sort."""
    rng = np.random.default_rng(n_vocab + k)
    logits = (rng.normal(size=(16, n_vocab)) * 3).astype(np.float32)
    logits[3, 100:160] = 50.0  # one row whose best tokens all sit close together
    tokens, values = top_k_rows(logits, k)
    for r in range(16):
        assert sorted(values[r].tolist()) == sorted(np.sort(logits[r])[-k:].tolist())
        assert np.array_equal(logits[r][tokens[r]], values[r])
        assert len(set(tokens[r].tolist())) == k


@pytest.mark.parametrize("settings", [Sampling(), Sampling(temperature=0.0), Sampling(top_p=0.5, min_p=0.2),
                                      Sampling(temperature=1.3, top_p=1.0, min_p=0.0, repeat_penalty=1.0)])
def test_choosing_for_many_rows_at_once_equals_each_row_alone(settings):
    """choose_rows over a batch gives each row the token (and the generator state) it gets alone."""
    from digest.engine.sampling import choose_rows

    rng = np.random.default_rng(7)
    logits = (rng.normal(size=(12, 2000)) * 3).astype(np.float32)
    tokens, values = top_k_rows(logits, settings.top_k)
    together = [RowSampler(settings, seed) for seed in range(12)]
    alone = [RowSampler(settings, seed) for seed in range(12)]
    for step in range(6):
        history = rng.integers(0, 2000, size=40).tolist()
        for a, b in zip(together, alone):
            a.recent.extend(history[: step * 5])
            b.recent.extend(history[: step * 5])
        batch = choose_rows(together, tokens, values)
        singles = [alone[r].choose(tokens[r], values[r]) for r in range(12)]
        assert batch == singles
    if settings.temperature > 0:
        assert len(set(batch)) > 1
