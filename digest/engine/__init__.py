"""Text generation engines behind one small interface (`Engine`).

- `batched`: every request as a parallel sequence in one llama.cpp context (the default);
- `sequential`: each request in turn by llama.cpp completions (one per sentence where a sentence rule
  judges it), the baseline;
- `fake`: canned text, no model, for fast tests;
- `openai`: a client of an OpenAI-compatible server (llama-server, vLLM, Ollama) that runs the model.

Real engines are imported lazily, so that nothing loads llama.cpp until a model is needed.
"""

from __future__ import annotations

from pathlib import Path

from .base import Engine, Generation, Message, Progress, Request, Result, Sampling, Stats, derive_seed
from .cache_types import CACHE_TYPES_K  # the batching engine's K cache formats, the default first

ENGINES = ("batched", "sequential", "fake", "openai")

__all__ = ["CACHE_TYPES_K", "ENGINES", "Engine", "Generation", "Message", "Progress", "Request", "Result", "Sampling",
           "Stats", "create_engine", "derive_seed", "engine_of"]


def engine_of(config, *, name: str | None = None, model_path: Path | None = None, **overrides) -> Engine:
    """The engine a digest config (a `digest.config.Config`) asks for: [generation] engine and slots,
    the [model] settings, the server of --engine openai. The one place where settings become an engine
    (run, eval, replay, the bench); `name`, `model_path` and `overrides` (keywords of `create_engine`)
    replace what the config says."""
    m = config.model
    name = name or config.generation.engine
    options = dict(n_ctx=m.n_ctx, threads=m.threads, n_gpu_layers=m.n_gpu_layers, slots=config.generation.slots,
                   cache_type_k=m.cache_type_k, thinking=m.thinking, thinking_tokens=m.thinking_tokens)
    if name == "openai":
        options["server"] = m.server_options()
    options.update(overrides)
    return create_engine(name, model_path or config.model_path, **options)


def create_engine(name: str, model_path: Path, *, n_ctx: int = 0, threads: int = 0, n_gpu_layers: int = 0,
                  slots: int = 0, server=None, cache_type_k: str = CACHE_TYPES_K[0], reuse_prefix: bool = False,
                  thinking: bool = False, thinking_tokens: int = 0) -> Engine:
    """An engine by name; `server` (an openai.ServerOptions, which carries its own thinking settings)
    is what the `openai` engine talks to; `cache_type_k` is the batching engine's K cache format (the
    loop keeps llama-cpp-python's f16); `reuse_prefix`: the loop's (see SequentialEngine); `thinking`
    is what a template taking `enable_thinking` gets, and `thinking_tokens` a thinking model's
    reasoning budget beside each request's max_tokens."""
    if name == "openai":
        from .openai import OpenAIEngine

        if server is None or not server.url:
            raise ValueError("the openai engine needs a server URL")
        return OpenAIEngine(server)
    if name == "fake":
        from .fake import FakeEngine

        return FakeEngine(model_name=Path(model_path).stem, thinking_tokens=thinking_tokens)
    if name == "batched":
        from .batched import BatchedEngine

        return BatchedEngine(model_path, n_ctx=n_ctx, threads=threads, n_gpu_layers=n_gpu_layers, slots=slots,
                             cache_type_k=cache_type_k, thinking=thinking, thinking_tokens=thinking_tokens)
    if name == "sequential":
        from .sequential import SequentialEngine

        return SequentialEngine(model_path, n_ctx=n_ctx, threads=threads, n_gpu_layers=n_gpu_layers,
                                reuse_prefix=reuse_prefix, thinking=thinking, thinking_tokens=thinking_tokens)
    raise ValueError(f"unknown engine {name!r} (known: {', '.join(ENGINES)})")
