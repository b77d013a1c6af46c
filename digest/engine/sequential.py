"""The `sequential` engine: one llama.cpp completion per request, one after the other.

This is the obvious user code, kept as the baseline that the batching engine is measured against.
The prompt is digest's own ChatFormatter's (as the batching engine's), not llama-cpp-python's chat
handler's, so that a template without a system role or with `enable_thinking` is treated the same way
in both; the completion call is the one that handler makes. A plain request's reasoning block is cut
from the text afterwards; its budget and max_tokens are enforced together (the sum), not one by one.
A request written with prevention (below) is not: it gets no reasoning budget and no block is split
off (a known gap, issue 25: with a thinking template its block is judged and kept as text).

A request with a fact guard, a sentence rule or a point bias is written by the same rules, in the
way this loop can: the guard and the bias as a logits processor on llama-cpp-python's sampler (only
the allowed tokens among the row's top-k are left, as the batching engine does), and the paragraph
one sentence per completion (stopped as the next sentence begins), each judged by the sentence
machine (rollback.py: the batching engine's own decisions on a sentence); a refused sentence is written again by a completion with a seed derived from the request's seed, the
sentence's number and the attempt, and a kept one is added to the prompt of the next completion.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import sentences
from ..errors import GenerationError
from ..facts import GuardState
from .base import Engine, Generation, ProgressCallback, Request, Result, check_unique_keys, one_by_one
from .llama import load_llama
from .native import eog_tokens
from .rollback import SentenceMachine
from .sampling import top_k_allowed
from .thinking import split_thinking
from .vocabulary import Vocabulary


class SequentialEngine(Engine):
    name = "sequential"
    prevents = frozenset({"guard", "sentences", "bias"})

    def __init__(self, model_path: Path, *, n_ctx: int = 0, threads: int = 0, n_gpu_layers: int = 0,
                 repeat_last_n: int = 64, reuse_prefix: bool = False, thinking: bool = False,
                 thinking_tokens: int = 0, thinking_family: bool = False, chat_format: str = ""):
        """`reuse_prefix`: keep llama-cpp-python's default of reusing the previous prompt's matching
        prefix (faster; the benchmark's baseline), at the price of texts that depend on the request
        before."""
        self.model_path = Path(model_path)
        self.reuse_prefix = reuse_prefix
        self.n_ctx = n_ctx or 2048
        self._llm, self._formatter = load_llama(
            self.model_path, n_ctx=self.n_ctx, threads=threads, n_gpu_layers=n_gpu_layers,
            repeat_last_n=repeat_last_n, thinking=thinking, thinking_tokens=thinking_tokens,
            thinking_family=thinking_family, chat_format=chat_format,
        )
        self.thinking_budget = self._formatter.traits.budget
        self._vocabulary = Vocabulary(lambda: [self._piece(t) for t in range(self._llm.n_vocab())])

    @property
    def model_name(self) -> str:
        return self.model_path.stem

    def chat_template(self) -> dict:
        return self._formatter.describe()

    def prompt_tokens(self, request: Request) -> list[int]:
        prompt = self._formatter(request.messages)
        return self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def generate(self, requests: Sequence[Request], progress: ProgressCallback | None = None) -> Generation:
        check_unique_keys(requests)
        # Every request must fit before anything is decoded.
        lengths = [len(self.prompt_tokens(r)) for r in requests]
        for request, length in zip(requests, lengths):
            if length + request.max_tokens + self.thinking_budget > self.n_ctx:
                raise GenerationError(
                    f"request '{request.key}' needs {length} prompt + {request.max_tokens} new tokens, "
                    f"more than the context of {self.n_ctx}: raise --ctx or lower --max-tokens"
                )
        return one_by_one(requests, self._one, progress)

    def _one(self, request: Request) -> Result:
        if request.guard is not None or request.sentences is not None or request.bias is not None:
            return self._protected(request)
        return self._plain(request)

    def _plain(self, request: Request) -> Result:
        from llama_cpp import LlamaGrammar

        began = time.perf_counter()
        s = request.sampling
        grammar = LlamaGrammar.from_string(request.grammar, verbose=False) if request.grammar else None
        # Forget the previous prompt: llama-cpp-python would reuse its cached prefix and decode
        # the last prompt token alone, which gives other bits than decoding the prompt whole,
        # and so another text for the same request depending on what ran before it.
        if not self.reuse_prefix:
            self._llm.reset()
        prompt = self._formatter(request.messages)
        tokens = self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        out = self._llm.create_completion(
            prompt=tokens,
            max_tokens=request.max_tokens + self.thinking_budget,
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            repeat_penalty=s.repeat_penalty,
            seed=request.seed,
            stop=[*request.stop, self._formatter.eos_token],
            grammar=grammar,
        )
        usage = out["usage"]
        choice = out["choices"][0]
        text = choice["text"] or ""
        split = split_thinking(text, inside=self._formatter.opens_thinking(prompt))
        thinking = 0
        if split.thought is not None:  # the block's tokens: the text up to its end, tokenized again
            end = text.find("</think>")
            block = text if end < 0 else text[: end + len("</think>")]
            thinking = min(len(self._llm.tokenize(block.encode("utf-8"), add_bos=False, special=True)),
                           usage["completion_tokens"])
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        return Result(
            key=request.key,
            text=split.answer,
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            finish_reason=reason if split.closed else "thinking",
            seconds=time.perf_counter() - began,
            thinking_tokens=thinking,
        )

    # -- guard, bias and sentence rule ----------------------------------------------------------

    def _piece(self, token: int) -> bytes:
        cache = self.__dict__.setdefault("_pieces", {})
        if token not in cache:
            cache[token] = self._llm.detokenize([token])
        return cache[token]

    def _eog_tokens(self) -> np.ndarray:
        if "_eog" not in self.__dict__:
            self._eog = eog_tokens(self._llm._model.vocab, self._llm.n_vocab())
        return self._eog

    def _processor(self, request: Request, machine: SentenceMachine | None, before: bytes, start: int, ended: dict):
        """The logits processor of one completion: the point bias, then the fact guard over the row's
        top-k (widening where none is allowed); `before`: the paragraph's text kept so far, `start`:
        where this completion's own tokens begin. Where the guard allows nothing at all, the completion
        ends and `ended["dead"]` says so."""
        k = request.sampling.top_k or self._llm.n_vocab()
        state = GuardState(request.guard) if request.guard is not None else None
        vocabulary = self._vocabulary

        def process(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
            scores = np.array(scores, dtype=np.float32, copy=True)
            if request.bias:
                tokens, amounts = vocabulary.bias(request.bias, topic=bool(before))
                scores[tokens] += amounts
            written = b"".join(self._piece(int(t)) for t in input_ids[start:])  # this completion's own
            if machine is not None:  # it is one sentence: lean a long one to its end
                sentence = written.decode("utf-8", errors="ignore")
                lean = machine.lean(sentence)
                if lean:
                    scores[vocabulary.enders] += lean
                if not request.grammar and not machine.may_end(sentence):
                    scores[self._eog_tokens()] = -np.inf  # no end here (too short, or mid-sentence)
            if state is None:
                return scores
            state.reset(before + written)
            out = np.full_like(scores, -np.inf)
            try:  # the allowed tokens among the row's top-k, in widening windows (as the batching engine)
                tokens, _ = top_k_allowed(scores, k, lambda tokens: state.mask(tokens, vocabulary.table))
                out[tokens] = scores[tokens]
            except GenerationError:  # nothing at all may come next: only the end of the text
                out[self._llm.token_eos()] = 0.0
                ended["dead"] = True
            return out

        return process

    def _protected(self, request: Request) -> Result:
        """A request with a guard, a bias or a sentence rule: see the module's docstring."""
        from llama_cpp import LlamaGrammar, LogitsProcessorList, StoppingCriteriaList

        began = time.perf_counter()
        s, rule = request.sampling, request.sentences
        prompt = self._formatter(request.messages)
        prompt_tokens = len(self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
        machine = SentenceMachine(rule, request.seed) if rule is not None else None  # its decisions: rollback.py
        text = ""  # the kept sentences, as written
        sampled = kept_tokens = 0
        finish = "stop"
        self._llm.reset()
        while kept_tokens < request.max_tokens:
            start = len(self._llm.tokenize((prompt + text).encode("utf-8"), add_bos=False, special=True))
            # the request's seed for its first sentence's first attempt, then each attempt's own
            seed = request.seed if machine is None or not (machine.kept or machine.attempt) else machine.attempt_seed()

            ended = {"dead": False, "runaway": False}

            def sentence_done(input_ids: np.ndarray, logits: np.ndarray) -> bool:
                if machine is None:
                    return False
                written = self._llm.detokenize(list(input_ids[start:])).decode("utf-8", errors="ignore")
                if sentences.next_end(written) is not None:
                    return True
                ended["runaway"] = machine.runaway(written)  # too long to pass already: refused now
                return ended["runaway"]

            grammar = request.grammar if machine is None or not machine.kept else None  # the first sentence's
            out = self._llm.create_completion(
                prompt + text, max_tokens=request.max_tokens - kept_tokens, temperature=s.temperature,
                top_k=s.top_k, top_p=s.top_p, min_p=s.min_p, repeat_penalty=s.repeat_penalty, seed=seed,
                stop=list(request.stop) or None,
                grammar=LlamaGrammar.from_string(grammar, verbose=False) if grammar else None,
                logits_processor=LogitsProcessorList([self._processor(request, machine, text.encode("utf-8"), start, ended)]),
                stopping_criteria=StoppingCriteriaList([sentence_done]))
            choice = out["choices"][0]
            written = choice["text"] or ""
            used = out["usage"]["completion_tokens"]
            sampled += used
            if machine is None:
                text, kept_tokens, finish = text + written, kept_tokens + used, choice.get("finish_reason") or "stop"
                break
            end = sentences.next_end(written)  # the end followed by the space that begins the next one
            unfinished = end is None and not sentences.ends(written)
            if unfinished and (ended["dead"] or ended["runaway"] or (
                    choice.get("finish_reason") != "length" and written.strip() and not request.stop)):
                # A sentence that cannot go on, too long already, or that the model ends the paragraph
                # inside: written again, or the paragraph ends before it where it is long enough or the
                # attempts are spent.
                if machine.broken() == "undo":
                    continue
                break
            last = end is None
            if last and not sentences.ends(written):  # out of tokens inside a sentence
                if not machine.ends_early():
                    text, kept_tokens = text + written, kept_tokens + used
                    finish = "length" if choice.get("finish_reason") == "length" else "stop"
                break
            sentence_text = written if last else written[:end]
            verdict = machine.finished(sentence_text.strip(), last=last)
            if verdict == "undo":
                continue
            if verdict == "end":
                break
            text += sentence_text
            kept_tokens += len(self._llm.tokenize(sentence_text.encode("utf-8"), add_bos=False))
            following = "" if last else written[end:]
            if last or request.grammar or machine.stops("\n" in following[:2]):
                break
        else:
            finish = "length"
        return Result(key=request.key, text=text, prompt_tokens=prompt_tokens, completion_tokens=kept_tokens,
                      finish_reason=finish, seconds=time.perf_counter() - began, sampled_tokens=sampled,
                      rollbacks=machine.rollbacks if machine is not None else 0)

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.close()
