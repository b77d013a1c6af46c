"""The K cache formats of the batching engine (`[model] cache_type_k`), defined once, without
loading llama.cpp (the config's choices come from here).

The V half of the KV cache stays f16: llama.cpp quantizes V only with flash attention, which is off
(engine/native.py's Context). Each generated token takes one short dot product (a head's 64 values)
with every K cell of its sequence; in q8_0 these run on the integer kernels and read half the bytes,
which made the sample digest with its example exchanges 1.27x faster here, for a mean KL divergence
of 0.004 (tests). So q8_0 is the default.
"""

from __future__ import annotations

# Each format's ggml type (enum ggml_type: its numbers are fixed by the GGUF format; llama_cpp names
# them GGML_TYPE_Q8_0 and GGML_TYPE_F16) and its bytes per value, the default first.
CACHE_TYPES = {"q8_0": (8, 34 / 32), "f16": (1, 2.0)}
CACHE_TYPES_K = tuple(CACHE_TYPES)
DEFAULT_CACHE_TYPE_K = CACHE_TYPES_K[0]
