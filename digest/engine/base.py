"""The engine interface: a list of requests in, one text per request and run stats out.

An engine knows nothing of feeds, Markdown or Hugo. It never prints: progress goes to a callback.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Callable, Literal, Sequence

if TYPE_CHECKING:
    from ..facts import Guard
    from ..prevention import Bias, SentenceRule

Role = Literal["system", "user", "assistant"]
# "thinking": a reasoning block (<think>...) was still open when its budget ran out; the text is empty.
FinishReason = Literal["stop", "length", "repeat", "thinking"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    # Tokens of recent history that the repeat penalty looks at.
    repeat_last_n: int = 64


@dataclass(frozen=True)
class Request:
    """One text to generate. `key` names it uniquely within a run (and seeds are derived from it)."""

    key: str
    messages: tuple[Message, ...]
    seed: int
    max_tokens: int = 160
    sampling: Sampling = field(default_factory=Sampling)
    stop: tuple[str, ...] = ()
    grammar: str | None = None
    # For benchmarks: run to max_tokens, past end-of-generation tokens and loops.
    ignore_eos: bool = False
    # The fact guard (digest.facts): candidate tokens that would write a number or name it does not
    # allow are never sampled. None: no guard.
    guard: "Guard | None" = None
    # Sentence rollback: a finished sentence that the rule refuses is undone and written again (the rule
    # of digest.prevention, or anything with its methods).
    sentences: SentenceRule | None = field(default=None, compare=False)
    # Lean the sampler toward some words and away from others (before top-k). None: no bias.
    bias: Bias | None = None


@dataclass(frozen=True)
class Result:
    key: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    seconds: float = 0.0
    # The generated token ids as sampled, before any stop-string or repetition cut (engines that see
    # tokens fill it; a server's or the fake's may leave it empty).
    tokens: tuple[int, ...] = ()
    # Seconds from the request to its first generated text, where the engine can see it (a server's
    # streamed answer); None elsewhere.
    first_token_seconds: float | None = None
    # Tokens sampled in all, those of undone sentences included (0: the engine does not count them,
    # and every sampled token was kept), and how many sentences were undone.
    sampled_tokens: int = 0
    rollbacks: int = 0
    # Of completion_tokens, those of a reasoning block (<think>...</think>), which is never in `text`.
    thinking_tokens: int = 0


@dataclass
class Stats:
    requests: int = 0
    prompt_tokens: int = 0
    prompt_tokens_decoded: int = 0
    # Of prompt_tokens, those of prompts an earlier run left in the engine (a retry's): not decoded again.
    prompt_tokens_kept: int = 0
    completion_tokens: int = 0
    # Tokens sampled in all (those of sentences undone too) and sentences undone.
    sampled_tokens: int = 0
    rollbacks: int = 0
    thinking_tokens: int = 0  # of completion_tokens, those of reasoning blocks
    decode_steps: int = 0
    wall_seconds: float = 0.0
    prompt_seconds: float = 0.0  # of wall_seconds, spent decoding prompts
    # Of wall_seconds, each phase's own seconds (engine.timing.PHASES), where the engine times them (the
    # batching engine); they add up to at most wall_seconds.
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def generation_tokens_per_second(self) -> float:
        """Generated tokens per second of generation steps alone (prompt decoding left out)."""
        seconds = self.wall_seconds - self.prompt_seconds
        return self.completion_tokens / seconds if seconds > 0 else 0.0

    def merge(self, more: "Stats") -> None:
        """Add another run's counts and times to these (a retry's, say)."""
        for spec in fields(self):
            if spec.name == "phases":
                for name, seconds in more.phases.items():
                    self.phases[name] = self.phases.get(name, 0.0) + seconds
            else:
                setattr(self, spec.name, getattr(self, spec.name) + getattr(more, spec.name))

    @property
    def other_seconds(self) -> float:
        """Of wall_seconds, what no phase timer covers (0 where the engine times no phases)."""
        return max(0.0, self.wall_seconds - sum(self.phases.values())) if self.phases else 0.0

    def add_unbatched(self, result: "Result") -> None:
        """Count a result generated alone: its whole prompt decoded, one decode step per token."""
        self.prompt_tokens += result.prompt_tokens
        self.prompt_tokens_decoded += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        self.sampled_tokens += result.sampled_tokens or result.completion_tokens
        self.rollbacks += result.rollbacks
        self.thinking_tokens += result.thinking_tokens
        self.decode_steps += result.sampled_tokens or result.completion_tokens

    @property
    def sampled_per_kept(self) -> float:
        """Tokens sampled per token kept (1.0 when nothing was undone)."""
        return self.sampled_tokens / self.completion_tokens if self.completion_tokens else 1.0

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.wall_seconds if self.wall_seconds > 0 else 0.0


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    completion_tokens: int
    elapsed: float
    finished: Result | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass
class Generation:
    results: list[Result]
    stats: Stats

    def by_key(self) -> dict[str, Result]:
        return {r.key: r for r in self.results}


class Engine(ABC):
    """Generates text for requests. Results come back in the order of the requests."""

    name: str = "engine"
    # What of a request's prevention the engine applies while it writes: "guard" (the fact guard),
    # "sentences" (sentence rollback), "bias" (the point and topic biases): only what it does. The rest
    # is left to the checks (and a run warns of it: pipeline.prevention_unapplied).
    prevents: frozenset[str] = frozenset()
    threads: int | None = None  # the CPU threads it decodes with, where it runs the model here
    # The settings it was made from (an engine.EngineSettings: engine_of and create_engine give it).
    settings = None
    # The tokens a reasoning block may take beside each request's max_tokens (chat.TemplateTraits.budget).
    thinking_budget: int = 0

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The model's name as a post's tags show it (the GGUF file's stem)."""

    @abstractmethod
    def generate(self, requests: Sequence[Request], progress: ProgressCallback | None = None) -> Generation:
        ...

    def describe(self) -> dict | None:
        """For a model digest cannot see (behind a server): what the server says about itself, for the
        manifest. None for a local model file, which the manifest records by its sha256."""
        return None

    def chat_template(self) -> dict | None:
        """For a model whose prompts digest formats: what its chat template is and does (ChatFormatter.describe),
        for the manifest. None where the template is not digest's to apply (a server's, the fake's)."""
        return None

    def forget(self) -> None:
        """Drop what an engine keeps from one generate to the next (the batching engine: its context and
        the prompts decoded in it), so that the next one starts as the first did: a bench's rows."""

    def close(self) -> None:
        """Free the model and any native memory. Safe to call twice."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def derive_seed(run_seed: int, key: str) -> int:
    """A request's seed from the run's seed and the request's key, never from its position.

    The result is a 31-bit value, so it never equals llama.cpp's "random seed" marker (0xFFFFFFFF).
    """
    digest = hashlib.sha256(f"{run_seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def check_unique_keys(requests: Sequence[Request]) -> None:
    seen: set[str] = set()
    for request in requests:
        if request.key in seen:
            raise ValueError(f"duplicate request key: {request.key!r}")
        seen.add(request.key)


def one_by_one(requests: Sequence[Request], generate_one: Callable[[Request], Result],
               progress: ProgressCallback | None = None) -> Generation:
    """Generate `requests` one after another with `generate_one`, counting each as unbatched and
    reporting progress after each: the loop of every engine that does not batch."""
    start = time.perf_counter()
    stats = Stats(requests=len(requests))
    results: list[Result] = []
    for request in requests:
        result = generate_one(request)
        results.append(result)
        stats.add_unbatched(result)
        if progress:
            progress(Progress(len(results), len(requests), stats.completion_tokens, time.perf_counter() - start, result))
    stats.wall_seconds = time.perf_counter() - start
    return Generation(results, stats)
