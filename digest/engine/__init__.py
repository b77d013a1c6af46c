"""Text generation engines behind one small interface (`Engine`).

- `batched`: every request as a parallel sequence in one llama.cpp context (the default);
- `sequential`: each request in turn by llama.cpp completions (one per sentence where a sentence rule
  judges it), the baseline;
- `fake`: canned text, no model, for fast tests;
- `openai`: a client of an OpenAI-compatible server (llama-server, vLLM, Ollama) that runs the model.

Real engines are imported lazily, so that nothing loads llama.cpp until a model is needed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .base import Engine, Generation, Message, Progress, Request, Result, Sampling, Stats, derive_seed
from .cache_types import CACHE_TYPES_K  # the batching engine's K cache formats, the default first

if TYPE_CHECKING:
    from .openai import ServerOptions

ENGINES = ("batched", "sequential", "fake", "openai")
LOCAL_ENGINES = ("batched", "sequential")  # the ones that run llama.cpp in this process

__all__ = ["CACHE_TYPES_K", "ENGINES", "Engine", "EngineSettings", "Generation", "Message", "Progress", "Request",
           "Result", "Sampling", "Stats", "create_engine", "derive_seed", "engine_of"]


@dataclass(frozen=True)
class EngineSettings:
    """Every setting that makes an engine, as one value. A config gives it in one place
    (`digest.config.Config.engine_settings`); two configs of one run share an engine only where theirs
    are the same (`digest.config.check_one_engine`); `create_engine` builds the engine from it and
    gives it to the engine (`Engine.settings`), whose manifest records it (`record`)."""

    name: str = "batched"  # the engine: one of ENGINES
    model_path: Path | None = None  # the model file (None for a model behind a server)
    server: "ServerOptions | None" = None  # the server of --engine openai ([model] url and the rest)
    n_ctx: int = 0
    threads: int = 0
    n_gpu_layers: int = 0
    slots: int = 0
    cache_type_k: str = CACHE_TYPES_K[0]  # the batching engine's K cache (the loop keeps f16)
    # What a template taking `enable_thinking` is given, and a thinking model's reasoning budget beside
    # each request's max_tokens (chat.TemplateTraits).
    thinking: bool = False
    thinking_tokens: int = 0
    # The model registry's `thinking` for this model: its family thinks, where its template cannot tell.
    thinking_family: bool = False
    # The chat template where the GGUF has none or the user overrides it ([model] chat_format, --chat-format,
    # else the registry entry's): a llama.cpp built-in's name or a Jinja file's absolute path ("": the GGUF's).
    chat_format: str = ""
    reuse_prefix: bool = False  # the loop's reuse of the previous prompt (see SequentialEngine; the bench's)

    def shared_by(self) -> "EngineSettings":
        """These settings as two configs compare them: the model file by its resolved path."""
        return dataclasses.replace(self, model_path=self.model_path.resolve()) if self.model_path else self

    def record(self) -> dict:
        """What a manifest records of them (its "engine"): all but the model file and the server's URL,
        which its "model" records with the file's sha256 or what the server says about itself; the K
        cache is null outside the batching engine, which alone uses it."""
        data = {spec.name: getattr(self, spec.name) for spec in dataclasses.fields(self)
                if spec.name not in ("model_path", "server")}
        if self.name != "batched":
            data["cache_type_k"] = None
        if self.server is not None:
            data["server"] = {k: v for k, v in dataclasses.asdict(self.server).items()
                              if k not in ("url", "thinking", "thinking_tokens")}
        return data


def engine_of(config, *, warn: Callable[[str], None] | None = None, **overrides) -> Engine:
    """The engine a digest config (a `digest.config.Config`) asks for: its `engine_settings` ([generation]
    engine and slots, the [model] settings, the server of --engine openai). The one place where a
    config becomes an engine (run, eval, replay, the bench); `overrides` (fields of EngineSettings)
    replace what the config says. `warn` hears of each of `load_warnings`, once, before the model loads."""
    settings = dataclasses.replace(config.engine_settings, **overrides)
    if warn is not None:
        for message in load_warnings(settings):
            warn(message)
    engine = create_engine(**{spec.name: getattr(settings, spec.name) for spec in dataclasses.fields(settings)})
    engine.settings = settings  # (also where a test has put another create_engine in its place)
    return engine


def load_warnings(settings: EngineSettings) -> list[str]:
    """What a user should know before a local engine loads its model, one line each: n_gpu_layers on a
    llama-cpp-python build without a GPU backend; a batching engine's model on the CPU whose weights
    llama.cpp's x86 kernels compute differently by batch size (its text may depend on --slots)."""
    if settings.name not in LOCAL_ENGINES:
        return []
    from ..errors import ModelError
    from .native import batch_dependence, gpu_offload_supported

    out = []
    gpu = gpu_offload_supported()
    if settings.n_gpu_layers and not gpu:
        out.append(f"n_gpu_layers {settings.n_gpu_layers} (--n-gpu-layers, [model] n_gpu_layers) offloads "
                   "nothing: this llama-cpp-python build has no GPU backend, so every layer runs on the CPU")
    if settings.name == "batched" and settings.model_path is not None and not (settings.n_gpu_layers and gpu):
        try:
            out.append(batch_dependence(settings.model_path))
        except ModelError:  # no such file, or not a GGUF: the engine says so when it loads it
            pass
    return [message for message in out if message]


def create_engine(name: str, model_path: Path | None, **options) -> Engine:
    """An engine by name, from the fields of EngineSettings (`options`: the rest of them); the engine
    keeps them as its `settings`."""
    settings = EngineSettings(name, Path(model_path) if model_path is not None else None, **options)
    engine = _build(settings)
    engine.settings = settings
    return engine


def _build(s: EngineSettings) -> Engine:
    if s.name == "openai":
        from .openai import OpenAIEngine

        if s.server is None or not s.server.url:
            raise ValueError("the openai engine needs a server URL")
        return OpenAIEngine(dataclasses.replace(s.server, thinking=s.thinking, thinking_tokens=s.thinking_tokens),
                            thinking_family=s.thinking_family)
    if s.name == "fake":
        from .fake import FakeEngine

        return FakeEngine(model_name=Path(s.model_path or "fake-model").stem, thinking=s.thinking,
                          thinking_tokens=s.thinking_tokens)
    thinking = dict(thinking=s.thinking, thinking_tokens=s.thinking_tokens, thinking_family=s.thinking_family,
                    chat_format=s.chat_format)
    if s.name == "batched":
        from .batched import BatchedEngine

        return BatchedEngine(s.model_path, n_ctx=s.n_ctx, threads=s.threads, n_gpu_layers=s.n_gpu_layers,
                             slots=s.slots, cache_type_k=s.cache_type_k, **thinking)
    if s.name == "sequential":
        from .sequential import SequentialEngine

        return SequentialEngine(s.model_path, n_ctx=s.n_ctx, threads=s.threads, n_gpu_layers=s.n_gpu_layers,
                                reuse_prefix=s.reuse_prefix, **thinking)
    raise ValueError(f"unknown engine {s.name!r} (known: {', '.join(ENGINES)})")
