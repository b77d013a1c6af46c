"""The `sequential` engine: one llama.cpp completion per request, one after the other.

This is the obvious user code, kept as the baseline that the batching engine is measured against.
The prompt is digest's own ChatFormatter's (as the batching engine's), not llama-cpp-python's chat
handler's, so that a template without a system role or with `enable_thinking` is treated the same way
in both; the completion call is the one that handler makes. A reasoning block is cut from the text
afterwards; its budget and max_tokens are enforced together (the sum), not one by one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from ..errors import GenerationError
from .base import Engine, Generation, ProgressCallback, Request, Result, check_unique_keys, one_by_one
from .llama import load_llama
from .thinking import split_thinking


class SequentialEngine(Engine):
    name = "sequential"

    def __init__(self, model_path: Path, *, n_ctx: int = 0, threads: int = 0, n_gpu_layers: int = 0,
                 repeat_last_n: int = 64, reuse_prefix: bool = False, thinking: bool = False,
                 thinking_tokens: int = 0):
        """`reuse_prefix`: keep llama-cpp-python's default of reusing the previous prompt's matching
        prefix (faster; the benchmark's baseline), at the price of texts that depend on the request
        before."""
        self.model_path = Path(model_path)
        self.reuse_prefix = reuse_prefix
        self.n_ctx = n_ctx or 2048
        self._llm, self._formatter = load_llama(
            self.model_path, n_ctx=self.n_ctx, threads=threads, n_gpu_layers=n_gpu_layers,
            repeat_last_n=repeat_last_n, thinking=thinking,
        )
        self.thinking_budget = self._formatter.thinking_budget(thinking_tokens)

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

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.close()
