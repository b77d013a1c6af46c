"""Loading a GGUF model with llama-cpp-python, with our own errors for every way it can fail."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from ..errors import ModelError
from ..models.registry import check_gguf
from .chat import ChatFormatter, template_source


def default_threads() -> int:
    """Threads for decoding: the CPUs this process may use, halved where SMT likely doubles them."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return cpus if cpus <= 4 else cpus // 2


@contextlib.contextmanager
def no_extra_buffers() -> Iterator[None]:
    """While it lasts, a `llama_cpp.Llama` loads its weights as the batching engine does (native.Model):
    without llama.cpp's "extra buffer types". Those repack the weights for other kernels (4-row Q4
    gemm on AVX2, AMX tiles on Xeons that have them), which make a sequence's bits depend on its batch
    and, on this project's AMX machine, crash in `ggml_backend_amx_mul_mat`. `Llama` takes no such
    argument: its defaults are read from `llama_model_default_params`, which this wraps."""
    import llama_cpp.llama_cpp as native

    default = native.llama_model_default_params

    def plain():
        params = default()
        params.use_extra_bufts = False
        return params

    native.llama_model_default_params = plain
    try:
        yield
    finally:
        native.llama_model_default_params = default


def load_llama(path: Path, *, n_ctx: int, threads: int = 0, n_gpu_layers: int = 0,
               repeat_last_n: int = 64, thinking: bool = False, thinking_tokens: int = 0, thinking_family: bool = False,
               chat_format: str = ""):
    """A `llama_cpp.Llama` for `path` and a formatter for its chat template (`chat_format`'s where one is
    named: chat.template_source)."""
    check_gguf(path)
    import llama_cpp

    threads = threads or default_threads()
    try:
        with no_extra_buffers():
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=min(512, n_ctx),
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=n_gpu_layers,
                last_n_tokens_size=repeat_last_n,
                # The loop undoes a refused sentence by taking its cells out of the cache (llama-cpp-python's
                # prefix reuse): a sliding-window model's window layers keep every cell, so the window is
                # as it was (no effect on a model without one).
                swa_full=True,
                verbose=False,
            )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"cannot load model {path}: {exc} (the file may be truncated or corrupt)") from exc
    # The same special-token texts that llama-cpp-python gives its own Jinja2 chat handler.
    bos = llm._model.token_get_text(llm.token_bos()) if llm.token_bos() != -1 else ""
    eos = llm._model.token_get_text(llm.token_eos()) if llm.token_eos() != -1 else ""
    try:
        template = template_source(llm.metadata, str(path), chat_format)
        return llm, ChatFormatter(template, bos_token=bos, eos_token=eos, model_label=str(path), thinking=thinking,
                                 thinking_tokens=thinking_tokens, thinking_family=thinking_family,
                                 add_bos=llm._model.add_bos_token())
    except BaseException:
        llm.close()
        raise
