"""Every ctypes detail of llama.cpp that the batching engine needs, in one place.

Each wrapper owns one native object and frees it in `close()` (idempotent); the engine closes them in
reverse order of creation. Nothing here knows about requests or scheduling.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp import _internals

from ..errors import GenerationError, ModelError
from ..interrupts import IN_NATIVE
from ..llama_log import clear_errors, last_error, quiet_logs
from ..models.gguf import read_tensors
from ..models.registry import check_gguf, q8_0_of
from .cache_types import CACHE_TYPES, DEFAULT_CACHE_TYPE_K

STREAM_ALIGN = 256  # llama.cpp pads each sequence's KV stream to a multiple of this
FLASH_ATTN = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
# llama.cpp caps one context at this many sequences (LLAMA_MAX_SEQ).
MAX_SEQUENCES = 256
# One step's logits may take at most this share of the machine's memory (see `logits_budget`).
LOGITS_SHARE = 8


def logits_budget() -> int:
    """Bytes one decode step's logits may take: an eighth of the machine's physical memory."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // LOGITS_SHARE
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 1 << 62


def eog_tokens(vocab, n_vocab: int) -> np.ndarray:
    """Every end-of-generation token of a llama.cpp vocabulary (`llama_vocab *`)."""
    return np.array([t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)], dtype=np.int64)


def gpu_offload_supported() -> bool:
    """Whether this llama-cpp-python build has a GPU backend (else n_gpu_layers offloads nothing)."""
    return bool(llama_cpp.llama_supports_gpu_offload())


# The weight formats of 32-weight blocks. Every file made of one of them gave a sequence the same logits
# alone and in a decode step of 2, 4, 5, 8 and 16 rows on x86 (weights not repacked; docs/models.md):
# Q8_0 and Q4_1 on an AVX2 and an AVX-512 CPU, the others on the AVX-512 one. Files holding k-quants
# (Q3_K to Q6_K) or F16/BF16 matrices did not, on one CPU or the other.
BATCH_INVARIANT_WEIGHTS = frozenset({"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL"})
X86 = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


def batch_dependent_weights(path: Path, machine: str | None = None) -> list[str]:
    """The formats of `path`'s weight matrices (tensors of two or more dimensions) outside
    BATCH_INVARIANT_WEIGHTS, for which llama.cpp's x86 CPU kernels may give a sequence other logits by
    how many rows its decode step holds; [] on another CPU (`machine`: platform.machine()'s)."""
    if (machine or platform.machine()).lower() not in X86:
        return []
    return sorted({kind for kind, shape in read_tensors(path).values() if len(shape) >= 2} - BATCH_INVARIANT_WEIGHTS)


def batch_dependence(path: Path, machine: str | None = None) -> str:
    """The one-line warning for a model whose text on an x86 CPU may depend on the batch (--slots), naming
    its Q8_0, which does not: the registry's (`digest models pull NAME`) or the quantizer's; "" for none."""
    kinds = batch_dependent_weights(path, machine)
    if not kinds:
        return ""
    q8_0 = q8_0_of(path)
    fix = (f"digest models pull {q8_0}" if q8_0 else f"digest models quantize {Path(path).name} --type q8_0")
    return (f"{Path(path).name} holds {', '.join(kinds)} weights, whose llama.cpp kernels on an x86 CPU may give a "
            "sequence other logits by how many share its decode step: its text may depend on --slots (the same "
            f"seed, other bytes at another slot count); its Q8_0 does not ({fix}; docs/models.md)")


class Model:
    """A loaded GGUF model and its vocabulary."""

    def __init__(self, path: Path, *, n_gpu_layers: int = 0):
        check_gguf(path)
        quiet_logs()
        clear_errors()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers if n_gpu_layers >= 0 else 0x7FFFFFFF
        # No weights repacked for the CPU's gemm kernels (llama.cpp's "extra buffer types"): a repacked
        # Q4_K or Q4_0 matrix is multiplied four rows at a time by one kernel and the rows left over by
        # another, so a sequence's bits would depend on how many others share its step (Gemma 3 270M
        # Q4_K_M: logits up to 1.1 apart, other tokens by the 7th). Q8_0 (SmolLM2) is not repacked here.
        params.use_extra_bufts = False
        try:
            with IN_NATIVE:
                self._model = _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"cannot load model {path}: {exc}{last_error()} (the file may be truncated or corrupt)") from exc
        self.path = Path(path)
        self.ptr = self._model.model
        self.vocab = self._model.vocab
        self.n_vocab = self._model.n_vocab()
        self.metadata = self._model.metadata()
        self._piece_buffer = ctypes.create_string_buffer(64)

    def special_text(self, token: int) -> str:
        return self._model.token_get_text(token) if token != -1 else ""

    @property
    def bos_text(self) -> str:
        return self.special_text(self._model.token_bos())

    @functools.cached_property
    def n_swa(self) -> int:
        """The attention window of a sliding-window model (Gemma 3: 512 tokens), 0 for full attention."""
        return int(llama_cpp.llama_model_n_swa(self.ptr))

    @property
    def add_bos(self) -> bool:
        """Whether the vocabulary wants a BOS token first (a built-in chat template does not write it)."""
        return bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))

    @property
    def eos_text(self) -> str:
        return self.special_text(self._model.token_eos())

    def tokenize(self, text: str) -> list[int]:
        # The chat template writes any BOS itself: add no special tokens, but parse those in the text.
        return self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def piece(self, token: int) -> bytes:
        """The token's text bytes (llama-cpp-python's own wrapper returns its whole buffer, NULs included)."""
        n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece_buffer, len(self._piece_buffer), 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
            return buffer.raw[:n]
        return self._piece_buffer.raw[:n]

    @property
    def eos_token(self) -> int:
        return self._model.token_eos()

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    @functools.cached_property
    def eog_tokens(self) -> np.ndarray:
        """Every end-of-generation token of the vocabulary."""
        return eog_tokens(self.vocab, self.n_vocab)

    def close(self) -> None:
        model, self._model = getattr(self, "_model", None), None
        if model is not None:
            model.close()


class Context:
    """A llama.cpp context with one KV stream per sequence (the non-unified cache).

    With its own stream, a sequence's attention never sees another sequence's cells, which is what
    makes its text independent of what else is in the batch.
    """

    def __init__(self, model: Model, *, n_ctx_seq: int, n_seq_max: int, n_batch: int, threads: int,
                 cache_type_k: str = DEFAULT_CACHE_TYPE_K, swa_full: bool = False):
        """`swa_full`: a sliding-window model's window layers keep every cell (a cache as large as the
        full-attention layers'), so that cells undone by `remove_from` leave the window as it was (see
        `Model.n_swa`); without it llama.cpp reuses the cells that fell out of the window."""
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx_seq * n_seq_max
        params.n_batch = n_batch
        params.n_ubatch = n_batch  # a prompt chunk is always one ubatch (see batched.py)
        # Flash attention on the CPU gives a sequence other bits depending on its batch.
        params.flash_attn_type = FLASH_ATTN
        params.n_seq_max = n_seq_max
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = False
        params.swa_full = swa_full
        params.type_k = CACHE_TYPES[cache_type_k][0]
        params.no_perf = True
        clear_errors()
        with IN_NATIVE:
            self.ptr = llama_cpp.llama_init_from_model(model.ptr, params)
        if not self.ptr:
            raise ModelError(
                f"llama.cpp could not create a context of {params.n_ctx} tokens for {n_seq_max} sequences"
                f"{last_error()}: lower --slots, --ctx or --max-tokens"
            )
        self.memory = llama_cpp.llama_get_memory(self.ptr)
        self.n_ctx_seq = llama_cpp.llama_n_ctx(self.ptr) // n_seq_max
        self.n_seq_max, self.n_batch, self.swa_full = n_seq_max, n_batch, swa_full

    def holds(self, *, n_ctx_seq: int, n_seq_max: int, n_batch: int, swa_full: bool) -> bool:
        """Whether a run that needs a context of these settings can run in this one: as many sequences
        or more, each with as many cells or more, as large a batch, the same sliding windows. (Only
        which cells a step reads grows with the context; the cells past a sequence's own are masked to
        exact zeros, so its bits are those of the smaller context: tests/test_engine.py.)"""
        return (self.n_seq_max >= n_seq_max and self.n_ctx_seq >= n_ctx_seq and self.n_batch >= n_batch
                and self.swa_full == swa_full)

    def decode(self, batch: "Batch") -> None:
        with IN_NATIVE:  # a Ctrl-C or SIGTERM meanwhile is raised when llama.cpp returns
            status = llama_cpp.llama_decode(self.ptr, batch.raw)
        if status != 0:
            raise GenerationError(
                f"llama_decode failed with status {status} on a batch of {batch.n_tokens} tokens{last_error()}")

    def logits(self, rows: int, n_vocab: int) -> np.ndarray:
        """The last decode's logits, one row per token that asked for them (a view, valid until the next decode)."""
        pointer = llama_cpp.llama_get_logits(self.ptr)
        return np.ctypeslib.as_array(pointer, shape=(rows, n_vocab))

    def copy_sequence(self, src: int, dst: int) -> None:
        """Make `dst` a copy of `src` (the whole stream; done at the next decode)."""
        llama_cpp.llama_memory_seq_cp(self.memory, src, dst, -1, -1)

    def clear_sequence(self, seq: int) -> None:
        llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def remove_from(self, seq: int, pos: int) -> None:
        """Forget `seq`'s cells from position `pos` on (a sentence undone)."""
        if not llama_cpp.llama_memory_seq_rm(self.memory, seq, pos, -1):
            raise GenerationError(f"llama.cpp could not remove sequence {seq}'s cells from position {pos}")

    def clear(self) -> None:
        """Forget every sequence's cells (the context kept for another run)."""
        llama_cpp.llama_memory_clear(self.memory, False)

    def save_sequence(self, seq: int) -> ctypes.Array:
        """A copy of `seq`'s KV cells (positions and data), for `restore_sequence` in this context."""
        size = llama_cpp.llama_state_seq_get_size(self.ptr, seq)
        state = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(self.ptr, state, size, seq) != size:
            raise GenerationError(f"llama.cpp could not copy sequence {seq}'s cells{last_error()}")
        return state

    def restore_sequence(self, seq: int, state: ctypes.Array) -> None:
        """Make `seq` hold the cells `save_sequence` copied (from any sequence of this context)."""
        clear_errors()
        if not llama_cpp.llama_state_seq_set_data(self.ptr, state, len(state), seq):
            raise GenerationError(f"llama.cpp could not restore sequence {seq}'s cells{last_error()}")

    def close(self) -> None:
        ptr, self.ptr = getattr(self, "ptr", None), None
        if ptr:
            llama_cpp.llama_free(ptr)


class Batch:
    """A reusable llama_batch of up to `capacity` tokens, one sequence id each."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.raw = llama_cpp.llama_batch_init(capacity, 0, 1)
        self.n_tokens = 0

    def clear(self) -> None:
        self.n_tokens = 0
        self.raw.n_tokens = 0

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Append a token; returns its index in the batch (where its logits will be)."""
        i = self.n_tokens
        if i >= self.capacity:
            raise GenerationError(f"internal: batch capacity {self.capacity} exceeded")
        raw = self.raw
        raw.token[i] = token
        raw.pos[i] = pos
        raw.n_seq_id[i] = 1
        raw.seq_id[i][0] = seq
        raw.logits[i] = logits
        self.n_tokens = raw.n_tokens = i + 1
        return i

    def close(self) -> None:
        if getattr(self, "raw", None) is not None:
            llama_cpp.llama_batch_free(self.raw)
            self.raw = None


class Grammar:
    """One sequence's GBNF grammar (llama.cpp's grammar sampler), used as a filter on candidates.

    The grammar sampler costs time per candidate it is shown, and showing it the whole vocabulary
    (49k entries) on every token cost ~9 ms. The engine shows it only the few candidates it needs
    (see sampling.py) and tells it which token was chosen.
    """

    def __init__(self, model: Model, grammar: str, *, key: str = ""):
        self.ptr = llama_cpp.llama_sampler_init_grammar(model.vocab, grammar.encode("utf-8"), b"root")
        if not self.ptr:
            raise GenerationError(f"request '{key}': its grammar does not parse")

    def allowed(self, tokens: np.ndarray) -> np.ndarray:
        """A mask of which `tokens` the grammar allows next."""
        data = np.zeros(len(tokens), dtype=_TOKEN_DATA)
        data["id"] = tokens
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
            size=len(tokens), selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(self.ptr, ctypes.byref(array))
        return np.isfinite(data["logit"])

    def accept(self, token: int) -> None:
        llama_cpp.llama_sampler_accept(self.ptr, token)

    def close(self) -> None:
        ptr, self.ptr = getattr(self, "ptr", None), None
        if ptr:
            llama_cpp.llama_sampler_free(ptr)


_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
assert _TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)


def stream_cells(tokens: int) -> int:
    """KV cells llama.cpp gives a sequence that needs `tokens` cells."""
    return -(-tokens // STREAM_ALIGN) * STREAM_ALIGN

