"""The engine interface, run against the fake, the sequential and the batching engine, and the
batching engine's own guarantees (batch invariance, continuous batching) with the real model."""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import date

import pytest

from digest.config import Config, Prevention
from digest.engine import create_engine
from digest.engine.base import Message, Request, Sampling, derive_seed
from digest.engine.batched import common_prefix, repetition_start
from digest.engine.llama import no_extra_buffers
from digest.errors import GenerationError
from digest.feeds import read_feed_file
from digest.resources import samples_dir
from digest.pipeline import judge_of, protect
from digest.prevention import bias
from digest.prompts import Templates, build_requests
from digest.select import pick

MODEL = Config().model_path
SMALL = 24  # tokens per request: enough to diverge, short enough for a fast suite


def sample_requests(max_tokens: int = SMALL, seed: int = 42, examples: bool = False, protected: bool = False) -> list[Request]:
    """The sample digest's 14 requests; without the example exchanges unless asked (the engine's
    guarantees do not depend on them, and 600 more prompt tokens a call would slow the suite).
    `protected`: with the fact guard and the sentence rule a run gives them (digest.pipeline.protect)."""
    topics = pick(read_feed_file(samples_dir(), "topics").entries, 6)
    day, templates = date(2026, 11, 23), Templates.load(Config().prompts_path)
    requests = build_requests(topics, day, templates, run_seed=seed, max_tokens=max_tokens, sampling=Sampling(),
                              examples=examples)
    if protected:
        requests = protect(requests, judge_of(Config(), topics, day, templates), Prevention(guard=True, sentence_attempts=4))
    return requests


def generate_at_slots(engine, requests, slots: int):
    """`engine.generate(requests)` with `slots` sequences decoded at once; a shared engine's slots go back
    to all afterwards."""
    engine.slots = slots
    engine.forget()  # every prompt decoded in this run, none put back from an earlier one
    try:
        return engine.generate(requests)
    finally:
        engine.slots = 0


def fresh(engine, requests):
    """`engine.generate(requests)` with every prompt decoded, none put back from an earlier run (the
    invariance tests compare decodes; tests/test_engine.py's kept-prompt tests compare the two)."""
    engine.forget()
    return engine.generate(requests)


class EverySentenceKept:
    """A sentence rule that takes any finished sentence, refuses one past `words` words while it is
    still being written, and tries a sentence three times; the model may end the paragraph anywhere."""

    attempts = 3

    def __init__(self, words: int = 10_000):
        self.words = words

    def problem(self, sentence, before):
        return None

    def long_enough(self, before):
        return False

    def may_end(self, before):
        return True

    def too_long(self, sentence, before):
        return False

    def done(self, before):
        return False

    def runaway(self, unfinished):
        return len(unfinished.split()) > self.words

    def end_bias(self, unfinished):
        return 0.0


class OddWordsRefused(EverySentenceKept):
    """A sentence rule for tests: a sentence of an odd number of words is written again (twice at most)."""

    def problem(self, sentence, before):
        return "odd" if len(sentence.split()) % 2 else None


def sixteen_requests() -> list[Request]:
    base = sample_requests()
    extra = [dataclasses.replace(r, key=f"{r.key}#again", seed=derive_seed(r.seed, "again")) for r in base[:2]]
    return base + extra


@pytest.fixture
def batched(batched_engine):
    return batched_engine


@pytest.fixture(scope="module")
def sequential_engine():
    """The embedded model in the sequential engine, loaded once for this module (it resets its
    context for every request, so one test's requests leave nothing for the next)."""
    with create_engine("sequential", MODEL) as engine:
        yield engine


@pytest.fixture
def real(name, request):
    """The real engine of a test parametrized by `name` ("batched" or "sequential"), loaded once."""
    return request.getfixturevalue(f"{name}_engine")


@pytest.fixture(scope="module", params=["fake", pytest.param("sequential", marks=pytest.mark.model),
                                        pytest.param("batched", marks=pytest.mark.model)])
def engine(request):
    if request.param != "fake":
        yield request.getfixturevalue(f"{request.param}_engine")
        return
    with create_engine(request.param, MODEL) as engine:
        yield engine


# -- the contract, for every engine -----------------------------------------------------------

def test_results_come_back_in_request_order_with_counts(engine):
    requests = sample_requests()[:5]
    seen = []
    started = time.perf_counter()
    generation = engine.generate(requests, seen.append)
    outside = time.perf_counter() - started
    assert [r.key for r in generation.results] == [r.key for r in requests]
    for request, result in zip(requests, generation.results):
        assert result.text.strip(), request.key
        assert 0 < result.completion_tokens <= request.max_tokens
        assert result.prompt_tokens > 0
        assert result.finish_reason in ("stop", "length", "repeat")
    stats = generation.stats
    assert stats.requests == 5
    assert stats.completion_tokens == sum(r.completion_tokens for r in generation.results)
    assert stats.prompt_tokens == sum(r.prompt_tokens for r in generation.results)
    assert 0 < stats.prompt_tokens_decoded <= stats.prompt_tokens
    assert seen[-1].elapsed <= stats.wall_seconds <= outside  # the whole generation, in seconds
    assert seen and seen[-1].done == seen[-1].total == 5
    assert [p.done for p in seen] == sorted(p.done for p in seen)


def test_empty_request_list(engine):
    generation = engine.generate([])
    assert generation.results == [] and generation.stats.completion_tokens == 0


def test_duplicate_keys_are_refused(engine):
    request = sample_requests()[0]
    with pytest.raises(ValueError, match="duplicate"):
        engine.generate([request, dataclasses.replace(request, seed=1)])


def test_same_seed_same_text_other_seed_other_text(engine):
    request = sample_requests()[0]
    first = engine.generate([request]).results[0].text
    again = engine.generate([request]).results[0].text
    other = engine.generate([dataclasses.replace(request, seed=request.seed + 1)]).results[0].text
    assert first == again
    assert other != first


def test_token_limit(engine):
    request = dataclasses.replace(sample_requests()[0], max_tokens=5)
    result = engine.generate([request]).results[0]
    assert result.completion_tokens <= 5
    if engine.name != "fake":
        assert result.completion_tokens == 5 and result.finish_reason == "length"


# -- the batching engine ------------------------------------------------------------------------

@pytest.mark.model
def test_batch_invariance_alone_in_4_and_in_16(batched):
    """A request's tokens do not depend on what else is in the batch."""
    requests = sixteen_requests()
    in_16 = batched.generate(requests).by_key()
    in_4 = fresh(batched, requests[4:8]).by_key()
    for request in requests[4:8]:
        alone = fresh(batched, [request]).results[0]
        assert alone.text == in_4[request.key].text == in_16[request.key].text, request.key
        assert alone.completion_tokens == in_16[request.key].completion_tokens


@pytest.mark.model
def test_more_requests_than_slots_all_complete_each_as_alone(batched):
    requests = sample_requests()  # 14 requests
    assert len(requests) == 14
    full = batched.generate(requests).by_key()
    three = generate_at_slots(batched, requests, 3)
    assert [r.key for r in three.results] == [r.key for r in requests]
    for result in three.results:
        assert result.text == full[result.key].text, result.key
    for request in requests[:3]:
        assert fresh(batched, [request]).results[0].text == full[request.key].text


@pytest.mark.model
def test_shared_prefix_is_decoded_once(batched):
    requests = sample_requests(examples=True)
    stats = batched.generate(requests).stats
    # The system prompt is shared by all 14 and each topic's text by its two sections.
    assert stats.prompt_tokens_decoded < stats.prompt_tokens * 0.6


@pytest.mark.model
def test_stop_string_ends_the_text(batched):
    base = dataclasses.replace(sample_requests()[0], max_tokens=60)
    full = batched.generate([base]).results[0].text
    words = full.split()
    assert len(words) > 6
    stop = " " + words[4]
    stopped = batched.generate([dataclasses.replace(base, stop=(stop,))]).results[0]
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text
    assert full.startswith(stopped.text)


@pytest.mark.model
def test_repetition_guard_ends_a_loop(batched):
    looping = Request(
        key="loop",
        messages=(Message("user", "List the numbers 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 and continue the list"),),
        seed=1, max_tokens=200, sampling=Sampling(temperature=0.0, repeat_penalty=1.0),
    )
    result = batched.generate([looping]).results[0]
    assert result.finish_reason == "repeat"
    assert result.completion_tokens < 200
    assert result.text.strip(), "the loop's first occurrence is kept"


def test_repetition_start():
    assert repetition_start([1, 2, 3, 4, 5, 6, 7, 8, 9]) is None
    assert repetition_start([9] * 30) is not None
    loop = [5, 6, 7, 8]
    tokens = [1, 2, 3] + loop * 6
    assert repetition_start(tokens) == 3 + 4  # the first occurrence of the loop is kept
    assert repetition_start([1, 2] + loop * 2) is None  # two times is not yet a loop


@pytest.mark.model
def test_request_too_long_for_the_context_fails_before_decoding():
    with create_engine("batched", MODEL, n_ctx=256) as engine:
        request = sample_requests(max_tokens=200)[3]
        with pytest.raises(GenerationError, match=r"request 'ramifications:How do you.*' needs .*--ctx"):
            engine.generate([request])


def test_the_k_cache_formats_are_llama_cpp_own_types():
    """engine/cache_types.py names ggml's types by number (the config reads it without llama.cpp)."""
    import llama_cpp

    from digest.engine.cache_types import CACHE_TYPES

    assert CACHE_TYPES["q8_0"][0] == llama_cpp.GGML_TYPE_Q8_0 and CACHE_TYPES["f16"][0] == llama_cpp.GGML_TYPE_F16


@pytest.mark.model
def test_the_k_cache_format_reaches_llama_cpp(batched):
    """[model] cache_type_k is what llama.cpp stores: a sequence's saved state (its K and V cells) is
    smaller in q8_0 than in f16 by what the bytes per value say, and the engine sizes its cache so."""
    import llama_cpp

    from digest.engine.native import CACHE_TYPES, Batch, Context

    prompt = batched.tokenize(sample_requests()[0])[:64]
    sizes = {}
    for kind in CACHE_TYPES:
        context, batch = Context(batched._model, n_ctx_seq=256, n_seq_max=1, n_batch=64, threads=batched.threads,
                                 cache_type_k=kind), Batch(64)
        try:
            for pos, token in enumerate(prompt):
                batch.add(token, pos, 0, pos == len(prompt) - 1)
            context.decode(batch)
            sizes[kind] = llama_cpp.llama_state_seq_get_size(context.ptr, 0)
        finally:
            batch.close()
            context.close()
    # 64 cells x 30 layers x 3 heads x 64 values of K: 2 bytes each in f16, 34/32 in q8_0
    assert sizes["f16"] - sizes["q8_0"] == 64 * 30 * 3 * 64 * (2 - 34 / 32), sizes
    requests = sample_requests()
    q8 = batched.kv_cache_bytes(requests)
    batched.cache_type_k = "f16"
    try:
        assert batched.kv_cache_bytes(requests) / q8 == pytest.approx(4 / (2 + 34 / 32))
    finally:
        batched.cache_type_k = "q8_0"
    with pytest.raises(ValueError, match="q4_0"):
        create_engine("batched", MODEL, cache_type_k="q4_0")


@pytest.mark.model
def test_an_interrupt_that_lands_in_the_log_callback_stops_the_decode(batched, monkeypatch):
    """llama.cpp calls our log callback thousands of times a run; a Ctrl-C raised in it would be
    printed and dropped by ctypes. It is kept, and raised as soon as llama_decode returns."""
    from digest import llama_log
    from digest.interrupts import forget_interrupts

    calls = []

    def interrupted(level, text):
        calls.append(level)
        if len(calls) == 1:
            raise KeyboardInterrupt()

    monkeypatch.setattr(llama_log, "_take_log", interrupted)
    forget_interrupts()
    with pytest.raises(KeyboardInterrupt):
        batched.generate(sample_requests()[:2])
    assert calls, "llama.cpp never called the log callback"
    monkeypatch.undo()
    assert batched.generate(sample_requests()[:1]).results[0].text  # nothing left over


@pytest.mark.model
def test_grammar_constrains_the_text(batched):
    requests = [r for r in sample_requests(max_tokens=40) if r.grammar]
    assert len(requests) == 2
    for result in batched.generate(requests).results:
        month, _, rest = result.text.partition(" ")
        assert month in {"January", "February", "March", "April", "May", "June", "July", "August",
                         "September", "October", "November", "December"}, result.text
        assert int(rest[:4]) > 2026, result.text


# -- the batching engine against llama.cpp itself, and its invariance in harder batches -------------

GREEDY = Sampling(temperature=0.0, repeat_penalty=1.0)
TIE = 0.01  # top-two logits closer than this: a numerical tie, where either token is right


def _llama_cpp_python_greedy(llm, prompt: list[int], max_tokens: int, grammar: str | None) -> list[int]:
    """llama-cpp-python's own greedy generation of a token prompt (its sampler chain, its decode loop)."""
    import llama_cpp
    from llama_cpp import LlamaGrammar

    out: list[int] = []
    g = LlamaGrammar.from_string(grammar, verbose=False) if grammar else None
    llm.reset()  # no reuse of the previous prompt's cached prefix: this prompt, decoded whole
    for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True, grammar=g):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
        out.append(token)
        if len(out) >= max_tokens:
            break
    return out


def _top_two_gap(llm, tokens: list[int]) -> float:
    """The gap between the two largest logits that follow `tokens`, as llama-cpp-python computes them."""
    import numpy as np

    llm.reset()
    llm.eval(tokens)
    logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
    first, second = np.sort(logits)[-2:][::-1]
    return float(first - second)


@pytest.mark.model
def test_greedy_tokens_equal_llama_cpp_python_for_every_sample_prompt(batched):
    """At temperature 0 the batching engine at one slot gives llama-cpp-python's own greedy tokens for
    7 of the 14 sample prompts (Benefits and Ramifications of other topics, both predictions; 64 tokens each: the invariance
    tests below go to the full 160); where they part, the first difference is a numerical tie."""
    import llama_cpp

    from digest.engine.native import CACHE_TYPES

    requests = [dataclasses.replace(r, sampling=GREEDY) for r in sample_requests(max_tokens=64)]
    requests = [requests[i] for i in (0, 3, 4, 7, 8, 12, 13)]
    ours = generate_at_slots(batched, requests, 1).results
    prompts = [batched.tokenize(r) for r in requests]
    n_ctx = max(len(p) for p in prompts) + 160 + 8
    with no_extra_buffers():  # as the engines load it
        llm = llama_cpp.Llama(model_path=str(MODEL), n_ctx=n_ctx, n_batch=512, n_threads=batched.threads,
                              n_threads_batch=batched.threads, flash_attn=False, verbose=False,
                              type_k=CACHE_TYPES[batched.cache_type_k][0])
    same = ties = 0
    try:
        for request, prompt, result in zip(requests, prompts, ours):
            theirs = _llama_cpp_python_greedy(llm, prompt, request.max_tokens, request.grammar)
            mine = list(result.tokens)
            if result.finish_reason == "repeat":
                theirs = theirs[: len(mine)]  # our repetition guard ended a loop that theirs runs on
            if mine == theirs:
                same += 1
                continue
            at = common_prefix(mine, theirs)
            gap = _top_two_gap(llm, prompt + mine[:at])
            assert gap < TIE, (f"{request.key}: tokens part at {at} of {len(mine)}/{len(theirs)} "
                               f"with top-two logits {gap:.4f} apart (not a tie)")
            ties += 1
    finally:
        llm.close()
    print(f"\ngreedy fidelity: {same} of {len(requests)} identical, {ties} parted at a tie")
    assert same + ties == len(requests)


@pytest.mark.model
def test_batch_invariance_with_identical_prompts(batched):
    """Tries of one section (what --candidates makes): the same prompt with other seeds, in one batch."""
    base = sample_requests(max_tokens=40)[0]
    tries = [dataclasses.replace(base, key=f"try{n}", seed=derive_seed(base.seed, f"try{n}")) for n in range(4)]
    together = batched.generate(tries).results
    for request, result in zip(tries, together):
        assert fresh(batched, [request]).results[0].tokens == result.tokens, request.key
    assert len({r.tokens for r in together}) > 1, "other seeds, other texts"


@pytest.mark.model
def test_a_retry_puts_its_prompt_back_and_writes_what_a_decode_of_it_writes(batched):
    """A run's prompts are kept with its context (BatchedEngine._keep): a later run of the same prompts
    with other seeds (a section's retry, as pipeline.generate's rounds make it) decodes none of them,
    in the larger context of the run before, and writes, rollbacks and all, the tokens that a decode of
    them in a context of their own writes; a run with some prompts kept and some not, likewise."""
    requests = [dataclasses.replace(r, bias=b) for r, b in zip(
        sample_requests(max_tokens=40, protected=True), _biases())][:5]
    assert fresh(batched, requests).stats.prompt_tokens_kept == 0
    retries = [dataclasses.replace(r, key=f"{r.key} #1", seed=derive_seed(r.seed, "retry")) for r in requests[1:4]]
    kept = batched.generate(retries)
    assert kept.stats.prompt_tokens_decoded == 0
    assert kept.stats.prompt_tokens_kept == kept.stats.prompt_tokens == sum(len(batched.tokenize(r)) for r in retries)
    decoded = fresh(batched, retries)
    assert decoded.stats.prompt_tokens_kept == 0 and decoded.stats.prompt_tokens_decoded > 0
    assert [(r.tokens, r.rollbacks) for r in kept.results] == [(r.tokens, r.rollbacks) for r in decoded.results]
    assert sum(r.rollbacks for r in kept.results) > 0, "sentences were undone in the streams put back"
    # one prompt kept (the last run's), one not
    mixed = [dataclasses.replace(retries[0], key="again", seed=derive_seed(retries[0].seed, "again")), requests[4]]
    half = batched.generate(mixed)
    assert half.stats.prompt_tokens_kept == len(batched.tokenize(retries[0])) and half.stats.prompt_tokens_decoded > 0
    assert [r.tokens for r in half.results] == [r.tokens for r in fresh(batched, mixed).results]
    # a run keeps its own prompts only: requests[2]'s, kept by the run of `retries`, went with `mixed`'s
    assert batched.generate(retries[1:2]).stats.prompt_tokens_kept == 0


@pytest.mark.model
def test_a_run_stopped_halfway_keeps_nothing(batched):
    """A run that raises (here its progress callback, as a Ctrl-C would) leaves no context and no prompt
    kept: the next run of the same prompts decodes them all."""
    requests = sample_requests(max_tokens=8)[:2]
    fresh(batched, requests)

    class Stop(Exception):
        pass

    def stop(progress):
        raise Stop

    with pytest.raises(Stop):
        batched.generate([dataclasses.replace(r, seed=r.seed + 1) for r in requests], stop)
    again = batched.generate(requests).stats
    assert again.prompt_tokens_kept == 0 and again.prompt_tokens_decoded > 0


@pytest.mark.model
def test_batch_invariance_when_sequences_end_at_very_different_steps(batched):
    """Short and long requests in one batch on few slots: finished slots are compacted and refilled
    while others run, and no text changes."""
    base = sample_requests(max_tokens=160, protected=True)
    limits = [3, 160, 7, 90, 2, 160, 30, 5]
    requests = [dataclasses.replace(r, max_tokens=n) for r, n in zip(base, limits)]
    mixed = generate_at_slots(batched, requests, 4).results
    assert max(r.completion_tokens for r in mixed) > 5 * min(r.completion_tokens for r in mixed)
    assert sum(r.rollbacks for r in mixed) > 0, "sentences were undone and written again meanwhile"
    for request, result in zip(requests, mixed):
        alone = fresh(batched, [request]).results[0]
        assert (alone.tokens, alone.rollbacks, alone.sampled_tokens) == (result.tokens, result.rollbacks,
                                                                          result.sampled_tokens), request.key


@pytest.mark.model
def test_full_160_token_outputs_are_batch_invariant(batched):
    base = sample_requests(max_tokens=160)[:3]
    requests = [dataclasses.replace(r, ignore_eos=True) for r in base]
    together = batched.generate(requests).results
    assert all(r.completion_tokens == 160 for r in together)
    for request, result in zip(requests, together):
        assert fresh(batched, [request]).results[0].tokens == result.tokens, request.key


@pytest.mark.model
def test_guarded_paragraphs_with_rollback_are_the_same_at_slots_1_and_16(batched):
    """Sections of the sample digest as a run makes them (guard, sentence rule, point and topic
    biases, without the example exchanges; three topics and a prediction, 120 tokens), at --slots 1
    and all at once: sentences are undone and written again in both, and every text is the same."""
    requests = [dataclasses.replace(r, bias=b) for r, b in zip(
        sample_requests(max_tokens=120, protected=True), _biases())]
    requests = requests[:6] + requests[-1:]
    together = batched.generate(requests)
    one = generate_at_slots(batched, requests, 1)
    assert together.stats.rollbacks > 0 and together.stats.sampled_tokens > together.stats.completion_tokens
    for a, b in zip(together.results, one.results):
        assert (a.tokens, a.rollbacks) == (b.tokens, b.rollbacks), a.key


@pytest.mark.model
def test_the_phase_timers_cover_every_part_of_a_run_and_add_up_to_at_most_its_wall_time(batched):
    """The batching engine's own per-phase timers (engine.timing): a run with the guard, the sentence
    rule and the biases, watched by a progress callback, records each phase it went through, every
    one at least 0, and together at most the run's wall time (each phase's own seconds: a span inside
    another is not counted twice). Merged over two runs (a retry round), they add up."""
    from digest.engine.timing import PHASES

    requests = [dataclasses.replace(r, bias=b) for r, b in zip(
        sample_requests(max_tokens=32, protected=True), _biases())]
    requests = requests[:3] + requests[-1:]
    seen = []
    started = time.perf_counter()
    stats = batched.generate(requests, seen.append).stats
    outside = time.perf_counter() - started
    phases = stats.phases
    assert set(phases) <= set(PHASES)
    for name in ("setup", "vocabulary", "decode", "batch", "kv", "bias", "topk", "guard", "sample",
                 "advance", "progress"):
        assert phases.get(name, 0.0) > 0.0, (name, phases)
    assert phases.get("prompt", 0.0) > 0.0 or phases.get("kept", 0.0) > 0.0, phases  # decoded, or put back
    if stats.rollbacks:
        assert phases["rollback"] > 0.0
    assert all(seconds >= 0.0 for seconds in phases.values()), phases
    assert sum(phases.values()) <= stats.wall_seconds <= outside
    assert stats.other_seconds == pytest.approx(stats.wall_seconds - sum(phases.values()))
    # llama_decode is most of a run's time even with every prevention on (docs/speed.md)
    llama = ("decode", "tail", "prompt")
    assert sum(phases.get(k, 0.0) for k in llama) > max(v for k, v in phases.items() if k not in llama)
    again = batched.generate(requests[:2]).stats
    total = dataclasses.replace(stats, phases=dict(stats.phases))
    total.merge(again)
    assert total.phases["decode"] == pytest.approx(phases["decode"] + again.phases["decode"])
    assert sum(total.phases.values()) <= total.wall_seconds
    assert batched.generate([]).stats.phases == {} and batched.generate([]).stats.other_seconds == 0.0


@pytest.mark.model
def test_more_sequences_than_llama_cpp_allows_run_in_waves(batched):
    """llama.cpp caps a context at 256 sequences; 300 requests run in waves instead of failing."""
    from digest.engine.native import MAX_SEQUENCES

    requests = [Request(key=f"r{n}", messages=(Message("user", f"Say the number {n}."),), seed=n, max_tokens=8,
                        sampling=Sampling(), sentences=OddWordsRefused()) for n in range(300)]
    assert len(requests) > MAX_SEQUENCES
    results = batched.generate(requests).results
    assert [r.key for r in results] == [r.key for r in requests]
    assert all(r.completion_tokens >= 1 for r in results)
    assert sum(r.rollbacks for r in results) > 0
    for n in (0, 255, 299):
        alone = fresh(batched, [requests[n]]).results[0]
        assert (alone.tokens, alone.rollbacks) == (results[n].tokens, results[n].rollbacks)


def test_repeat_guard_agrees_with_repetition_start_token_by_token():
    import random

    from digest.engine.batched import RepeatGuard

    rng = random.Random(0)
    for _ in range(400):
        alphabet = rng.choice([2, 3, 7, 50])
        pattern = [rng.randrange(alphabet) for _ in range(rng.randint(1, 50))]
        guard, tokens = RepeatGuard(), []
        for i in range(rng.randint(1, 160)):
            token = pattern[i % len(pattern)] if rng.random() < 0.85 else rng.randrange(alphabet)
            tokens.append(token)
            assert guard.push(token) == (repetition_start(tokens) is not None)


def test_a_signal_during_a_native_call_is_raised_when_it_returns():
    """The CLI's handlers raise at once in Python code, but inside a llama.cpp call only note the
    interrupt: raised from a native callback, ctypes would print a traceback and drop it."""
    from digest.errors import Terminated
    from digest.interrupts import IN_NATIVE, forget_interrupts, interrupt_now_or_later

    forget_interrupts()
    with pytest.raises(KeyboardInterrupt):
        interrupt_now_or_later(KeyboardInterrupt())
    reached = []
    with pytest.raises(Terminated):
        with IN_NATIVE:
            interrupt_now_or_later(Terminated())  # as if the handler ran in llama.cpp's log callback
            reached.append("the native call went on")
    assert reached == ["the native call went on"]
    # Raised once: a later native call ends without it, and outside llama.cpp an interrupt is raised
    # at once again (not noted for a native call that is over).
    with IN_NATIVE:
        reached.append("a later native call")
    assert reached == ["the native call went on", "a later native call"]
    with pytest.raises(KeyboardInterrupt):
        interrupt_now_or_later(KeyboardInterrupt())
    with IN_NATIVE:
        pass


def _biases():
    """The point and topic biases a run with the default settings gives each of the sample digest's
    requests."""
    topics = pick(read_feed_file(samples_dir(), "topics").entries, 6)
    day, templates = date(2026, 11, 23), Templates.load(Config().prompts_path)
    judge = judge_of(Config(), topics, day, templates)
    g = Config().generation
    return [bias(judge.sections[r.key].kind, judge.sections[r.key].title, g.point_bias, g.topic_bias)
            for r in sample_requests()]


@pytest.mark.model
@pytest.mark.parametrize("name", ["batched", "sequential"])
def test_a_guarded_paragraph_names_and_numbers_only_what_its_story_gives(name, real):
    """The same rule in both real engines: with the guard and the sentence rule, every finished name
    and number of each paragraph is one its story gives (tests/test_facts.py tries the rule itself)."""
    from digest.facts import names, numbers_of
    from digest.text import complete_sentences

    requests = [r for r in sample_requests(max_tokens=100, examples=True, protected=True) if not r.grammar][:3]
    results = real.generate(requests).results
    for request, result in zip(requests, results):
        assert result.text.strip(), request.key
        guard, text = request.guard, complete_sentences(result.text)  # the last word may be unfinished
        for number in numbers_of(text):
            assert number in guard.numbers, (request.key, number, result.text)
        for found in names(text):
            assert guard.name_ok(found, partial=False), (request.key, found, result.text)
        assert result.sampled_tokens >= result.completion_tokens


def _ends_a_sentence_or_is_empty(text: str) -> bool:
    return not text.strip() or text.rstrip()[-1] in ".!?\"'”’)]"


@pytest.mark.model
@pytest.mark.parametrize("name", ["batched", "sequential"])
def test_a_sentence_the_guard_leaves_no_way_on_is_undone_never_left_half_written(name, real, monkeypatch):
    """Where the fact guard allows no token of the vocabulary (here: none once the paragraph has four
    words), the sentence is undone and written again; when its attempts are spent the paragraph ends
    before it. Never an exception, never half a sentence."""
    import numpy as np

    from digest.facts import GuardState

    monkeypatch.setattr(GuardState, "mask", lambda self, tokens, table: np.full(
        len(tokens), len(self.text.split()) < 4, dtype=bool))
    requests = [dataclasses.replace(r, sentences=EverySentenceKept(), bias=None)
                for r in sample_requests(max_tokens=60, protected=True) if not r.grammar][:3]
    results = real.generate(requests).results
    for result in results:
        assert len(result.text.split()) <= 4 and _ends_a_sentence_or_is_empty(result.text), result
        assert result.rollbacks >= 1 and result.sampled_tokens > result.completion_tokens, result


@pytest.mark.model
def test_a_sentence_past_the_limit_is_undone_while_it_is_written_the_same_in_any_batch(batched):
    """A sentence rule's `runaway` refuses a sentence the moment it is too long (here: 12 words), not at
    its end; what a sequence writes is still the same alone and beside others."""
    requests = [dataclasses.replace(r, sentences=EverySentenceKept(words=12))
                for r in sample_requests(max_tokens=80, protected=True) if not r.grammar][:4]
    together = batched.generate(requests).results
    assert sum(r.rollbacks for r in together) > 0
    for request, result in zip(requests, together):
        for sentence in re.split(r"(?<=[.!?])\s+", result.text.strip()):
            assert len(sentence.split()) <= 12, result
        assert fresh(batched, [request]).results[0].tokens == result.tokens, request.key


def _first_sentence_and_rest(text: str) -> tuple[str, str]:
    parts = re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


@pytest.mark.model
@pytest.mark.parametrize("name", ["batched", "sequential"])
def test_the_topic_lean_begins_at_a_paragraphs_second_sentence(name, real):
    """A topic bias leans toward its words from the paragraph's second sentence on: with an
    overwhelming lean toward "water", the first sentence is the model's own and the rest is water;
    without the lean there is none."""
    from digest.prevention import Bias

    requests = [dataclasses.replace(r, sentences=EverySentenceKept(), max_tokens=100)
                for r in sample_requests(protected=True) if not r.grammar][:1]
    leaning = [dataclasses.replace(r, bias=Bias(topic=("water",), topic_amount=30.0)) for r in requests]
    plain = [dataclasses.replace(r, bias=None) for r in requests]
    leant, free = real.generate(leaning).results, real.generate(plain).results
    for with_lean, without in zip(leant, free):
        first, rest = _first_sentence_and_rest(with_lean.text)
        assert rest and "water" not in first.lower() and "water" in rest.lower(), with_lean.text
        assert "water" not in without.text.lower(), without.text


@pytest.mark.model
@pytest.mark.parametrize("name, which", [("batched", slice(3, 5)), ("sequential", slice(2, 3))])
def test_a_paragraph_is_not_ended_before_it_is_long_enough(name, which, real):
    """Under a sentence rule that holds to `min_words`, the model's end of text is refused until the
    paragraph has the rule's fewest words and its last sentence is finished: each paragraph has them,
    or ran out of tokens. (`which`: sample requests that each engine ends at 23 to 60 words when its
    end is not refused.)"""
    requests = [r for r in sample_requests(max_tokens=160, protected=True) if not r.grammar][which]
    requests = [dataclasses.replace(r, sentences=dataclasses.replace(r.sentences, min_words=70, hold=True))
                for r in requests]
    results = real.generate(requests).results
    for result in results:
        assert len(result.text.split()) >= 70 or result.finish_reason == "length", result
