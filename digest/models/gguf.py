"""Reading a GGUF file's header: its magic bytes, version and key/value metadata (tensors are never read).

`read_metadata` reads the whole key/value header (the quantizer's source format,
the bench's layer count) without loading the model; `block_count` reads the layer count from either
that or the metadata of a model llama.cpp has loaded.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Mapping

from ..errors import ModelError

GGUF_MAGIC = b"GGUF"
NOT_GGUF = "not a GGUF model file: {path} (it does not start with the GGUF magic bytes)"


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
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            reader = _Reader(handle, path)
            if handle.read(4) != GGUF_MAGIC:
                raise ModelError(NOT_GGUF.format(path=path))
            version = reader.unpack("<I")
            if version == 1:
                raise ModelError(f"{path}: GGUF version 1 is too old for llama.cpp")
            reader.unpack("<Q")  # tensor count
            count = reader.unpack("<Q")
            metadata = {}
            for _ in range(count):
                key = reader.string()
                metadata[key] = reader.value(reader.unpack("<I"))
            return metadata
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
