"""The batching engine's promises on a second family, on real weights: Gemma 3 270M (the registry's
`gemma3-270m-q8_0`, the published Q4_K_M converted to Q8_0 by llama.cpp's quantizer, as the embedded
SmolLM2 is; the last test shows why not the Q4_K_M itself: architecture gemma3, a 512-token sliding attention window, a 262,144-token vocabulary,
no chat template in its GGUF, so the prompts go through llama.cpp's built-in `gemma` template).

The model is loaded once for the module, and every test is short (few requests, few tokens). `make
test` pulls the file first (`digest models pull gemma3-270m-q8_0`); without it the tests are skipped, unless
DIGEST_REQUIRE_MODEL=1 (make test), where its absence is a failure."""

from __future__ import annotations

import dataclasses
import os
import platform

import numpy as np
import pytest

from conftest import REQUIRE_MODEL
from digest.engine import create_engine
from digest.engine.base import Request
from digest.engine.batched import common_prefix
from digest.engine.llama import no_extra_buffers
from digest.engine.native import X86
from digest.models.registry import load_registry
from test_engine import (GREEDY, TIE, EverySentenceKept, _biases, _llama_cpp_python_greedy, _top_two_gap, fresh,
                         generate_at_slots, sample_requests)

pytestmark = pytest.mark.model


def gemma_path(name: str = "gemma3-270m-q8_0"):
    registry = load_registry()
    return registry.file_of(registry.get(name))


@pytest.fixture(scope="module")
def gemma():
    path = gemma_path()
    if not path.is_file():
        reason = f"Gemma 3 270M missing: {path} (make test pulls it: digest models pull gemma3-270m-q8_0)"
        if os.environ.get(REQUIRE_MODEL) == "1":
            pytest.fail(f"{reason}; {REQUIRE_MODEL}=1 (make test) requires it", pytrace=False)
        pytest.skip(reason)
    # One thread: on a machine shared with other work, two OpenMP threads that wait for each other ran
    # ten times slower than one.
    with create_engine("batched", path, chat_format="gemma", threads=1) as engine:
        yield engine


class RefuseTheFirstSentenceOnce(EverySentenceKept):
    """A sentence rule that undoes the paragraph's first finished sentence once, then keeps everything."""

    attempts = 2

    def __init__(self):
        super().__init__()
        self.refused = 0

    def problem(self, sentence, before):
        if before or self.refused:
            return None
        self.refused += 1
        return "undo it once"


def test_the_gemma_prompt_is_llama_cpps_builtin_template_with_the_system_prompt_in_the_user_turn(gemma):
    request = sample_requests()[0]
    prompt = gemma._format(request.messages)
    system, user = request.messages[0].content, request.messages[1].content
    assert prompt.startswith(f"<bos><start_of_turn>user\n{system.strip()}\n\n{user.strip()}<end_of_turn>\n")
    assert prompt.endswith("<start_of_turn>model\n") and "system" not in prompt.split("\n", 1)[0]
    record = gemma.chat_template()
    assert (record["chat_format"], record["builtin"]) == ("gemma", True) and len(record["sha256"]) == 64
    assert gemma._model.n_swa == 512 and gemma._model.n_vocab == 262_144


def test_a_sentence_undone_is_written_again_as_if_never_written(gemma, monkeypatch):
    """Greedy, so the first token drawn again is the same one: after the undo (its cells taken out of
    the KV stream) the sentence and all that follows are the tokens of a run that never undid it. The
    context keeps the window layers' every cell (swa_full) when a request can undo sentences."""
    from digest.engine import batched as module

    made = []

    class Spy(module.Context):
        def __init__(self, *args, **kwargs):
            made.append(kwargs.get("swa_full"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(module, "Context", Spy)
    base = dataclasses.replace(sample_requests(max_tokens=40)[0], sampling=GREEDY)
    plain = gemma.generate([base]).results[0]
    undone = gemma.generate([dataclasses.replace(base, sentences=RefuseTheFirstSentenceOnce())]).results[0]
    assert made == [False, True]
    assert undone.rollbacks == 1 and undone.sampled_tokens > undone.completion_tokens, undone
    assert undone.tokens == plain.tokens


def test_a_rollback_after_the_window_slid_is_exact_with_a_full_size_window_cache(gemma):
    """What llama.cpp does with a sliding window: its window layers' cache holds n_swa + n_ubatch cells
    (padded to 256), and a cell that fell out of the window is reused. Cells undone by seq_rm then
    leave a window with holes where the positions before them were: the next token's logits differ
    (by up to 3.6 here without swa_full). With it every cell stays, and the logits after the undo are those of a
    sequence that never went on. Native level, two streams: one goes 332 tokens on and undoes them, the
    other, a copy made before, does not."""
    from digest.engine.native import Batch, Context
    from digest.resources import samples_dir

    model = gemma._model
    tokens = model.tokenize((samples_dir() / "topics.xml").read_text(encoding="utf-8"))[:1110]
    # n_ubatch 256: a window cache of pad(512 + 256) = 768 cells, full at position 768.
    context = Context(model, n_ctx_seq=1280, n_seq_max=2, n_batch=256, threads=gemma.threads, swa_full=True)
    batch = Batch(256)

    def decode(seq: int, begin: int, end: int) -> np.ndarray:
        batch.clear()
        for pos in range(begin, end):
            batch.add(tokens[pos], pos, seq, pos == end - 1)
        context.decode(batch)
        return context.logits(1, model.n_vocab)[0].copy()

    try:
        for begin in range(0, 768, 256):
            decode(0, begin, begin + 256)
        context.copy_sequence(0, 1)
        decode(0, 768, 1024)  # the window cache is full: positions 0-255 go
        decode(0, 1024, 1100)  # and 256-331, which position 768 attends to
        context.remove_from(0, 768)
        after_undo = decode(0, 768, 770)
        never = decode(1, 768, 770)
    finally:
        batch.close()
        context.close()
    assert np.array_equal(after_undo, never)


def test_guarded_paragraphs_with_rollback_are_the_same_at_slots_1_and_16(gemma):
    """Sections as a run makes them (guard, sentence rule, point and topic biases), at --slots 1 and all
    at once (8 sections: the steps hold 8 rows, where the Q4_K_M's kernels part): sentences are undone
    and written again in both, and every text is the same."""
    requests = [dataclasses.replace(r, bias=b) for r, b in zip(
        sample_requests(max_tokens=24, protected=True), _biases())][:8]
    together = gemma.generate(requests)
    one = generate_at_slots(gemma, requests, 1)
    assert together.stats.rollbacks > 0
    for a, b in zip(together.results, one.results):
        assert (a.tokens, a.rollbacks) == (b.tokens, b.rollbacks), a.key


def test_a_retry_puts_back_a_prompt_of_a_sliding_window_model_and_writes_what_a_decode_writes(gemma):
    """Gemma 3's window layers (512 cells, kept whole for rollback): a prompt kept from one run and put
    back in the next (a retry with another seed) writes, rollbacks and all, what a decode of it writes."""
    requests = [dataclasses.replace(r, bias=b) for r, b in zip(
        sample_requests(max_tokens=24, protected=True), _biases())][:4]
    fresh(gemma, requests)
    retries = [dataclasses.replace(r, key=f"{r.key} #1", seed=r.seed + 1) for r in requests[:2]]
    kept = gemma.generate(retries)
    assert kept.stats.prompt_tokens_decoded == 0 and kept.stats.prompt_tokens_kept == kept.stats.prompt_tokens
    decoded = fresh(gemma, retries)
    assert decoded.stats.prompt_tokens_kept == 0
    assert [(r.tokens, r.rollbacks) for r in kept.results] == [(r.tokens, r.rollbacks) for r in decoded.results]


def test_greedy_tokens_equal_llama_cpp_python(gemma):
    """At temperature 0, one slot, the batching engine gives llama-cpp-python's own greedy tokens (or
    parts from them only at a numerical tie), on two of the sample prompts."""
    import llama_cpp

    from digest.engine.native import CACHE_TYPES

    requests: list[Request] = [dataclasses.replace(r, sampling=GREEDY) for r in sample_requests(max_tokens=24)[:2]]
    ours = generate_at_slots(gemma, requests, 1).results
    prompts = [gemma.tokenize(r) for r in requests]
    with no_extra_buffers():  # as the engines load it
        llm = llama_cpp.Llama(model_path=str(gemma.model_path), n_ctx=max(map(len, prompts)) + 32, n_batch=512,
                              n_threads=gemma.threads, n_threads_batch=gemma.threads, flash_attn=False, verbose=False,
                              type_k=CACHE_TYPES[gemma.cache_type_k][0])
    same = 0
    try:
        for request, prompt, result in zip(requests, prompts, ours):
            theirs = _llama_cpp_python_greedy(llm, prompt, request.max_tokens, None)
            mine = list(result.tokens)
            if result.finish_reason == "repeat":
                theirs = theirs[: len(mine)]
            if mine == theirs:
                same += 1
                continue
            at = common_prefix(mine, theirs)
            assert _top_two_gap(llm, prompt + mine[:at]) < TIE, f"{request.key}: tokens part at {at}, not at a tie"
    finally:
        llm.close()
    assert same >= 1


def test_a_batch_whose_logits_would_not_fit_the_memory_budget_fails_before_any_decode(gemma, monkeypatch):
    """A row of 262,144 floats per sequence, twice: 2 MiB a sequence. Over the budget (here 16 MiB), one
    line that says so and how many slots would fit, before any context is made."""
    from digest.engine import batched as module
    from digest.errors import EXIT_GENERATION, GenerationError

    monkeypatch.setattr(module, "logits_budget", lambda: 16 * 2**20)
    monkeypatch.setattr(module, "Context", lambda *args, **kwargs: pytest.fail("a context was made"))
    with pytest.raises(GenerationError) as caught:
        gemma.generate(sample_requests(max_tokens=4))  # 14 requests and the holder of their shared prefix
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_GENERATION and "\n" not in message
    assert "15 sequences x 262,144 tokens" in message and "30 MiB, over the 16 MiB budget" in message
    assert message.endswith("lower --slots to 7 or less")


def _deltas_word_by_word(bias, pieces, topic):
    """`Bias.deltas` as it was, one piece after another over the whole vocabulary: the reference."""
    sides = [(tuple(stems), {s[:k] for s in stems for k in range(4, len(s) + 1)})
             for stems in (bias.toward, bias.away, bias.topic)]
    out = {}
    for token, piece in enumerate(pieces):
        if not piece.startswith(b" "):
            continue
        word = piece[1:].decode("utf-8", errors="ignore").lower()
        if len(word) < 3 or not word.isalpha():
            continue
        hits = [word.startswith(stems) or word in beginnings for stems, beginnings in sides]
        delta = (bias.amount if hits[0] else -bias.amount if hits[1] else 0.0) + (bias.topic_amount if hits[2] and topic else 0.0)
        if delta:
            out[token] = np.float32(delta)
    return out


def test_the_biases_over_262k_pieces_are_those_of_a_pass_over_every_piece(gemma):
    """The sorted words (prevention.Words) give each bias of the sample digest the very tokens and
    amounts that a pass over every one of Gemma's 262,144 pieces gives, for the point and the topic lean."""
    pieces = gemma._vocabulary.pieces
    biases = [b for b in _biases() if b][:2]
    for bias in biases:
        for topic in (False, True):
            tokens, amounts = gemma._vocabulary.bias(bias, topic=topic)
            assert list(tokens) == sorted(tokens) and len(tokens) > 100
            assert dict(zip(tokens.tolist(), amounts.tolist())) == _deltas_word_by_word(bias, pieces, topic)


def test_the_published_q4_k_m_gives_a_row_other_logits_in_a_step_of_8_and_the_q8_0_does_not(gemma):
    """Why the engine's tests run on the Q8_0: on an AVX2 CPU (the AMD EPYC of the first figures),
    llama.cpp's kernels for the published Q4_K_M (weights not repacked) give a row other bits when its
    decode step holds 8 or more rows (2 to 5 rows: the same), so its text depends on what else is in
    the batch; the Q8_0 (and SmolLM2's) does not. On an AVX-512 Xeon (Sapphire Rapids) its rows kept
    their bits, while a SmolLM2 with Q6_K matrices parted there (docs/models.md): which files part
    depends on the CPU, and the load's warning (engine.native.batch_dependence) names every k-quant.
    When the Q4_K_M's side fails, llama.cpp's kernels (or the CPU class) changed: measure again."""
    from digest.engine.native import Batch, Context
    from digest.resources import samples_dir

    def max_gap(engine) -> float:
        model = engine._model
        tokens = model.tokenize((samples_dir() / "topics.xml").read_text(encoding="utf-8"))
        prompts = [tokens[i * 50: i * 50 + 40] for i in range(8)]

        def step(n: int) -> np.ndarray:
            context = Context(model, n_ctx_seq=256, n_seq_max=8, n_batch=64, threads=engine.threads)
            batch = Batch(64)
            try:
                for seq in range(n):
                    batch.clear()
                    for pos, token in enumerate(prompts[seq]):
                        batch.add(token, pos, seq, False)
                    context.decode(batch)
                batch.clear()
                for seq in range(n):
                    batch.add(prompts[seq][-1] + 7, 40, seq, True)
                context.decode(batch)
                return context.logits(n, model.n_vocab)[0].copy()
            finally:
                batch.close()
                context.close()

        return float(np.abs(step(1) - step(8)).max())

    assert max_gap(gemma) == 0.0
    published = gemma_path("gemma3-270m")
    assert published.is_file(), "pulled with the Q8_0, its source"
    with create_engine("batched", published, chat_format="gemma", threads=1) as q4_k_m:
        gap = max_gap(q4_k_m)
    if platform.machine().lower() not in X86:
        return  # measured on x86 only
    if "avx512f" in _cpu_flags():
        assert gap == 0.0, "the AVX-512 kernels gave a Q4_K row other bits in a step of 8: warn there too"
    else:
        assert gap > 0.01, "the AVX2 kernels no longer make a Q4_K row depend on its step: check the warning"


def _cpu_flags() -> set[str]:
    try:
        text = open("/proc/cpuinfo", encoding="ascii", errors="replace").read()
    except OSError:  # pragma: no cover - not Linux
        return set()
    return {word for line in text.splitlines() if line.startswith("flags") for word in line.split(":", 1)[1].split()}


def test_the_html_gemma_writes_is_taken_out_of_its_paragraph_on_its_real_output(gemma):
    """Gemma 3 270M writes HTML (issue 27 saw "<i>many</i>", which the post showed escaped): on a real
    answer of its own (a base model: it writes the page back, tags and all, and goes on in HTML), the tags
    go from the paragraph and the words inside them stay."""
    import re

    from digest.engine.base import Message, Sampling
    from digest.sections import labels
    from digest.text import clean_paragraph

    ask = "Continue this web page paragraph: <p>Small language models help <i>many</i> teams ship <b>faster</b>."
    request = Request("html", (Message("user", ask),), seed=7, max_tokens=80, sampling=Sampling(temperature=0.0))
    raw = gemma.generate([request]).results[0].text
    tags = re.findall(r"</?(?:i|b|p|a)\b[^<>]*>", raw)
    assert len(tags) >= 4, f"the model wrote too little HTML this time: {raw!r}"
    paragraph = clean_paragraph(raw, 1, 200, labels())
    assert paragraph and not re.search(r"</?(?:i|b|p|a)\b", paragraph), paragraph
    inside = re.findall(r"<(?:i|b)>([^<]+)</(?:i|b)>", raw)
    assert inside and all(words in paragraph for words in inside), (inside, paragraph)
