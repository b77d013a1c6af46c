"""Reading a GGUF file's header: its magic bytes, version and key/value metadata (tensors are never read).

`read_metadata` reads the whole key/value header (the quantizer's source format,
the bench's layer count) without loading the model; `read_tensors` the tensors' ggml types and shapes (the
engine's warning of kernels that depend on the batch); `block_count` reads the layer count from either
that or the metadata of a model llama.cpp has loaded.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Mapping

from ..errors import ModelError

GGUF_MAGIC = b"GGUF"
NOT_GGUF = "not a GGUF model file: {path} (it does not start with the GGUF magic bytes)"


# ggml's tensor types by number (ggml.h's enum ggml_type), as a GGUF's tensor infos give them.
GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
              11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS",
              18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8",
              25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0",
              39: "MXFP4", 40: "NVFP4"}

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class _Reader:
    def __init__(self, handle: BinaryIO, path: Path):
        self.handle, self.path = handle, path

    def take(self, n: int) -> bytes:
        data = self.handle.read(n)
        if len(data) != n:
            raise ModelError(f"{self.path}: the GGUF header is cut short (the file is truncated or not a model)")
        return data

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        length = self.unpack("<Q")
        if length > 1 << 24:
            raise ModelError(f"{self.path}: a GGUF metadata string of {length} bytes (the file is corrupt)")
        return self.take(length).decode("utf-8", "replace")

    def value(self, kind: int):
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.unpack("<I"), self.unpack("<Q")
            if item in _SCALARS:  # skipped, not kept: token tables are large
                self.handle.seek(count * struct.calcsize(_SCALARS[item]), 1)
                return None
            for _ in range(count):
                self.value(item)
            return None
        raise ModelError(f"{self.path}: unknown GGUF metadata type {kind} (the file is corrupt or too new)")


def read_metadata(path: Path) -> dict:
    """The GGUF key/value metadata of `path` (arrays left out), read from its header."""
    return _read_header(path, tensors=False)[0]


def read_tensors(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each tensor's name, ggml type (`Q4_K`, `Q8_0`, `F32`, ...; `type N` for one this table does not
    know) and shape, read from the header's tensor infos after the metadata: no weights are read."""
    return _read_header(path, tensors=True)[1]


def _read_header(path: Path, *, tensors: bool) -> tuple[dict, dict[str, tuple[str, tuple[int, ...]]]]:
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            reader = _Reader(handle, path)
            if handle.read(4) != GGUF_MAGIC:
                raise ModelError(NOT_GGUF.format(path=path))
            version = reader.unpack("<I")
            if version == 1:
                raise ModelError(f"{path}: GGUF version 1 is too old for llama.cpp")
            n_tensors = reader.unpack("<Q")
            count = reader.unpack("<Q")
            metadata = {}
            for _ in range(count):
                key = reader.string()
                metadata[key] = reader.value(reader.unpack("<I"))
            types = {}
            for _ in range(n_tensors if tensors else 0):
                name = reader.string()
                n_dims = reader.unpack("<I")
                if n_dims > 8:
                    raise ModelError(f"{path}: a GGUF tensor of {n_dims} dimensions (the file is corrupt)")
                shape = tuple(reader.unpack("<Q") for _ in range(n_dims))
                kind = reader.unpack("<I")
                reader.unpack("<Q")  # its offset in the data
                types[name] = (GGML_TYPES.get(kind, f"type {kind}"), shape)
            return metadata, types
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ModelError(f"model path is not a file: {path}") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from exc


def block_count(metadata: Mapping[str, object]) -> int:
    """The model's layer count (`<architecture>.block_count`), from `read_metadata` or from a loaded
    model's metadata (where llama.cpp gives every value as a string)."""
    arch = metadata.get("general.architecture", "llama")
    return int(metadata[f"{arch}.block_count"])
